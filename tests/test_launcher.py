"""`make run`'s launcher: migrate, seed once, app, worker and Telegram bot up, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOT_IDLE = "no Telegram bot is configured"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _worker_holds_lease(database: Path, deadline: float) -> bool:
    """Wait until the worker holds the lease and has beaten (read from the SQLite file)."""
    while time.monotonic() < deadline:
        try:
            with closing(sqlite3.connect(database)) as conn:
                row = conn.execute("SELECT holder, heartbeat_at FROM worker_lock").fetchone()
        except sqlite3.Error:  # not created yet
            row = None
        if row is not None and row[0] and row[1]:
            return True
        time.sleep(0.5)
    return False


def test_the_desk_starts_prints_fresh_demo_logins_and_stops_on_ctrl_c(tmp_path) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'sher.db'}",
           "SHER_PORT": str(port), "SECRET_KEY": "launcher-test-secret-" + "y" * 30,
           "BCRYPT_ROUNDS": "4"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.launcher"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _healthy(port):
            assert proc.poll() is None, "launcher exited early"
            time.sleep(0.5)
        assert _healthy(port), "the app never answered its health check"
        # the worker starts beside the app; on a busy machine it may take the lease later
        assert _worker_holds_lease(tmp_path / "sher.db", deadline), "the worker never started"
        # so may the bot process (importing python-telegram-bot takes a while)
        while time.monotonic() < deadline and not any(BOT_IDLE in line for line in lines):
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        proc.stdout.close()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "Demo household 'Sharma family' created" in out
    for username in ("ops", "rahul", "priya", "kamla", "aarav"):
        assert f"  {username} " in out
    assert "SHER: loading the sample market data" in out
    assert "refused" not in out.lower()
    assert "holds the lease" in out
    assert "worker stopped and released the lease" in out, out[-3000:]
    # the demo has no bot token: the bot process idles, saying so once, and stops with the rest
    assert out.count(BOT_IDLE) == 1, out[-3000:]
    assert "telegram bot process stopped" in out
    assert "SHER: stopped." in out
    assert not _healthy(port)
