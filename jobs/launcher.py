"""``make run``: migrate, seed the demo household once, run the worker, the Telegram bot
process and the app together.

The bot process (:mod:`jobs.telegram_bot`) runs beside the worker, not in it, so it can say
when the worker is down; with no bot token (the demo) it idles, re-checking every 30 s.
Ctrl-C (or SIGTERM) stops all three cleanly; if one dies, the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

from core.config import PROJECT_ROOT, get_settings
from core.seed import main as seed_main
from db.migrate import upgrade

APP_HOST = "127.0.0.1"
APP_PORT = int(os.environ.get("SHER_PORT", "8501"))
STOP_GRACE_SECONDS = 10


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT)  # noqa: S603


def main() -> int:
    """Run the desk until Ctrl-C; return the exit code."""
    settings = get_settings()
    settings.resolved_secret_key()  # create var/secret_key once, before two processes race
    print(f"SHER: applying migrations to {settings.database_url.split('@')[-1]}")
    upgrade(settings.database_url)
    seed_main()
    _spawn(["-m", "core.marketdata", "load-sample", "--if-empty"]).wait()  # sample once
    os.environ.setdefault("SIGNAL_REFIT", "false")  # the demo's sample data does not grow
    worker = _spawn(["-m", "jobs.worker"])
    bot = _spawn(["-m", "jobs.telegram_bot"])
    app = _spawn(
        [
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.address",
            APP_HOST,
            "--server.port",
            str(APP_PORT),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ]
    )
    print(f"SHER: app on http://{APP_HOST}:{APP_PORT} , worker and Telegram bot beside it. "
          "Ctrl-C stops them all.")
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    while not stopping:
        for name, proc in (("worker", worker), ("Telegram bot", bot), ("app", app)):
            if proc.poll() is not None:
                print(f"SHER: the {name} exited with code {proc.returncode}; stopping.")
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.5)
    for proc in (app, bot, worker):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in (app, bot, worker):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    print("SHER: stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
