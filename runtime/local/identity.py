"""Local mode's identity keys and credentials: made on first start, kept in the data directory
(files of mode 0600), never shipped in a package.

- ``SigningKey``: the RSA key every local token is signed with. The emulator's Cognito signs
  with a key that ships inside its package (the same for everyone who installed it); local mode
  re-signs each token it issues with this installation's key and publishes only this key as
  the pool's JWKS, so a token made with the packaged key (or any other) is refused.
- ``AwsCredentials``: the access key the local processes sign their AWS calls with; the
  emulator's front (``runtime.local.gate``) refuses calls not signed with it. Processes find it
  in an AWS shared-credentials file (``AWS_SHARED_CREDENTIALS_FILE``), never in an environment
  variable.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AWS_PROFILE = "collections-local"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600 from the first byte), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey), f"{path} is not an RSA key"
            path.chmod(0o600)
            return cls(key)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)
        return cls(key)

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public key (changes with the key)."""
        numbers = self.private_key.public_key().public_numbers()
        canonical = json.dumps(
            {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}, separators=(",", ":")
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def jwks(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.kid,
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    path: Path

    @classmethod
    def load_or_create(cls, path: Path) -> AwsCredentials:
        parser = configparser.ConfigParser()
        if path.exists():
            parser.read(path)
            if parser.has_section(AWS_PROFILE):
                section = parser[AWS_PROFILE]
                path.chmod(0o600)
                return cls(section["aws_access_key_id"], section["aws_secret_access_key"], path)
        alphabet = string.ascii_uppercase + string.digits
        key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        secret = secrets.token_urlsafe(30)
        text = f"[{AWS_PROFILE}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        write_private(path, text.encode())
        return cls(key_id, secret, path)

    def environment(self) -> dict[str, str]:
        """What a process needs to find these credentials (a file's path, not the secret)."""
        return {"AWS_SHARED_CREDENTIALS_FILE": str(self.path), "AWS_PROFILE": AWS_PROFILE}

    @staticmethod
    def scrub(env: dict[str, str]) -> None:
        """Remove credentials that would take precedence over the shared-credentials file."""
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
