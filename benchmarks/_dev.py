"""Run `collections dev` (the product's own local mode) in a scratch folder on free ports."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from runtime.local.spawn import SpawnedDev, spawn_dev


class DevProduct(SpawnedDev):
    @property
    def api_url(self) -> str:
        return self.profile["api_url"]

    def idp(self) -> Any:
        return self.client("cognito-idp")

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
    api_workers: int = 1,
) -> DevProduct:
    """`collections dev`, offline providers (no API keys), free ports; waits for the banner."""
    spawned = spawn_dev(
        scratch / "data",
        scratch / "dev.log",
        workers=workers,
        api_workers=api_workers,
        extra_env=extra_env,
        timeout_s=timeout_s,
    )
    return DevProduct(spawned.process, spawned.data_dir, spawned.log, spawned.postgres_port)
