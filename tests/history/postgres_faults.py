"""PostgreSQL's faults: killed server connections, and a server restart on a server of our own.

The shared server at CHRONIK_TEST_POSTGRES_URL serves other test runs at the same time, so it is
never restarted. `OwnedPostgres` is a throwaway cluster for the restart fault: `initdb` into a
temporary directory owned by the `postgres` OS user, started with `pg_ctl` on a free loopback port
with `fsync=on` (a crash restart must find every acknowledged commit in the WAL), restarted
`fast` or `immediate` (a crash: no shutdown checkpoint) by the fault, and removed afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from tests.history.harness import Cluster

SERVER_USER = "postgres"


@dataclass
class TerminateBackends:
    """`pg_terminate_backend` on a random share of the schema's connections (the store names them
    `chronik:<schema>` in `application_name`: writers', and readers' too, which is a fault for them)."""

    admin_url: str
    schema: str
    name: str = "terminate"

    def inject(self, cluster: Cluster, rng: random.Random) -> bool:
        share = rng.choice((0.5, 1.0))
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as admin:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (f"chronik:{self.schema}"[:63],),
                ).fetchall()
                chosen = [pid for (pid,) in rows if rng.random() < share]
                for pid in chosen:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        except psycopg.OperationalError:  # our own server restarting: nothing to terminate now
            return False
        return bool(chosen)


@dataclass
class RestartServer:
    """Restart the harness's own server, `immediate` (a crash) or `fast`."""

    server: OwnedPostgres
    name: str = "restart"

    def inject(self, cluster: Cluster, rng: random.Random) -> bool:
        self.server.restart(rng.choice(("immediate", "fast")))
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if found:
        return found[-1]
    on_path = shutil.which(tool)
    if on_path is None:
        raise FileNotFoundError(f"{tool} not found under /usr/lib/postgresql/*/bin or on PATH")
    return on_path


class OwnedPostgres:
    """A PostgreSQL cluster the harness owns: start, restart, stop, remove."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam(SERVER_USER)
        self.directory = Path(tempfile.mkdtemp(prefix="chronik-history-pg-"))
        os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = _free_port()

    @staticmethod
    def cannot_run() -> str | None:
        """Why this machine cannot run a server of our own (None when it can)."""
        if os.geteuid() != 0:
            return "the tests must run as root to start a server as the postgres user"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"there is no {SERVER_USER!r} OS user"
        if shutil.which("runuser") is None:
            return "runuser is not installed"
        try:
            _bin("initdb"), _bin("pg_ctl")
        except FileNotFoundError as error:
            return str(error)
        return None

    def _run(self, *args: str, timeout: float = 90) -> None:
        command = ["runuser", "-u", SERVER_USER, "--", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}"
            )

    def _pg_ctl(self, action: str, mode: str = "fast") -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on"
        where = ("-D", str(self.data), "-l", str(self.log))
        self._run(_bin("pg_ctl"), *where, "-w", "-t", "60", "-m", mode, "-o", options, action)

    def start(self) -> None:
        """initdb (without syncing its files: only what the server writes later must last), then start
        it, on another free port if the first one was taken in the meantime."""
        self._run(
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        for attempt in range(3):
            try:
                self._pg_ctl("start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port = _free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def restart(self, mode: str) -> None:
        self._pg_ctl("restart", mode)

    def remove(self) -> None:
        """Stop the server (immediately; its data is thrown away) and delete its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", "immediate", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill_postmaster()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """The last resort: SIGKILL the postmaster this object started (its pid is in postmaster.pid)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.5)
