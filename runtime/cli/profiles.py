"""Where the CLI finds a service (profiles) and keeps its sign-in (token files, mode 0600)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.local.discovery import config_dir, find_data_dir

LOCAL = "local"


class ProfileError(Exception):
    pass


class Unreachable(Exception):
    """The service (or its sign-in) does not answer."""


@dataclass(frozen=True)
class Profile:
    name: str
    api_url: str
    region: str
    user_pool_id: str
    app_client_id: str
    cognito_endpoint: str | None = None  # only for local mode's emulator


@dataclass
class Tokens:
    id_token: str
    refresh_token: str | None
    expires_at: float
    username: str

    def expired(self, margin_s: float = 60) -> bool:
        return time.time() > self.expires_at - margin_s


def _profiles_file() -> Path:
    return config_dir() / "profiles.json"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=2))


def load_profile(name: str) -> Profile:
    stored = _read_json(_profiles_file()).get(name)
    if stored:
        return Profile(name=name, **stored)
    if name == LOCAL:
        local = find_data_dir() / "dev.json"
        if local.exists():
            return Profile(name=LOCAL, **json.loads(local.read_text()))
        raise ProfileError(
            f"no local product found (looked in {local.parent}): start it with "
            "`bash scripts/dev.sh` (or `collections dev`), or point COLLECTIONS_LOCAL_DIR at "
            "its data directory"
        )
    raise ProfileError(
        f"no profile {name!r}: create it with `collections profile set {name} …` or "
        f"`collections profile from-stack {name}`"
    )


def unreachable(profile: Profile, error: object) -> str:
    """What to say when the service does not answer: for local mode, how to start it."""
    if profile.name == LOCAL:
        return (
            f"Collections is not running at {profile.api_url} ({error}): start it with "
            "`bash scripts/dev.sh` (or `collections dev`) and try again"
        )
    return (
        f"cannot reach {profile.api_url} ({error}): check your connection and the profile's "
        f"API URL (`collections profile set {profile.name} …`)"
    )


def save_profile(profile: Profile) -> None:
    profiles = _read_json(_profiles_file())
    data = asdict(profile)
    data.pop("name")
    profiles[profile.name] = data
    _write_private(_profiles_file(), profiles)


def profile_from_stack(name: str, stack: str) -> Profile:
    """A profile from a deployed stack's outputs (``pulumi stack output --json``)."""
    try:
        raw = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except FileNotFoundError as error:
        raise ProfileError("the Pulumi CLI is needed to read a stack's outputs") from error
    except subprocess.CalledProcessError as error:
        raise ProfileError(
            f"pulumi could not read stack {stack!r}: {error.stderr.strip()}"
        ) from error
    outputs = json.loads(raw)
    try:
        return Profile(
            name=name,
            api_url=outputs["apiUrl"].rstrip("/"),
            region=outputs.get("region", "us-east-1"),
            user_pool_id=outputs["userPoolId"],
            app_client_id=outputs["appClientId"],
        )
    except KeyError as missing:
        raise ProfileError(f"stack {stack!r} has no output {missing}") from None


def _tokens_file(profile: str) -> Path:
    return config_dir() / f"tokens-{profile}.json"


def load_tokens(profile: str) -> Tokens | None:
    data = _read_json(_tokens_file(profile))
    return Tokens(**data) if data else None


def save_tokens(profile: str, tokens: Tokens) -> None:
    _write_private(_tokens_file(profile), asdict(tokens))


def forget_tokens(profile: str) -> None:
    _tokens_file(profile).unlink(missing_ok=True)
