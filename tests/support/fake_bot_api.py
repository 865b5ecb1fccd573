"""A fake Telegram Bot API server on 127.0.0.1 for the real python-telegram-bot to talk to.

The library is never patched: point ``telegram.Bot(token, base_url=fake.base_url)`` (or the
``TELEGRAM_BASE_URL`` setting) at the server and it answers the Bot API methods the desk uses,
in Telegram's own envelope (``{"ok": true, "result": ...}``). What the bot sent is recorded with
a monotonic timestamp, so tests can check texts, silence, keyboards and rate limits; what a user
does (a message, a button press) is pushed with ``push_message``/``push_callback`` and handed to
``getUpdates`` (long polling). ``fail_next`` answers the next calls of a method with Telegram's
429 flood-control reply (or another error code); ``block_chat`` makes one chat answer 403, as a
user who blocked the bot does.

python-telegram-bot 22 sends form-encoded requests whose nested fields (``reply_markup``,
``allowed_updates``, ``commands``) are JSON strings and whose numbers and booleans are JSON
literals (``"42"``, ``"true"``); a JSON body is accepted too.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

# The real library raises a deprecation warning whenever a RetryAfter is built unless this opt-in
# to its coming ``timedelta`` periods is set (tests treat warnings as errors); the bot process
# sets it the same way (jobs.telegram_dispatch).
os.environ.setdefault("PTB_TIMEDELTA", "true")

DEFAULT_TOKEN = "123456789:AAE-fake-token-for-tests-0000000000"

_JSON_FIELDS = frozenset({"reply_markup", "allowed_updates", "commands", "entities", "scope",
                          "link_preview_options", "reply_parameters"})
_INT_FIELDS = frozenset({"chat_id", "message_id", "offset", "limit", "timeout", "cache_time",
                         "from_chat_id"})
_BOOL_FIELDS = frozenset({"disable_notification", "show_alert", "protect_content",
                          "drop_pending_updates", "disable_web_page_preview"})


@dataclass(frozen=True)
class SentMessage:
    """One ``sendMessage`` call the fake accepted."""

    chat_id: int
    text: str
    parse_mode: str | None
    disable_notification: bool
    reply_markup: Any
    message_id: int
    at: float
    token: str


@dataclass
class _Failure:
    remaining: int
    error_code: int
    retry_after: int
    chat_id: int | None
    description: str | None


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _decode_form(fields: dict[str, list[str]]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for name, values in fields.items():
        raw = values[-1]
        if name in _JSON_FIELDS:
            decoded[name] = json.loads(raw)
        elif name in _INT_FIELDS:
            decoded[name] = int(raw) if raw.lstrip("-").isdigit() else raw
        elif name in _BOOL_FIELDS:
            decoded[name] = raw.lower() in ("true", "1")
        else:
            decoded[name] = raw
    return decoded


class FakeBotApi:
    """A threaded stdlib Bot API server; use as a context manager (``with FakeBotApi() as fake``).

    Parameters
    ----------
    tokens
        Bot tokens the server accepts; any other token gets 401 Unauthorized.
    bot_username
        What ``getMe`` answers as the bot's username: one name for every token, or a name per
        token (one bot per household on one server); a token not named gets ``sher_test_bot``.

    Attributes
    ----------
    base_url
        ``http://127.0.0.1:PORT/bot`` once started: PTB's ``base_url`` (it appends the token).
    sent
        Every accepted ``sendMessage`` (:class:`SentMessage`, with ``time.monotonic()``).
    edits, callback_answers
        Accepted ``editMessageText``/``editMessageReplyMarkup`` and ``answerCallbackQuery``
        calls, as the parameters received (plus ``method``, ``at`` and ``token``).
    rejected
        Calls answered with an error by ``fail_next`` or ``block_chat`` (``method``,
        ``error_code``, ``at`` and the parameters).
    calls
        ``(token, method)`` of every call with a known token, in order.
    """

    def __init__(self, tokens: Iterable[str] = (DEFAULT_TOKEN,),
                 bot_username: str | Mapping[str, str] = "sher_test_bot") -> None:
        self.tokens = tuple(tokens)
        if not self.tokens:
            raise ValueError("FakeBotApi needs at least one token")
        self.bot_username = bot_username
        self.sent: list[SentMessage] = []
        self.edits: list[dict[str, Any]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.base_url = ""
        self._cond = threading.Condition()
        self._updates: dict[str, list[dict[str, Any]]] = {t: [] for t in self.tokens}
        self._next_update_id = 1
        self._next_message_id = 1
        self._failures: dict[str, list[_Failure]] = {}
        self._blocked: dict[int, str] = {}
        self._texts: dict[int, str] = {}
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeBotApi:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        handler = type("_Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}/bot"
        self._thread = threading.Thread(target=server.serve_forever, name="fake-bot-api",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; long polls waiting for updates return at once."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeBotApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a user does --------------------------------------------------------------------

    def push_message(self, chat_id: int, text: str, username: str | None = None,
                     token: str | None = None, from_id: int | None = None) -> int:
        """Queue a text message in chat ``chat_id`` from user ``from_id`` (default: the chat's).

        Return its message id. In a private chat the user's id is the chat's; in a group
        (see ``_chat``) ``from_id`` names the member writing there. A text starting with ``/``
        carries a ``bot_command`` entity, as Telegram sends it.
        """
        with self._cond:
            message = self._text_message(chat_id, text, username)
            message["from"] = self._user(chat_id if from_id is None else from_id, username)
            self._queue(token, {"message": message})
            return int(message["message_id"])

    def push_channel_post(self, chat_id: int, text: str, token: str | None = None) -> int:
        """Queue a post (sent by no user) in channel ``chat_id``; return its message id."""
        with self._cond:
            message = self._text_message(chat_id, text, None)
            self._queue(token, {"channel_post": message})
            return int(message["message_id"])

    def push_edit(self, chat_id: int, message_id: int, text: str, *, channel: bool = False,
                  token: str | None = None, from_id: int | None = None) -> None:
        """Queue an edit of message ``message_id`` (pushed earlier) to read ``text`` now.

        An ``edited_message`` from user ``from_id`` (default: the chat's), or with ``channel``
        an ``edited_channel_post``, as Telegram sends an edit.
        """
        with self._cond:
            message = self._text_message(chat_id, text, None)
            message["message_id"] = message_id
            message["edit_date"] = int(time.time())
            if channel:
                self._queue(token, {"edited_channel_post": message})
            else:
                message["from"] = self._user(chat_id if from_id is None else from_id, None)
                self._queue(token, {"edited_message": message})

    def push_callback(self, chat_id: int, message_id: int, data: str,
                      token: str | None = None) -> int:
        """Queue a press of an inline button with ``data`` under bot message ``message_id``.

        Return the update id; the callback query's id is its decimal string (what
        ``callback_answers`` records as ``callback_query_id``).
        """
        token = token or self.tokens[0]
        with self._cond:
            update_id = self._next_update_id
            message = {
                "message_id": message_id, "date": int(time.time()),
                "chat": self._chat(chat_id, None), "from": self._bot_user(token),
                "text": self._texts.get(message_id, ""),
            }
            query = {"id": str(update_id), "from": self._user(chat_id, None),
                     "chat_instance": str(chat_id), "data": data, "message": message}
            self._queue(token, {"callback_query": query})
            return update_id

    # -- what the test arranges and checks ---------------------------------------------------

    def fail_next(self, method: str, times: int = 1, retry_after: int = 1, *,
                  chat_id: int | None = None, error_code: int = 429,
                  description: str | None = None) -> None:
        """Answer the next ``times`` calls of ``method`` with an error instead of serving them.

        By default Telegram's flood-control reply: 429 ``Too Many Requests: retry after N`` with
        ``parameters.retry_after``. With ``chat_id`` only calls for that chat fail; another
        ``error_code`` (500, 400 ...) answers that code with ``description`` and no parameters.
        """
        with self._cond:
            self._failures.setdefault(method.lower(), []).append(
                _Failure(times, error_code, retry_after, chat_id, description))

    def block_chat(self, chat_id: int,
                   description: str = "Forbidden: bot was blocked by the user") -> None:
        """Answer every ``sendMessage`` to ``chat_id`` with 403, as when a user blocks the bot."""
        with self._cond:
            self._blocked[chat_id] = description

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        """Return the accepted ``sendMessage`` calls for ``chat_id``, oldest first."""
        with self._cond:
            return [m for m in self.sent if m.chat_id == chat_id]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true; raise AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"fake Bot API: condition not met within {timeout} s "
                                     f"({len(self.sent)} messages sent)")
            time.sleep(0.01)

    # -- serving (called from the handler threads) -------------------------------------------

    def handle(self, token: str, method: str, params: dict[str, Any]) -> Any:
        """Serve one Bot API call; raise ``_ApiError`` for an error reply."""
        if token not in self._updates:
            raise _ApiError(401, "Unauthorized")
        name = method.lower()
        with self._cond:
            self.calls.append((token, method))
            self._maybe_fail(name, params)
        if name == "getupdates":
            return self._get_updates(token, params)
        with self._cond:
            return self._serve(token, name, params)

    def _serve(self, token: str, name: str, params: dict[str, Any]) -> Any:
        if name == "getme":
            return self._bot_user(token)
        if name in ("deletewebhook", "close", "logout"):
            return True
        if name == "sendmessage":
            return self._send_message(token, params)
        if name == "answercallbackquery":
            self.callback_answers.append({**params, "token": token})
            return True
        if name in ("editmessagetext", "editmessagereplymarkup"):
            return self._edit(token, name, params)
        if name == "setmycommands":
            self.commands[token] = list(params.get("commands", []))
            return True
        if name == "getmycommands":
            return self.commands.get(token, [])
        raise _ApiError(404, "Not Found: method not found")

    def _maybe_fail(self, name: str, params: dict[str, Any]) -> None:
        chat_id = params.get("chat_id")
        if name == "sendmessage" and chat_id in self._blocked:
            self._reject(name, params, 403)
            raise _ApiError(403, self._blocked[chat_id])
        for failure in self._failures.get(name, []):
            if failure.remaining <= 0 or failure.chat_id not in (None, chat_id):
                continue
            failure.remaining -= 1
            self._reject(name, params, failure.error_code)
            if failure.error_code == 429:
                raise _ApiError(429, failure.description
                                or f"Too Many Requests: retry after {failure.retry_after}",
                                {"retry_after": failure.retry_after})
            raise _ApiError(failure.error_code, failure.description
                            or HTTPStatus(failure.error_code).phrase)

    def _reject(self, name: str, params: dict[str, Any], code: int) -> None:
        self.rejected.append({"method": name, "error_code": code, "at": time.monotonic(),
                              **params})

    def _send_message(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, text = params.get("chat_id"), params.get("text")
        if not isinstance(chat_id, int) or not text:
            raise _ApiError(400, "Bad Request: chat_id and text are required")
        message_id = self._new_message_id()
        self._texts[message_id] = text
        self.sent.append(SentMessage(
            chat_id=chat_id, text=text, parse_mode=params.get("parse_mode"),
            disable_notification=bool(params.get("disable_notification", False)),
            reply_markup=params.get("reply_markup"), message_id=message_id,
            at=time.monotonic(), token=token))
        result: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                  "chat": self._chat(chat_id, None),
                                  "from": self._bot_user(token), "text": text}
        if params.get("reply_markup") is not None:
            result["reply_markup"] = params["reply_markup"]
        return result

    def _edit(self, token: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            raise _ApiError(400, "Bad Request: chat_id and message_id are required")
        self.edits.append({"method": name, **params, "at": time.monotonic(), "token": token})
        if "text" in params:
            self._texts[message_id] = params["text"]
        result: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                  "edit_date": int(time.time()),
                                  "chat": self._chat(chat_id, None),
                                  "from": self._bot_user(token),
                                  "text": self._texts.get(message_id, "")}
        if params.get("reply_markup") is not None:
            result["reply_markup"] = params["reply_markup"]
        return result

    def _get_updates(self, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset")
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._cond:
            queue = self._updates[token]
            if isinstance(offset, int) and offset > 0:
                queue[:] = [u for u in queue if u["update_id"] >= offset]
            while not queue and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return list(queue[:limit])

    # -- payload helpers (caller holds the lock) ---------------------------------------------

    def _queue(self, token: str | None, body: dict[str, Any]) -> None:
        token = token or self.tokens[0]
        if token not in self._updates:
            raise ValueError("push for a token the fake does not serve")
        self._updates[token].append({"update_id": self._next_update_id, **body})
        self._next_update_id += 1
        self._cond.notify_all()

    def _text_message(self, chat_id: int, text: str, username: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": self._new_message_id(),
                                   "date": int(time.time()),
                                   "chat": self._chat(chat_id, username), "text": text}
        if text.startswith("/"):
            length = len(text.split(maxsplit=1)[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return message

    def _new_message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id += 1
        return message_id

    @staticmethod
    def _user(user_id: int, username: str | None) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False,
                                "first_name": username or f"user{user_id}"}
        if username:
            user["username"] = username
        return user

    @staticmethod
    def _chat(chat_id: int, username: str | None) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": "private",
                                "first_name": username or f"user{chat_id}"}
        if username:
            chat["username"] = username
        return chat

    def username_of(self, token: str) -> str:
        """Return the username ``getMe`` gives the bot of ``token``."""
        if isinstance(self.bot_username, str):
            return self.bot_username
        return self.bot_username.get(token, "sher_test_bot")

    def _bot_user(self, token: str) -> dict[str, Any]:
        return {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": "SHER",
                "username": self.username_of(token), "can_join_groups": False,
                "can_read_all_group_messages": False, "supports_inline_queries": False}


class _Server(ThreadingHTTPServer):
    #: Pending connections the listening socket holds (socketserver's default is 5): the flood
    #: tests open some 30 connections at once, and on a loaded machine the rest of a backlog of
    #: 5 waited for the kernel's SYN retries or failed the send as a network error.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore a client that hung up (a bot stopping mid long-poll); print anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeBotApi
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        parts = path.strip("/").split("/")
        try:
            if len(parts) != 2 or not parts[0].startswith("bot"):
                raise _ApiError(404, "Not Found")
            params = self._params(query)
            result = self.fake.handle(parts[0][3:], parts[1], params)
        except _ApiError as e:
            body: dict[str, Any] = {"ok": False, "error_code": e.code,
                                    "description": e.description}
            if e.parameters:
                body["parameters"] = e.parameters
            self._reply(e.code, body)
            return
        self._reply(200, {"ok": True, "result": result})

    def _params(self, query: str) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        params = _decode_form(parse_qs(query)) if query else {}
        if kind == "application/json" and raw:
            params.update(json.loads(raw))
        elif kind == "application/x-www-form-urlencoded" and raw:
            params.update(_decode_form(parse_qs(raw.decode("utf-8"), keep_blank_values=True)))
        elif raw:
            raise _ApiError(400, f"Bad Request: the fake does not read {kind or 'this body'}")
        return params

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
