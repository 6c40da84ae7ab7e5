"""Signing in with Cognito (password, then refresh) for the CLI."""

from __future__ import annotations

import time
from typing import Any

from runtime.adapters.signin import (
    SignedIn,
    SignInRefused,
    SignInUnavailable,
    identity_client,
    password_sign_in,
    refresh,
)
from runtime.cli.profiles import (
    LOCAL,
    Profile,
    Tokens,
    Unreachable,
    load_tokens,
    save_tokens,
    unreachable,
)


class AuthError(Exception):
    pass


def _idp(profile: Profile) -> Any:
    return identity_client(profile.region, profile.cognito_endpoint)


def _unavailable(profile: Profile, error: SignInUnavailable) -> Exception:
    if error.throttled:
        return AuthError(error.message)
    if profile.name == LOCAL:
        return Unreachable(unreachable(profile, "sign-in does not answer"))
    return Unreachable(error.message)


def _tokens(signed_in: SignedIn, username: str, refresh_token: str | None) -> Tokens:
    return Tokens(
        id_token=signed_in.id_token,
        refresh_token=signed_in.refresh_token or refresh_token,
        expires_at=time.time() + signed_in.expires_in,
        username=username,
    )


def login(profile: Profile, username: str, password: str) -> Tokens:
    try:
        signed_in = password_sign_in(_idp(profile), profile.app_client_id, username, password)
    except SignInRefused as error:
        if error.code == "wrong_credentials":
            raise AuthError("wrong user name or password") from None
        raise AuthError(error.message) from None
    except SignInUnavailable as error:
        raise _unavailable(profile, error) from None
    tokens = _tokens(signed_in, username, None)
    save_tokens(profile.name, tokens)
    return tokens


def current_token(profile: Profile) -> str:
    """A valid id token for the profile, refreshed when it has expired."""
    tokens = load_tokens(profile.name)
    if tokens is None:
        raise AuthError(f"not signed in: run `collections login` (profile {profile.name})")
    if not tokens.expired():
        return tokens.id_token
    if not tokens.refresh_token:
        raise AuthError("the session expired: run `collections login` again")
    try:
        signed_in = refresh(_idp(profile), profile.app_client_id, tokens.refresh_token)
    except SignInRefused:
        raise AuthError("the session expired: run `collections login` again") from None
    except SignInUnavailable as error:
        raise _unavailable(profile, error) from None
    refreshed = _tokens(signed_in, tokens.username, tokens.refresh_token)
    save_tokens(profile.name, refreshed)
    return refreshed.id_token
