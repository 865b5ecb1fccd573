"""Throwaway PostgreSQL servers for tests.

The helpers here start a private PostgreSQL cluster in a temporary directory,
listening on a free TCP port on ``127.0.0.1`` with ``trust`` authentication, and
throw the whole thing away afterwards.  Durability is switched off (``fsync``,
``synchronous_commit`` and ``full_page_writes``), which makes the server fast and
unsuitable for anything but tests.

PostgreSQL refuses to run as root.  When the tests run as root (as they do in CI
containers) ``initdb``, ``pg_ctl`` and ``postgres`` are run as the ``postgres``
operating-system user through ``runuser``, and the temporary directory is handed
over to that user.

Typical use from a fixture::

    from tests.support.pg import PostgresServer, require_postgres_or_skip

    @pytest.fixture(scope="session")
    def pg_server() -> Iterator[PostgresServer]:
        bindir = require_postgres_or_skip()
        with PostgresServer(bindir) as server:
            server.create_database("sher_template")
            yield server

Set ``SHER_REQUIRE_POSTGRES=1`` to turn "PostgreSQL is not installed" from a skip
into a test failure (CI does this, so database tests cannot silently vanish).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import pytest
from psycopg import sql

__all__ = [
    "REQUIRE_ENV_VAR",
    "PostgresServer",
    "find_pg_bindir",
    "require_postgres_or_skip",
]

#: Environment variable that, when set to ``"1"``, makes a missing PostgreSQL a failure.
REQUIRE_ENV_VAR = "SHER_REQUIRE_POSTGRES"

#: Operating-system user that owns the cluster when the tests run as root.
PG_OS_USER = "postgres"

#: Database superuser created by ``initdb``.
PG_SUPERUSER = "postgres"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_DEBIAN_BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
_START_TIMEOUT_S = 60
_COMMAND_TIMEOUT_S = 120
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
)


def _has_binaries(bindir: str | os.PathLike[str]) -> bool:
    """Return whether ``bindir`` holds every PostgreSQL server binary we need."""
    return all(os.access(Path(bindir, name), os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(bindir: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` paths (newest last)."""
    version = Path(bindir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def find_pg_bindir() -> str | None:
    """Locate a directory holding the PostgreSQL server binaries.

    The newest Debian-style ``/usr/lib/postgresql/<version>/bin`` wins; failing
    that, the directory reported by ``pg_config --bindir`` is used.

    Returns
    -------
    str or None
        A directory containing ``initdb``, ``pg_ctl`` and ``postgres``, or
        ``None`` if no such directory can be found.
    """
    candidates = sorted(glob.glob(_DEBIAN_BINDIR_GLOB), key=_version_key, reverse=True)
    for candidate in candidates:
        if _has_binaries(candidate):
            return candidate

    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            result = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        bindir = result.stdout.strip()
        if bindir and _has_binaries(bindir):
            return bindir
    return None


def require_postgres_or_skip() -> str:
    """Return the PostgreSQL binary directory, or skip (or fail) the current test.

    Meant to be called from tests and fixtures that need a real server.  When
    no binaries are found the test is skipped, unless the environment variable
    ``SHER_REQUIRE_POSTGRES`` is ``"1"``, in which case it fails instead.

    Returns
    -------
    str
        The directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises
    ------
    pytest.skip.Exception
        When PostgreSQL is missing and not required.
    pytest.fail.Exception
        When PostgreSQL is missing and ``SHER_REQUIRE_POSTGRES=1``.
    """
    bindir = find_pg_bindir()
    if bindir is not None:
        return bindir
    where = f"{_DEBIAN_BINDIR_GLOB} or `pg_config --bindir`"
    if os.environ.get(REQUIRE_ENV_VAR) == "1":
        pytest.fail(
            f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {where}, "
            f"but {REQUIRE_ENV_VAR}=1 requires them; install PostgreSQL "
            "(Debian: apt-get install postgresql).",
            pytrace=False,
        )
    pytest.skip(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {where}; "
        f"install PostgreSQL or set {REQUIRE_ENV_VAR}=1 to make this a failure."
    )
    raise AssertionError("unreachable")  # pragma: no cover - pytest.skip raises


def _free_port() -> int:
    """Ask the kernel for a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file, or a note if it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


def _traversable_by_others(path: Path) -> bool:
    """Return whether every directory from ``/`` down to ``path`` is world-searchable."""
    for directory in (path, *path.parents):
        try:
            if not directory.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A private, disposable PostgreSQL server.

    Parameters
    ----------
    bindir : str or os.PathLike, optional
        Directory holding ``initdb``, ``pg_ctl`` and ``postgres``.  Defaults to
        :func:`find_pg_bindir`.

    Attributes
    ----------
    bindir : pathlib.Path or None
        The binary directory in use (``None`` if none was given or found).
    port : int or None
        TCP port on ``127.0.0.1`` while the server runs, else ``None``.
    root : pathlib.Path or None
        Temporary directory holding the data directory, the Unix socket and the
        server log while the server runs, else ``None``.
    startup_seconds : float or None
        Wall-clock time the last successful :meth:`start` took.

    Examples
    --------
    >>> with PostgresServer() as server:  # doctest: +SKIP
    ...     server.create_database("app")
    ...     engine = sqlalchemy.create_engine(server.url("app"))
    """

    def __init__(self, bindir: str | os.PathLike[str] | None = None) -> None:
        found = bindir if bindir is not None else find_pg_bindir()
        self.bindir: Path | None = Path(found) if found is not None else None
        self.port: int | None = None
        self.root: Path | None = None
        self.startup_seconds: float | None = None
        self._run_as_postgres = os.geteuid() == 0

    # ------------------------------------------------------------------ paths

    @property
    def data_dir(self) -> Path:
        """Path of the cluster's data directory (``PGDATA``)."""
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's Unix-domain socket."""
        return self._require_root() / "sock"

    @property
    def log_file(self) -> Path:
        """Path of the server log written by ``pg_ctl``."""
        return self._require_root() / "postgres.log"

    @property
    def running(self) -> bool:
        """Whether :meth:`start` succeeded and :meth:`stop` has not been called since."""
        return self.port is not None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create a fresh cluster in a temporary directory and start the server.

        Raises
        ------
        RuntimeError
            If a binary is missing, the ``postgres`` OS user is missing while
            running as root, ``initdb`` fails, or the server does not come up.
            The message names the missing binary or includes the log tail.
        """
        if self.running:
            raise RuntimeError(f"PostgreSQL server is already running on port {self.port}")
        began = time.monotonic()
        bindir = self._check_prerequisites()
        self.root = self._make_root()
        try:
            self._initdb(bindir)
            self._start_server(bindir)
        except BaseException:
            self._cleanup_root()
            raise
        atexit.register(self.stop)
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the server immediately and delete its temporary directory.

        Safe to call more than once, and on a server that never started.
        """
        atexit.unregister(self.stop)
        if self.port is not None and self.bindir is not None and self.root is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                    ],
                )
        self.port = None
        self._cleanup_root()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- databases

    def url(self, dbname: str = "postgres") -> str:
        """Return a SQLAlchemy URL (psycopg 3 driver) for database ``dbname``.

        Parameters
        ----------
        dbname : str, default "postgres"
            Database name.

        Returns
        -------
        str
            ``postgresql+psycopg://postgres@127.0.0.1:<port>/<dbname>``.
        """
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self._require_port()}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create database ``name``, optionally as a copy of ``template``.

        Other sessions connected to ``template`` are terminated first, because
        PostgreSQL refuses to copy a database that is in use.

        Parameters
        ----------
        name : str
            Name of the new database.
        template : str, optional
            Database to clone; PostgreSQL's default (``template1``) if omitted.
        """
        with self._admin_connection() as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                self._terminate_sessions(conn, template)
                statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
            conn.execute(statement)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its sessions first.

        Parameters
        ----------
        name : str
            Name of the database to drop.
        """
        with self._admin_connection() as conn:
            self._terminate_sessions(conn, name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    # ---------------------------------------------------------------- helpers

    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("PostgreSQL server has not been started")
        return self.root

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("PostgreSQL server is not running")
        return self.port

    def _admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self._require_port(),
            user=PG_SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    @staticmethod
    def _terminate_sessions(conn: psycopg.Connection[tuple[object, ...]], dbname: str) -> None:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )

    def _check_prerequisites(self) -> Path:
        """Return the binary directory after checking binaries and the OS user."""
        if self.bindir is None:
            raise RuntimeError(
                "PostgreSQL binaries not found: looked for initdb, pg_ctl and postgres in "
                f"{_DEBIAN_BINDIR_GLOB} and `pg_config --bindir`"
            )
        for name in _REQUIRED_BINARIES:
            if not os.access(self.bindir / name, os.X_OK):
                raise RuntimeError(
                    f"PostgreSQL binary {name!r} not found or not executable in {self.bindir}"
                )
        if self._run_as_postgres:
            if shutil.which("runuser") is None:
                raise RuntimeError(
                    "running as root, but 'runuser' (util-linux) is not available to run "
                    f"PostgreSQL as the {PG_OS_USER!r} user"
                )
            try:
                pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, but there is no {PG_OS_USER!r} OS user to run "
                    "PostgreSQL as (PostgreSQL refuses to run as root)"
                ) from None
        return self.bindir

    def _make_root(self) -> Path:
        """Create the temporary directory, readable and writable by the server's user."""
        base = Path(tempfile.gettempdir())
        if self._run_as_postgres and not _traversable_by_others(base):
            base = Path("/tmp")  # noqa: S108 - must be reachable by the postgres user
        root = Path(tempfile.mkdtemp(prefix="sher-pg-", dir=base))
        root.chmod(0o755)
        if self._run_as_postgres:
            entry = pwd.getpwnam(PG_OS_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        return root

    def _cleanup_root(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _command(self, argv: list[str]) -> list[str]:
        if self._run_as_postgres:
            return ["runuser", "-u", PG_OS_USER, "--", *argv]
        return argv

    def _run(
        self, argv: list[str], timeout: float = _COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL command (as ``postgres`` when root); never raises on exit code."""
        return subprocess.run(
            self._command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # The server's user may not be able to enter the caller's working directory.
            cwd=self._require_root(),
        )

    def _initdb(self, bindir: Path) -> None:
        base = [
            str(bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            PG_SUPERUSER,
            "--encoding=UTF8",
            "--no-sync",
        ]
        result = self._run([*base, "--locale=C.UTF-8"])
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            result = self._run([*base, "--locale=C"])
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:]
            raise RuntimeError(
                f"initdb failed with exit code {result.returncode}:\n" + "\n".join(output)
            )

    def _start_server(self, bindir: Path) -> None:
        """Start the server, retrying on a new port if the chosen one was taken."""
        self.socket_dir.mkdir()
        if self._run_as_postgres:
            entry = pwd.getpwnam(PG_OS_USER)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_port()
            options = " ".join(("-p", str(port), "-k", str(self.socket_dir), *_SERVER_OPTIONS))
            result = self._run(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                ],
                timeout=_START_TIMEOUT_S + 30,
            )
            if result.returncode == 0:
                self.port = port
                return
            log_tail = _tail(self.log_file)
            if "could not bind" in log_tail and attempt < _PORT_ATTEMPTS:
                continue  # Someone grabbed the port between probing and binding.
            # Make sure a half-started postmaster does not outlive us.
            self._run([str(bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"])
            raise RuntimeError(
                f"PostgreSQL failed to start on 127.0.0.1:{port} "
                f"(pg_ctl exit code {result.returncode}).\n"
                f"pg_ctl output:\n{(result.stdout + result.stderr).strip()}\n"
                f"Last lines of {self.log_file}:\n{log_tail}"
            )
