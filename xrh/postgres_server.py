"""A throwaway PostgreSQL server for a run (the ``postgres-cdc`` pipeline's embedded default).

``initdb`` in the run directory, ``wal_level = logical``, listening on 127.0.0.1 (a free port)
and on a Unix socket in its data directory, started as a child of the harness and stopped with
the run: :meth:`PostgresServer.stop` (and :meth:`PostgresServer.remove` for the files). Drills
restart it (:meth:`PostgresServer.restart`, ``fast`` or ``immediate``, the latter a crash).

Binaries come from ``PATH`` or ``pg_config --bindir`` (``/usr/lib/postgresql/<v>/bin`` on
Debian). PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system
user when there is one, else ``nobody``, and its data directory is handed to that user.

The server is for proofs, not for keeping data: ``fsync = off`` (a commit is still in the WAL
the server wrote before it answers, so a crash of the server, not of the machine, loses no
acknowledged commit), trust authentication on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from xrh.errors import UsageError

SUPERUSER = "xrh"
DATABASE = "postgres"
INSTALL_HINT = (
    "install PostgreSQL 15 or newer (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
    "`brew install postgresql@15`), or point --postgres-url at an existing database"
)


class PostgresUnavailable(UsageError):
    """No PostgreSQL server binaries, or a server that would not start (the message says why)."""


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: from PATH, else ``pg_config --bindir``."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(os.path.realpath(found)).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(  # noqa: S603 - a fixed local program
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            out = ""
        if out and (Path(out) / "initdb").exists() and (Path(out) / "postgres").exists():
            return Path(out)
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, postgres) found: {INSTALL_HINT}")


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PostgresUnavailable("running as root, and there is no 'postgres' or 'nobody' user to "
                              "run PostgreSQL as (it refuses to run as root)")  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One throwaway server; ``url`` is what psycopg connects to."""

    data_dir: Path
    port: int
    bindir: Path
    log_path: Path
    owner: tuple[int, int] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    # -- lifecycle ------------------------------------------------------------------------------

    def init(self) -> None:
        """initdb (once) and the settings logical decoding needs."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        self._call([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                    "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"])  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "wal_level": "logical",
            "max_replication_slots": "16",
            "max_wal_senders": "16",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# xrh: a throwaway server for one run\n")
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.pid is not None:
            return
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # noqa: S603 - the PostgreSQL server binary
                [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **self._user_kwargs(),
            )  # fmt: skip
        finally:
            log.close()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresUnavailable(
                    f"PostgreSQL exited with code {self.process.returncode} while starting; "
                    f"see {self.log_path}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self._accepts_queries():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise PostgresUnavailable(f"PostgreSQL did not accept connections within {timeout_s:g} s; "
                                  f"see {self.log_path}")  # fmt: skip

    def _accepts_queries(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "fast", timeout_s: float = 30.0) -> None:
        """Stop the server: ``fast`` (SIGINT: roll back sessions, clean shutdown) or
        ``immediate`` (SIGQUIT: a crash, recovered from the WAL at the next start)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self, mode: str = "fast", timeout_s: float = 30.0) -> None:
        self.stop(mode)
        self.start(timeout_s)

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------------

    def _user_kwargs(self) -> dict[str, int]:
        return {} if self.owner is None else {"user": self.owner[0], "group": self.owner[1]}

    def _hand_over(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    def _call(self, command: list[str]) -> None:
        log = self.log_path.open("ab")
        try:
            done = subprocess.run(  # noqa: S603 - PostgreSQL's own tools
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                timeout=120, check=False, **self._user_kwargs(),
            )  # fmt: skip
        finally:
            log.close()
        if done.returncode != 0:
            raise PostgresUnavailable(f"{Path(command[0]).name} failed with code "
                                      f"{done.returncode}; see {self.log_path}")  # fmt: skip


def _check_reachable(base_dir: Path, owner: tuple[int, int]) -> None:
    """The server's user must be able to reach its data directory through every parent."""
    for parent in [base_dir, *base_dir.parents]:
        st = parent.stat()
        if st.st_uid != owner[0] and not st.st_mode & 0o001:
            raise PostgresUnavailable(
                f"{parent} is closed to the user PostgreSQL runs as (uid {owner[0]}; it refuses "
                f"to run as root): put the run directory under a folder others can enter"
            )


@contextlib.contextmanager
def temporary_server(prefix: str = "xrh-pg-") -> Iterator[PostgresServer]:
    """A throwaway server in a new folder of its own (open to the server's user, unlike
    pytest's temporary folders), stopped and removed with the folder on exit: for tests and
    benchmarks."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)
    try:
        server = throwaway_server(base)
        try:
            yield server
        finally:
            server.remove()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def throwaway_server(base_dir: Path, *, port: int | None = None, start: bool = True,
                     timeout_s: float = 60.0) -> PostgresServer:  # fmt: skip
    """A new server in ``base_dir/postgres`` (its log ``base_dir/postgres.log``), started."""
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    owner = _run_as()
    if owner is not None:
        _check_reachable(base_dir, owner)
    log_path = base_dir / "postgres.log"
    log_path.touch()
    if owner is not None:
        os.chown(log_path, *owner)
    server = PostgresServer(
        data_dir=base_dir / "postgres", port=port or free_port(), bindir=find_bindir(),
        log_path=log_path, owner=owner,
    )  # fmt: skip
    server.init()
    if start:
        server.start(timeout_s)
    return server
