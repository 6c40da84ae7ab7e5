"""The AWS emulator of local mode: moto's server in this process, its state kept on disk.

moto keeps everything in memory; local mode pickles the services' backends when it stops and
restores them when it starts, so uploads, users and queued events survive a restart. (RSA keys
of the Cognito pools are not picklable as such: they travel as PEM.)
"""

from __future__ import annotations

import copyreg
import logging
import pickle
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

PERSISTED_SERVICES = ("s3", "cognito-idp", "events", "sqs", "dynamodb", "ssm")


def _load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _reduce_private_key(key: rsa.RSAPrivateKey) -> tuple[Any, tuple[bytes]]:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _load_private_key, (pem,)


class LocalEmulator:
    def __init__(self, state_file: Path, *, port: int, host: str = "127.0.0.1") -> None:
        self.state_file = state_file
        self.host = host
        self.port = port
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalEmulator:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        restored = self._restore()
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        log.info("AWS emulator on %s (%s)", self.endpoint, "state restored" if restored else "new")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.save()
            self._server.stop()
            self._server = None

    def save(self) -> None:
        from moto.backends import get_backend

        key_type = type(rsa.generate_private_key(public_exponent=65537, key_size=1024))
        copyreg.pickle(key_type, _reduce_private_key)
        # Backends guard their state with locks; a restored backend gets fresh ones.
        copyreg.pickle(type(threading.RLock()), lambda _: (threading.RLock, ()))
        copyreg.pickle(type(threading.Lock()), lambda _: (threading.Lock, ()))
        state = {
            name: {account: dict(regions.items()) for account, regions in get_backend(name).items()}
            for name in PERSISTED_SERVICES
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".tmp")
        with partial.open("wb") as out:
            pickle.dump(state, out)
        partial.chmod(0o600)
        partial.replace(self.state_file)

    def _restore(self) -> bool:
        if not self.state_file.exists():
            return False
        from moto.backends import get_backend

        with self.state_file.open("rb") as source:
            state = pickle.load(source)  # our own file, written by save()
        for name, accounts in state.items():
            live = get_backend(name)
            for account, regions in accounts.items():
                for region, backend in regions.items():
                    live[account][region] = backend
        return True
