"""Run `collections dev` (the product's own local mode) in a scratch folder on free ports."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.local.postgres import SUPERUSER, free_port

BANNER = "Collections is running locally"


@dataclass
class DevProduct:
    process: subprocess.Popen
    data_dir: Path
    log: Path
    postgres_port: int

    @property
    def profile(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "dev.json").read_text())

    @property
    def api_url(self) -> str:
        return self.profile["api_url"]

    def dsn(self, database: str = "collections") -> str:
        return f"host=127.0.0.1 port={self.postgres_port} user={SUPERUSER} dbname={database}"

    def idp(self) -> Any:
        import boto3

        p = self.profile
        return boto3.client(
            "cognito-idp",
            endpoint_url=p["cognito_endpoint"],
            region_name=p["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def user(self, username: str, password: str) -> tuple[str, str]:
        """Create (or reuse) a user in the local pool; returns (sub, id token)."""
        from runtime.local.cognito import LocalPool, create_user

        p = self.profile
        idp = self.idp()
        create_user(idp, LocalPool(p["user_pool_id"], p["app_client_id"]), username, password)
        auth = idp.initiate_auth(
            ClientId=p["app_client_id"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )["AuthenticationResult"]
        token = auth["IdToken"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims["sub"], token

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def start_dev(
    scratch: Path,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 180,
    workers: int = 2,
) -> DevProduct:
    """`collections dev`, offline providers (no API keys), free ports; waits for the banner."""
    data_dir, log = scratch / "data", scratch / "dev.log"
    api_port, aws_port, pg_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLECTIONS_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("VOYAGE_API_KEY", None)
    env.update(extra_env or {})
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
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
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while BANNER not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"collections dev did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return DevProduct(process, data_dir, log, pg_port)
