"""CLI pieces that the local end-to-end test does not reach: profiles from a deployed stack's
outputs (through a stand-in `pulumi` on PATH), file selection, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.cli.api import Api
from runtime.cli.commands import image_files
from runtime.cli.main import build_parser, main
from runtime.cli.profiles import ProfileError, load_profile, profile_from_stack


def fake_pulumi(tmp_path: Path, outputs: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    calls = tmp_path / "calls.txt"
    script = tmp_path / "bin" / "pulumi"
    script.parent.mkdir()
    script.write_text(
        f"#!/bin/sh\necho \"$@\" >> {calls}\ncat <<'JSON'\n{json.dumps(outputs)}\nJSON\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_profile_from_stack_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTIONS_CONFIG_DIR", str(tmp_path / "config"))
    calls = fake_pulumi(
        tmp_path,
        {
            "apiUrl": "https://abc.execute-api.eu-west-1.amazonaws.com/",
            "region": "eu-west-1",
            "userPoolId": "eu-west-1_Pool",
            "appClientId": "client123",
            "bucketName": "b",
        },
        monkeypatch,
    )
    assert main(["profile", "from-stack", "prod", "--stack", "acme/collections/prod"]) == 0
    assert calls.read_text().split() == [
        "stack",
        "output",
        "--json",
        "--stack",
        "acme/collections/prod",
    ]
    profile = load_profile("prod")
    assert profile.api_url == "https://abc.execute-api.eu-west-1.amazonaws.com"
    assert (profile.region, profile.user_pool_id, profile.app_client_id) == (
        "eu-west-1",
        "eu-west-1_Pool",
        "client123",
    )
    assert profile.cognito_endpoint is None  # the real Cognito
    saved = tmp_path / "config" / "profiles.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_profile_from_stack_names_a_missing_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_pulumi(tmp_path, {"apiUrl": "https://x", "userPoolId": "p"}, monkeypatch)
    with pytest.raises(ProfileError, match="appClientId"):
        profile_from_stack("dev", "dev")


def test_unknown_profile_and_not_signed_in_have_their_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLLECTIONS_CONFIG_DIR", str(tmp_path))
    assert main(["ls", "--profile", "nowhere"]) == 2
    assert "no profile 'nowhere'" in capsys.readouterr().err
    assert (
        main(
            [
                "profile",
                "set",
                "p",
                "--api-url",
                "http://127.0.0.1:9",
                "--region",
                "us-east-1",
                "--user-pool-id",
                "x",
                "--app-client-id",
                "y",
            ]
        )
        == 0
    )
    assert main(["ls", "--profile", "p"]) == 3
    assert "not signed in" in capsys.readouterr().err


def test_image_files_walks_folders_and_reports_other_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/one.JPG", "a/two.heic", "a/notes.txt", "three.png", "readme.md"):
        (tmp_path / name).write_bytes(b"x")
    images, skipped = image_files([tmp_path / "a", tmp_path / "three.png", tmp_path / "readme.md"])
    assert [p.name for p in images] == ["one.JPG", "two.heic", "three.png"]
    assert [p.name for p in skipped] == ["readme.md"]  # named explicitly, so reported


def _cli(*args: str, data: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLLECTIONS_LOCAL_DIR": str(data), "COLLECTIONS_CONFIG_DIR": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_stopped_local_product_says_how_to_start_it(tmp_path: Path) -> None:
    """What `collections dev` left behind (profile, demo user) with nothing listening."""
    from runtime.cli.profiles import Tokens, save_tokens
    from runtime.local.postgres import free_port

    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir()
    closed = f"http://127.0.0.1:{free_port()}"
    profile = {
        "api_url": closed,
        "region": "us-east-1",
        "cognito_endpoint": closed,
        "user_pool_id": "us-east-1_x",
        "app_client_id": "y",
    }
    (data / "dev.json").write_text(json.dumps(profile))
    demo = {"username": "demo@collections.local", "password": "Demo-pass-1a"}
    (data / "demo-user.json").write_text(json.dumps(demo))

    login = _cli("login", data=data, config=config)
    assert login.returncode == 5, login.stderr
    assert "not running" in login.stderr and "bash scripts/dev.sh" in login.stderr
    assert "Errno" not in login.stderr

    os.environ["COLLECTIONS_CONFIG_DIR"] = str(config)
    try:
        save_tokens("local", Tokens("token", None, time.time() + 3600, demo["username"]))
    finally:
        del os.environ["COLLECTIONS_CONFIG_DIR"]
    listing = _cli("ls", data=data, config=config)
    assert listing.returncode == 5, listing.stderr
    assert f"Collections is not running at {closed}" in listing.stderr
    assert "bash scripts/dev.sh" in listing.stderr and "Errno" not in listing.stderr


def test_validation_errors_print_their_details() -> None:
    import httpx

    from runtime.cli.api import _error_message

    response = httpx.Response(
        422,
        json={
            "error": {
                "code": "validation_error",
                "message": "The request does not match the API schema; see details.",
                "details": [
                    {
                        "location": ["query", "q"],
                        "message": "String should have at most 1000 characters",
                    },
                    {
                        "location": ["body", "size"],
                        "message": "Input should be greater than or equal to 1",
                    },
                ],
            }
        },
    )
    message = _error_message(response)
    assert "(422 validation_error)" in message
    assert "query.q: String should have at most 1000 characters" in message
    assert "\n  size: Input should be greater than or equal to 1" in message


class FlakyApi(Api):
    """The API as `upload --wait` sees it: creating uploads, then listing items, with outages."""

    def __init__(self, *, outage_calls: int, existing: dict[str, str]) -> None:
        self.outage_calls = outage_calls  # how many listings fail before the API answers
        self.existing = existing  # sha256 -> item id already in the collection
        self.created: list[str] = []
        self.listings = 0

    def create_upload(self, path: Path, content_type: str, sha256: str | None = None) -> dict:
        from runtime.cli.api import ApiError

        if sha256 in self.existing:
            raise ApiError(
                409,
                "already (409 duplicate_item)",
                code="duplicate_item",
                item_id=self.existing[sha256],
            )
        item_id = f"item-{len(self.created)}"
        self.created.append(item_id)
        return {"item": {"id": item_id}, "upload": {}}

    def send_upload(self, form: dict, path: Path) -> None:
        return None

    def items(self, **params: object) -> dict:
        from runtime.cli.api import ApiError

        self.listings += 1
        if self.listings <= self.outage_calls:
            raise ApiError(0, "cannot reach http://127.0.0.1:1: connection refused")
        items: list[dict[str, object]] = [
            {"id": item_id, "status": "ready" if n else "failed", "failure": None}
            for n, item_id in enumerate(self.created)
        ]
        items[0]["failure"] = {"stage": "thumbnail", "reason": "not_an_image: text"}
        return {"items": items, "next_cursor": None}


def _upload_args(*arguments: str) -> argparse.Namespace:
    """`collections upload ARGUMENTS` as the CLI parses it."""
    return build_parser().parse_args(["upload", *arguments])


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    from runtime.cli import commands

    slept: list[float] = []
    monkeypatch.setattr(commands.time, "sleep", slept.append)
    return slept


def test_upload_wait_survives_an_outage_and_reports_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_sleep: list[float]
) -> None:
    import hashlib

    from runtime.cli.commands import _upload

    files = []
    for name, data in (("bad.jpg", b"not a jpeg"), ("good.png", b"png"), ("again.jpg", b"dup")):
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    api = FlakyApi(outage_calls=4, existing={hashlib.sha256(b"dup").hexdigest(): "item-old"})
    args = _upload_args(str(tmp_path), "--wait", "--json", "--timeout", "60", "--parallel", "1")
    code = _upload(api, args)

    out, err = capsys.readouterr()
    summary = {Path(u["file"]).name: u for u in json.loads(out)}
    assert code == 1  # one item failed
    assert summary["bad.jpg"]["status"] == "failed"
    assert summary["bad.jpg"]["failure"] == "thumbnail: not_an_image: text"
    assert summary["good.png"]["status"] == "ready"
    assert summary["again.jpg"] == {
        "file": str(tmp_path / "again.jpg"),
        "item_id": "item-old",
        "status": "duplicate",
        "failure": None,
    }
    assert err.count("the API is not answering") == 1 and "the API answers again" in err
    assert no_sleep[:4] == [1.0, 2.0, 4.0, 8.0]  # backoff while it was unreachable


def test_upload_wait_ends_with_a_summary_when_the_api_never_comes_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.cli import commands

    clock = [0.0]
    monkeypatch.setattr(commands.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(commands.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    (tmp_path / "a.jpg").write_bytes(b"a")
    api = FlakyApi(outage_calls=10_000, existing={})
    args = _upload_args(str(tmp_path / "a.jpg"), "--wait", "--timeout", "60", "--parallel", "1")
    code = commands._upload(api, args)
    out, err = capsys.readouterr()
    assert code == 1
    assert "not ready after 60 s; the API was unreachable: cannot reach" in err
    assert out.strip().splitlines()[-1] == "1 failed"
