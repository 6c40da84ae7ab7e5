"""Signing in to the stack's Cognito user pool with its public app client (no secret, no AWS
credentials): a password, then the refresh token. The CLI and the web app's session routes both
use it, against Cognito on AWS or the emulator's pool in local mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SignInRefused(Exception):
    """Wrong credentials, an expired or revoked refresh token, or a step this client cannot do."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class SignInUnavailable(Exception):
    """The user pool is throttling or unreachable."""

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        self.message = message
        self.throttled = throttled
        super().__init__(message)


@dataclass(frozen=True)
class SignedIn:
    id_token: str
    access_token: str
    refresh_token: str | None  # absent from a refresh's answer: the old one stays valid
    expires_in: int


def identity_client(region: str, endpoint_url: str | None = None) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "cognito-idp",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 2}),
    )


_WRONG = ("NotAuthorizedException", "UserNotFoundException", "InvalidParameterException")
_BLOCKED = {
    "UserNotConfirmedException": (
        "account_not_confirmed",
        "This account is not confirmed yet; confirm it with the code you were sent.",
    ),
    "PasswordResetRequiredException": (
        "password_reset_required",
        "This account needs a new password; reset it before signing in.",
    ),
}


def _call(idp: Any, refused: SignInRefused, **kwargs: Any) -> SignedIn:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result = idp.initiate_auth(**kwargs)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _WRONG:
            raise refused from None
        if code in _BLOCKED:
            raise SignInRefused(*_BLOCKED[code]) from None
        if code in ("TooManyRequestsException", "LimitExceededException"):
            raise SignInUnavailable(
                "Too many sign-in attempts; wait a minute and try again.", throttled=True
            ) from None
        raise SignInUnavailable("Sign-in is not available right now; try again shortly.") from None
    except BotoCoreError:
        raise SignInUnavailable("Sign-in is not available right now; try again shortly.") from None
    auth = result.get("AuthenticationResult")
    if not auth:
        raise SignInRefused(
            "challenge_required",
            f"Sign-in needs a further step ({result.get('ChallengeName', 'unknown')}) that this "
            "client cannot do; finish it with your administrator's sign-in page first.",
        )
    return SignedIn(
        id_token=auth["IdToken"],
        access_token=auth["AccessToken"],
        refresh_token=auth.get("RefreshToken"),
        expires_in=int(auth.get("ExpiresIn", 3600)),
    )


def password_sign_in(idp: Any, client_id: str, username: str, password: str) -> SignedIn:
    return _call(
        idp,
        SignInRefused("wrong_credentials", "Wrong email or password."),
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )


def refresh(idp: Any, client_id: str, refresh_token: str) -> SignedIn:
    return _call(
        idp,
        SignInRefused("session_expired", "Your session has ended; sign in again."),
        ClientId=client_id,
        AuthFlow="REFRESH_TOKEN_AUTH",
        AuthParameters={"REFRESH_TOKEN": refresh_token},
    )


def revoke(idp: Any, client_id: str, refresh_token: str) -> None:
    """Best effort: the refresh token stops working. Cognito revokes it (the app client has
    token revocation on); an emulator without RevokeToken signs the user out everywhere instead
    (GlobalSignOut with an access token got from the same refresh token)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        idp.revoke_token(Token=refresh_token, ClientId=client_id)
        return
    except (ClientError, BotoCoreError):
        pass
    try:
        access_token = refresh(idp, client_id, refresh_token).access_token
        idp.global_sign_out(AccessToken=access_token)
    except (SignInRefused, SignInUnavailable, ClientError, BotoCoreError):
        pass
