"""The HTTP API, as the CLI sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from runtime.cli.auth import current_token
from runtime.cli.profiles import Profile, unreachable

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, item_id: str | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.item_id = item_id
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Worth trying again: the API unreachable or timing out, throttling, a 5xx."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class Api:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._http = httpx.Client(base_url=profile.api_url, timeout=TIMEOUT)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {current_token(self.profile)}"}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as error:
            raise ApiError(0, unreachable(self.profile, _reason(error))) from None
        if response.status_code >= 400:
            error = _error_body(response)
            raise ApiError(
                response.status_code,
                _error_message(response),
                code=error.get("code"),
                item_id=error.get("item_id"),
            )
        return response.json() if response.content else None

    def create_upload(
        self, path: Path, content_type: str, sha256: str | None = None
    ) -> dict[str, Any]:
        body = {"file_name": path.name, "content_type": content_type, "size": path.stat().st_size}
        if sha256:
            body["sha256"] = sha256  # the API answers 409 duplicate_item for bytes it has
        return self._request("POST", "/items", json=body)

    def send_upload(self, form: dict[str, Any], path: Path) -> None:
        """The presigned POST straight to S3 (no API token: the form is the authorization)."""
        with path.open("rb") as body:
            try:
                response = httpx.post(
                    form["url"],
                    data=form["fields"],
                    files={"file": (path.name, body, form["content_type"])},
                    timeout=120,
                )
            except httpx.HTTPError as error:
                raise ApiError(0, f"upload of {path.name} failed: {error}") from None
        if response.status_code >= 300:
            raise ApiError(
                response.status_code, f"storage refused {path.name}: {response.text[:200]}"
            )

    def items(self, **params: Any) -> dict[str, Any]:
        return self._request("GET", "/items", params=_present(params))

    def item(self, item_id: str) -> dict[str, Any]:
        return self._request("GET", f"/items/{item_id}")

    def reanalyze(self, item_id: str) -> dict[str, Any]:
        return self._request("POST", f"/items/{item_id}/reanalyze")

    def delete(self, item_id: str) -> None:
        self._request("DELETE", f"/items/{item_id}")

    def search(self, query: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", "/search", params=_present({"q": query, **params}))

    def create_conversation(self, title: str | None = None) -> dict[str, Any]:
        return self._request("POST", "/conversations", json=_present({"title": title}))

    def ask(self, conversation_id: str, question: str) -> dict[str, Any]:
        return self._request(
            "POST", f"/conversations/{conversation_id}/messages", json={"content": question}
        )

    def message(self, conversation_id: str, message_id: str) -> dict[str, Any]:
        return self._request("GET", f"/conversations/{conversation_id}/messages/{message_id}")

    def download(self, url: str, target: Path) -> None:
        try:
            with httpx.stream("GET", url, timeout=120) as response:
                response.raise_for_status()
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as error:
            raise ApiError(0, f"download failed: {error}") from None


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _reason(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "connection refused" if "refused" in str(error).lower() else "cannot connect"
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    return type(error).__name__


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        message = f"{error['message']} ({response.status_code} {error['code']})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    for detail in error.get("details") or []:
        where = ".".join(str(part) for part in detail.get("location", []) if part != "body")
        message += f"\n  {where or 'request'}: {detail.get('message', '')}"
    return message
