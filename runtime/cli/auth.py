"""Signing in with Cognito (password, then refresh) for the CLI."""

from __future__ import annotations

import time
from typing import Any

from runtime.cli.profiles import Profile, Tokens, load_tokens, save_tokens


class AuthError(Exception):
    pass


def _idp(profile: Profile) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "cognito-idp",
        region_name=profile.region,
        endpoint_url=profile.cognito_endpoint,
        config=Config(signature_version=UNSIGNED),  # sign-in needs no AWS credentials
    )


def _tokens(result: dict[str, Any], username: str, refresh_token: str | None) -> Tokens:
    auth = result["AuthenticationResult"]
    return Tokens(
        id_token=auth["IdToken"],
        refresh_token=auth.get("RefreshToken", refresh_token),
        expires_at=time.time() + int(auth.get("ExpiresIn", 3600)),
        username=username,
    )


def login(profile: Profile, username: str, password: str) -> Tokens:
    idp = _idp(profile)
    try:
        result = idp.initiate_auth(
            ClientId=profile.app_client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": password},
        )
    except (idp.exceptions.NotAuthorizedException, idp.exceptions.UserNotFoundException):
        raise AuthError("wrong user name or password") from None
    if "AuthenticationResult" not in result:
        raise AuthError(
            f"sign-in needs a further step ({result.get('ChallengeName')}); "
            "finish it in the web sign-in first"
        )
    tokens = _tokens(result, username, None)
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
    idp = _idp(profile)
    try:
        result = idp.initiate_auth(
            ClientId=profile.app_client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": tokens.refresh_token},
        )
    except idp.exceptions.NotAuthorizedException:
        raise AuthError("the session expired: run `collections login` again") from None
    refreshed = _tokens(result, tokens.username, tokens.refresh_token)
    save_tokens(profile.name, refreshed)
    return refreshed.id_token
