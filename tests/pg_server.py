"""A throwaway PostgreSQL server for the tests that run the store on PostgreSQL.

The server runs from the system's PostgreSQL binaries in a temporary folder, on a free local
port, as the unprivileged ``postgres`` user when we are root (``initdb`` refuses root), and is
stopped at the end of the session. When it cannot be started (no binaries, no such user, initdb
or the server fails), :func:`start` raises :class:`Unavailable` with the reason, and the tests
that need it skip with that reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass(frozen=True)
class Server:
    folder: Path
    port: int
    user: str
    run_as: tuple[str, ...]

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database, empty or a copy of database ``template`` (which nobody may be
        connected to); returns its URL."""
        import psycopg

        copy = f' TEMPLATE "{template}"' if template is not None else ""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, str(_bin("pg_ctl")), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def _bin(name: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise Unavailable(f"no PostgreSQL server binaries ({name} not on PATH nor in /usr/lib/postgresql)")
    return Path(candidates[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start() -> Server:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"psycopg is not installed ({exc})") from None
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    run_as: tuple[str, ...] = ()
    folder = Path(tempfile.mkdtemp(prefix="labeler-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root and there is no 'postgres' user to run the server as") from None
        if runuser is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root and runuser is missing (needed to run the server as 'postgres')")
        run_as = (runuser, "-u", "postgres", "--")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    data = folder / "data"
    init = subprocess.run(
        [*run_as, str(initdb), "-D", str(data), "-U", "labeler_admin", "-A", "trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"initdb failed: {init.stderr.strip().splitlines()[-1:] or init.returncode}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    run = subprocess.run(
        [*run_as, str(pg_ctl), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    server = Server(folder=folder, port=port, user="labeler_admin", run_as=run_as)
    if run.returncode != 0:
        log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else run.stderr
        server.stop()
        raise Unavailable(f"the PostgreSQL server did not start: {log.strip().splitlines()[-1:]}")
    return server
