"""Order-path helpers for service tests."""

from __future__ import annotations

import pytest

from core.domain import Actor
from core.errors import ValidationError
from core.services import Services
from core.trading import OrderRequest


def review_and_place_refusals(services: Services, actor: Actor,
                              request: OrderRequest) -> list[str]:
    """Return what the estimate, the risk-gate preview and placing say of ``request``.

    Each must refuse it with a ValidationError (Review and Place refuse alike).
    """
    messages = []
    for attempt in (lambda: services.orders.estimate(actor, request),
                    lambda: services.risk_gate.preview(actor, request),
                    lambda: services.orders.place(actor, request)):
        with pytest.raises(ValidationError) as refused:
            attempt()
        messages.append(str(refused.value))
    return messages
