"""Start `collections dev` as a child process on free ports and wait until it serves: for the
end-to-end tests and the benchmarks, which drive the product the way a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.local.dev import BANNER_FIRST_LINE
from runtime.local.postgres import free_port


@dataclass
class SpawnedDev:
    process: subprocess.Popen
    data_dir: Path
    log: Path
    postgres_port: int

    @property
    def profile(self) -> dict[str, Any]:
        """What `collections dev` wrote for the CLI's `local` profile."""
        return json.loads((self.data_dir / "dev.json").read_text())

    def client(self, service: str) -> Any:
        """A boto3 client for the local emulator, signed with the installation's credentials
        (the emulator refuses anything else)."""
        import boto3

        from runtime.local.dev import credentials_file
        from runtime.local.identity import AwsCredentials

        credentials = AwsCredentials.load_or_create(credentials_file(self.data_dir))
        return boto3.client(
            service,
            endpoint_url=self.profile["cognito_endpoint"],
            region_name=self.profile["region"],
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=None,
        )

    def dsn(self, database: str = "collections") -> str:
        """A libpq connection string for the local database (password from its 0600 file)."""
        passfile = self.data_dir / "postgres.pgpass"
        return (
            f"host=127.0.0.1 port={self.postgres_port} user=postgres dbname={database} "
            f"passfile={passfile}"
        )


def spawn_dev(
    data_dir: Path,
    log: Path,
    *,
    workers: int = 2,
    api_workers: int = 1,
    attempt_timeout_s: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 180,
) -> SpawnedDev:
    """`collections dev` with the offline providers (no API keys), on free loopback ports."""
    api_port, aws_port, pg_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIONS_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("VOYAGE_API_KEY", None)
    env.update(extra_env or {})
    command = [
        sys.executable,
        "-m",
        "runtime.cli.main",
        "dev",
        "--data-dir",
        str(data_dir),
        "--port",
        str(api_port),
        "--aws-port",
        str(aws_port),
        "--postgres-port",
        str(pg_port),
        "--workers",
        str(workers),
        "--api-workers",
        str(api_workers),
    ]
    if attempt_timeout_s:
        command += ["--attempt-timeout", str(attempt_timeout_s)]
    already = log.read_text().count(BANNER_FIRST_LINE) if log.exists() else 0
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while log.read_text().count(BANNER_FIRST_LINE) <= already:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"collections dev did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return SpawnedDev(process, data_dir, log, pg_port)
