"""The AWS emulator of local mode: moto in this process, behind an enforcing front, its state
kept on disk.

- Only the front (``runtime.local.gate``) listens: every call must be signed with local mode's
  own credentials, presigned URLs and POST policies are checked as S3 checks them.
- Cognito's tokens are signed with this installation's key (``runtime.local.identity``), and
  the pool's JWKS publishes only that key.
- moto keeps everything in memory; local mode pickles each service's backends when it stops and
  restores them when it starts, so uploads, users, parameters and queued events survive a
  restart. The file is written atomically with mode 0600. A service that cannot be pickled
  keeps its previous saved state (and the stop says so) instead of losing everyone's.
"""

from __future__ import annotations

import base64
import collections
import copy
import copyreg
import functools
import io
import json
import logging
import pickle
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.local.gate import Credentials, Gate
from runtime.local.identity import SigningKey, write_private

log = logging.getLogger(__name__)

PERSISTED_SERVICES = ("s3", "cognito-idp", "events", "sqs", "dynamodb", "ssm")
STATE_FORMAT = 2  # {"format": 2, "services": {name: pickled bytes}}


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


def _rebuild_defaultdict(
    cls: type, factory: Any, items: dict[Any, Any], attributes: dict[str, Any]
) -> collections.defaultdict:
    rebuilt = cls.__new__(cls)
    rebuilt.default_factory = factory
    dict.update(rebuilt, items)
    if attributes:
        rebuilt.__dict__.update(attributes)
    return rebuilt


def _is_local_function(value: Any) -> bool:
    return getattr(value, "__name__", "") == "<lambda>" or "<locals>" in getattr(
        value, "__qualname__", ""
    )


class _StatePickler(pickle.Pickler):
    """A pickler for moto's backends, which hold two kinds of ``defaultdict`` the standard one
    cannot round-trip: a lambda as the factory (SSM's tags) is saved as an equivalent factory
    (a deep copy of what it returns), and a subclass whose ``__init__`` takes other arguments
    (SSM's ``ParameterDict``) is rebuilt without calling it."""

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, collections.defaultdict):
            return NotImplemented
        factory = obj.default_factory
        if factory is not None and _is_local_function(factory):
            factory = functools.partial(copy.deepcopy, factory())
        elif type(obj) is collections.defaultdict:
            return NotImplemented
        attributes = dict(getattr(obj, "__dict__", {}))
        return _rebuild_defaultdict, (type(obj), factory, dict(obj), attributes)


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _install_identity(key: SigningKey) -> None:
    """Sign every token the emulator's Cognito issues with ``key``; publish only ``key``."""
    from moto.cognitoidp import models, responses

    original = getattr(models.CognitoIdpUserPool.create_jwt, "__wrapped__", None)
    original = original or models.CognitoIdpUserPool.create_jwt

    @functools.wraps(original)
    def create_jwt(self: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
        token, expires_in = original(self, *args, **kwargs)
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return key.sign(claims), expires_in

    models.CognitoIdpUserPool.create_jwt = create_jwt
    responses.CognitoIdpJsonWebKeyResponse.json_web_key = json.dumps(key.jwks()).encode()


class LocalEmulator:
    def __init__(
        self,
        state_file: Path,
        *,
        port: int,
        credentials: Credentials,
        signing_key: SigningKey,
        host: str = "127.0.0.1",
    ) -> None:
        self.state_file = state_file
        self.host = host
        self.port = port
        self.credentials = credentials
        self.signing_key = signing_key
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalEmulator:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        _install_identity(self.signing_key)
        restored = self._restore()
        app = Gate(DomainDispatcherApplication(create_backend_app), self.credentials)
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        log.info("AWS emulator on %s (%s)", self.endpoint, "state restored" if restored else "new")
        return self

    def stop(self) -> list[str]:
        """Stop serving and save the state; return what the user should know about the save."""
        if self._server is None:
            return []
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server.server_close()
        self._server = None
        return self.save()

    def save(self) -> list[str]:
        """Write every service's backends to the state file (atomically, 0600). A service that
        cannot be saved keeps what the previous file held for it; the returned lines say so."""
        from moto.backends import get_backend

        key_type = type(rsa.generate_private_key(public_exponent=65537, key_size=1024))
        copyreg.pickle(key_type, _reduce_private_key)
        # Backends guard their state with locks; a restored backend gets fresh ones.
        copyreg.pickle(type(threading.RLock()), lambda _: (threading.RLock, ()))
        copyreg.pickle(type(threading.Lock()), lambda _: (threading.Lock, ()))
        previous = self._read_state() or {}
        services: dict[str, bytes] = {}
        problems = []
        for name in PERSISTED_SERVICES:
            backends = {
                account: dict(regions.items()) for account, regions in get_backend(name).items()
            }
            try:
                services[name] = _dumps(backends)
            except Exception as error:
                kept = name in previous
                if kept:
                    services[name] = previous[name]
                problems.append(
                    f"! the emulator's {name} state could not be saved "
                    f"({type(error).__name__}: {error}); "
                    + ("its previous saved state was kept" if kept else "it starts empty next time")
                )
        write_private(self.state_file, pickle.dumps({"format": STATE_FORMAT, "services": services}))
        return problems

    def _read_state(self) -> dict[str, bytes] | None:
        if not self.state_file.exists():
            return None
        try:
            with self.state_file.open("rb") as source:
                state = pickle.load(source)  # our own file (0600), written by save()
        except Exception as error:
            log.warning("the emulator state in %s cannot be read: %s", self.state_file, error)
            return None
        if not isinstance(state, dict):
            return None
        if "format" not in state:  # the first format: {service: backends}
            return {name: _dumps(backends) for name, backends in state.items()}
        return state["services"] if state["format"] == STATE_FORMAT else None

    def _restore(self) -> bool:
        services = self._read_state()
        if not services:
            return False
        from moto.backends import get_backend

        for name, data in services.items():
            try:
                accounts = pickle.loads(data)
            except Exception as error:
                log.warning("the emulator's %s state cannot be restored: %s", name, error)
                continue
            live = get_backend(name)
            for account, regions in accounts.items():
                for region, backend in regions.items():
                    live[account][region] = backend
        return True
