"""Local mode end to end: `collections dev` as a real process, driven by the `collections` CLI
over HTTP, exactly as a user on a fresh machine would."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import jwt
import psutil
import psycopg
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.local.cognito import LocalPool, create_user
from runtime.local.spawn import SpawnedDev, spawn_dev
from tests.conftest import dataset
from tests.corpus import bad_image_corpus, write_hostile_corpus
from tests.fakes.model_server import FakeModelServer

START_TIMEOUT_S = 300


@dataclass
class LocalProduct:
    process: subprocess.Popen
    data_dir: Path
    log: Path
    spawned: SpawnedDev

    def _cli_env(self, config: Path) -> dict[str, str]:
        return {
            **os.environ,
            "COLLECTIONS_LOCAL_DIR": str(self.data_dir),
            "COLLECTIONS_CONFIG_DIR": str(config),
        }

    def cli(
        self, *args: str, config: Path, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", *args],
            env=self._cli_env(config),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start_cli(self, *args: str, config: Path) -> subprocess.Popen:
        """The CLI running in the background (its output read with ``communicate``)."""
        return subprocess.Popen(
            [sys.executable, "-m", "runtime.cli.main", *args],
            env=self._cli_env(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def profile(self) -> dict:
        return json.loads((self.data_dir / "dev.json").read_text())

    def workers(self) -> list[psutil.Process]:
        return [
            child
            for child in psutil.Process(self.process.pid).children()
            if "runtime.local.worker" in " ".join(child.cmdline())
        ]


def _descendants(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _start(data_dir: Path, log: Path) -> LocalProduct:
    extra_env = {
        # where `collections dev` records its data directory for the CLI
        "COLLECTIONS_CONFIG_DIR": str(data_dir.parent / "dev-config"),
        # An API key is stored as an SSM SecureString (the emulator's state must still save);
        # analysis and the assistant stay offline for the test.
        "ANTHROPIC_API_KEY": "sk-ant-not-used-by-these-tests",
        "COLLECTIONS_ANALYZER": "local",
        "COLLECTIONS_ASSISTANT": "local",
    }
    try:
        spawned = spawn_dev(
            data_dir, log, attempt_timeout_s=5, timeout_s=START_TIMEOUT_S, extra_env=extra_env
        )
    except RuntimeError as error:
        pytest.fail(str(error))
    return LocalProduct(spawned.process, spawned.data_dir, spawned.log, spawned)


def _stop(product: LocalProduct) -> None:
    product.process.send_signal(signal.SIGINT)
    product.process.wait(timeout=60)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProduct]:
    base = tmp_path_factory.mktemp("local-mode")
    running = _start(base / "data", base / "dev.log")
    yield running
    if running.process.poll() is None:
        _stop(running)


def _json(result: subprocess.CompletedProcess) -> dict | list:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_upload_ready_search_delete_and_isolation(product: LocalProduct, tmp_path: Path) -> None:
    screenshots = dataset("screenshots")
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(screenshots.glob("*.jpg"))[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    demo, other = tmp_path / "demo", tmp_path / "other"

    assert product.cli("login", config=demo).returncode == 0
    uploads = _json(product.cli("upload", str(folder), "--wait", "--json", config=demo))
    assert [u["status"] for u in uploads] == ["ready"] * 4

    first = _json(product.cli("show", uploads[0]["item_id"], "--json", config=demo))
    headline = first["analysis"]["result"]["headline"]
    assert first["analysis"]["provider"] == "local"
    found = _json(product.cli("search", headline, "--json", config=demo))
    assert found["results"][0]["item_id"] == uploads[0]["item_id"]
    # The assistant (offline: no Anthropic key here) answers from search, citing the item.
    answer = _json(product.cli("ask", headline, "--json", config=demo))
    assert answer["status"] == "done" and answer["usage"]["provider"] == "offline"
    assert uploads[0]["item_id"] in [c["item_id"] for c in answer["citations"]]
    assert found["results"][0]["file_name"] == Path(uploads[0]["file"]).name
    listed = product.cli("search", headline, config=demo)
    assert Path(uploads[0]["file"]).name in listed.stdout.splitlines()[0]

    # ls pages: a page, the hint to go on, the rest with its cursor, or everything at once
    first_page = product.cli("ls", "--limit", "3", config=demo)
    lines = first_page.stdout.splitlines()
    assert len(lines) == 3 and "--cursor" in first_page.stderr
    names = {Path(u["file"]).name for u in uploads}
    assert any(name in lines[0] for name in names) and re.search(
        r"\b20\d\d-\d\d-\d\d \d\d:\d\d\b", lines[0]
    )
    cursor = first_page.stderr.split("--cursor ")[1].split("`")[0]
    rest = _json(product.cli("ls", "--limit", "3", "--cursor", cursor, "--json", config=demo))
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    every = _json(product.cli("ls", "--limit", "3", "--all", "--json", config=demo))
    assert {i["id"] for i in every["items"]} == {u["item_id"] for u in uploads}

    # reanalyze: a second analysis version, ready again
    again = _json(product.cli("reanalyze", uploads[1]["item_id"], "--wait", "--json", config=demo))
    assert again == [{"item_id": uploads[1]["item_id"], "status": "ready", "failure": None}]
    second = _json(product.cli("show", uploads[1]["item_id"], "--json", config=demo))
    assert second["analysis"]["version"] == 2

    # a request the API refuses as invalid says why
    too_long = product.cli("search", "x" * 1001, config=demo)
    assert too_long.returncode == 2
    assert "query.q: String should have at most 1000 characters" in too_long.stderr

    # a second user sees none of it
    profile = product.profile()
    idp = product.spawned.client("cognito-idp")
    create_user(
        idp,
        LocalPool(profile["user_pool_id"], profile["app_client_id"]),
        "second@collections.local",
        "Second-user-passw0rd",
    )
    login = product.cli(
        "login",
        "--username",
        "second@collections.local",
        "--password-stdin",
        config=other,
        stdin="Second-user-passw0rd\n",
    )
    assert login.returncode == 0, login.stderr
    assert _json(product.cli("ls", "--json", config=other))["items"] == []
    assert _json(product.cli("search", headline, "--json", config=other))["results"] == []
    asked = product.cli("ask", headline, config=other)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith("I found nothing in your collection about") and "[1]" not in (
        asked.stdout
    )
    assert product.cli("show", uploads[0]["item_id"], config=other).returncode == 4
    assert product.cli("rm", uploads[0]["item_id"], config=other).returncode == 4

    assert product.cli("rm", uploads[0]["item_id"], config=demo).returncode == 0
    assert product.cli("show", uploads[0]["item_id"], config=demo).returncode == 4
    remaining = {i["id"] for i in _json(product.cli("ls", "--json", config=demo))["items"]}
    assert remaining == {u["item_id"] for u in uploads[1:]}


def test_killed_worker_loses_nothing_and_a_poisoned_image_fails_alone(
    product: LocalProduct, tmp_path: Path
) -> None:
    screenshots = dataset("screenshots")
    folder = tmp_path / "batch"
    folder.mkdir()
    for path in sorted(screenshots.glob("*.jpg"))[10:16]:
        (folder / path.name).write_bytes(path.read_bytes())
    poison, reason = bad_image_corpus()["truncated.jpg"]
    (folder / "poisoned.jpg").write_bytes(poison)
    config = tmp_path / "demo"
    assert product.cli("login", config=config).returncode == 0

    uploading = product.start_cli("upload", str(folder), "--wait", "--json", config=config)
    time.sleep(4)  # the pipeline is busy with the batch now
    killed = product.workers()
    assert killed, "no worker process found"
    for worker in killed:
        worker.kill()  # SIGKILL: no chance to finish or clean up
    out, err = uploading.communicate(timeout=600)
    assert uploading.returncode == 1, err  # one item failed: the poisoned one
    results = {Path(u["file"]).name: u for u in json.loads(out)}
    assert results["poisoned.jpg"]["status"] == "failed"
    assert reason in results["poisoned.jpg"]["failure"]
    assert {n: u["status"] for n, u in results.items() if n != "poisoned.jpg"} == {
        n: "ready" for n in results if n != "poisoned.jpg"
    }
    assert "restarting it" in product.log.read_text()
    assert all(not w.is_running() for w in killed)


def test_forged_tokens_and_passwordless_database_connections_are_refused(
    product: LocalProduct,
) -> None:
    from moto.utilities.utils import load_resource

    profile = product.profile()
    now = int(time.time())
    claims = {
        "iss": f"https://cognito-idp.{profile['region']}.amazonaws.com/{profile['user_pool_id']}",
        "sub": "anyone-at-all",
        "aud": profile["app_client_id"],
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
    }
    packaged = jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json"), "RS256").key
    random_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(_demo_token(product))["kid"]  # the genuine key's id
    for key, key_id in ((packaged, "dummy"), (packaged, kid), (random_key, kid)):
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id})
        response = httpx.get(
            f"{profile['api_url']}/items", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, response.text

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            f"host=127.0.0.1 port={product.spawned.postgres_port} user=postgres "
            "dbname=collections passfile=/dev/null",
            connect_timeout=5,
        ).close()
    with psycopg.connect(product.spawned.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    for secret in ("aws-credentials", "identity-key.pem", "demo-user.json", "postgres.pgpass"):
        assert stat.S_IMODE((product.data_dir / secret).stat().st_mode) == 0o600, secret


def _demo_token(product: LocalProduct) -> str:
    demo = json.loads((product.data_dir / "demo-user.json").read_text())
    profile = product.profile()
    idp = boto3.client(
        "cognito-idp",
        endpoint_url=profile["cognito_endpoint"],
        region_name=profile["region"],
        config=Config(signature_version=UNSIGNED),
    )
    return idp.initiate_auth(
        ClientId=profile["app_client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": demo["username"], "PASSWORD": demo["password"]},
    )["AuthenticationResult"]["IdToken"]


def test_the_cli_finds_the_product_from_any_directory(
    product: LocalProduct, tmp_path: Path
) -> None:
    assert f"data         {product.data_dir}" in product.log.read_text()  # the banner
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLLECTIONS_LOCAL_DIR", "COLLECTIONS_CONFIG_DIR")
    }
    env["COLLECTIONS_CONFIG_DIR"] = str(product.data_dir.parent / "dev-config")
    for command in (["login"], ["ls", "--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", *command],
            env=env,
            cwd=tmp_path,  # nowhere near the data directory
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr


def test_restart_keeps_the_data(product: LocalProduct, tmp_path: Path) -> None:
    config = tmp_path / "demo"
    assert product.cli("login", config=config).returncode == 0
    before = _json(product.cli("ls", "--json", config=config))["items"]
    assert before
    _stop(product)
    log = product.log.read_text()
    assert "stopped; data kept" in log
    assert "could not be saved" not in log  # a SecureString parameter exists: still saved
    state = product.data_dir / "aws-state.pkl"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert not [p.name for p in product.data_dir.iterdir() if p.name.endswith(".tmp")]
    restarted = _start(product.data_dir, product.log.with_name("dev-restarted.log"))
    product.process, product.log = restarted.process, restarted.log
    product.spawned = restarted.spawned
    after = _json(product.cli("ls", "--json", config=config))["items"]
    assert [i["id"] for i in after] == [i["id"] for i in before]
    thumbnail = tmp_path / "thumb.webp"
    ready = next(item for item in after if item["status"] == "ready")
    opened = product.cli("open", ready["id"], "--output", str(thumbnail), config=config)
    assert opened.returncode == 0, opened.stderr
    assert thumbnail.read_bytes()[:4] == b"RIFF"


def _reports(product: LocalProduct, since: float) -> list[dict]:
    """The workers' per-invocation reports (like Lambda's REPORT lines) written since ``since``."""
    from datetime import datetime

    path = product.data_dir / "invocations.jsonl"
    text = path.read_text() if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]  # a worker may be writing the last line
    lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return [r for r in lines if datetime.fromisoformat(r["time"]).timestamp() >= since]


# Only a guard against a hung pipeline, so that a hang cannot stall CI: how long the corpus takes
# depends on the machine and is measured by benchmarks, never asserted here.
HOSTILE_HANG_GUARD_S = 1500
PIPELINE_STAGES = ("thumbnail", "analyze", "embed")


def _attempts_per_item(reports: list[dict]) -> Counter[tuple[str, str]]:
    """How many times each pipeline function was invoked on each item."""
    return Counter(
        (r["function"], r["item_id"]) for r in reports if r["function"] in PIPELINE_STAGES
    )


def _assert_no_crash_loop(reports: list[dict]) -> None:
    from runtime.topology import function

    for (name, item), attempts in _attempts_per_item(reports).items():
        allowed = function(name).retry.maximum_retry_attempts + 1
        assert attempts <= allowed, f"crash loop: {name} invoked {attempts} times on item {item}"


@pytest.mark.timeout(HOSTILE_HANG_GUARD_S + 300)
def test_hostile_files_end_in_their_state_within_their_attempts_under_the_memory_sizes(
    product: LocalProduct, tmp_path: Path
) -> None:
    from runtime.cli.commands import image_files
    from runtime.topology import function

    corpus = write_hostile_corpus(tmp_path / "h")
    uploaded, _ = image_files([tmp_path / "h"])  # what the CLI picks from a folder
    expected = {path.name: want for path, want in corpus.items() if path in uploaded}
    assert len(expected) >= 20, expected
    config = tmp_path / "demo"
    assert product.cli("login", config=config).returncode == 0
    since = time.time()
    uploading = product.start_cli(
        "upload",
        str(tmp_path / "h"),
        "--wait",
        "--json",
        "--timeout",
        str(HOSTILE_HANG_GUARD_S),
        config=config,
    )
    try:
        while uploading.poll() is None:  # a crash loop fails here, long before the guard
            _assert_no_crash_loop(_reports(product, since))
            time.sleep(2)
    finally:
        if uploading.poll() is None:
            uploading.kill()
    out, err = uploading.communicate()
    assert uploading.returncode == 1, err  # the failing files
    results = {Path(u["file"]).name: u for u in json.loads(out)}
    assert set(results) == set(expected)
    hung = [n for n, u in results.items() if (u["failure"] or "").startswith("not ready after")]
    assert not hung, f"hang guard (not a speed target): still processing after the guard: {hung}"
    listed = {
        i["id"]: i
        for i in _json(product.cli("ls", "--json", "--limit", "100", config=config))["items"]
    }
    for name, want in expected.items():
        got = results[name]
        if want.reason == "empty_file":  # refused by the API: no item is ever created
            assert got["item_id"] is None and "422" in got["failure"], got
            continue
        assert got["status"] == want.status, (name, got)
        item = listed[got["item_id"]]
        if want.status == "failed":
            assert got["failure"].startswith(f"thumbnail: {want.reason}"), (name, got)
        else:
            assert [w["code"] for w in item["warnings"]] == list(want.warnings), (name, item)
            if want.size:
                assert (item["width"], item["height"]) == want.size, (name, item)

    reports = _reports(product, since)
    _assert_no_crash_loop(reports)
    # Each stage ran on exactly the items that reached it (every created item made thumbnails,
    # the ready ones were analyzed and embedded), within the attempts its retry policy allows,
    # and none of those attempts failed.
    created = {r["item_id"] for r in results.values() if r["item_id"] is not None}
    ready = {r["item_id"] for r in results.values() if r["status"] == "ready"}
    attempted = _attempts_per_item(reports)
    for stage, items in (("thumbnail", created), ("analyze", ready), ("embed", ready)):
        assert {item for name, item in attempted if name == stage} == items, stage
    for report in reports:
        assert report["memory_size_mb"] == function(report["function"]).memory_mb
        assert 0 < report["max_memory_used_mb"] < report["memory_size_mb"], report
        assert report["error_type"] is None, report
    peaks = {
        fn: max(r["max_memory_used_mb"] for r in reports if r["function"] == fn)
        for fn in {r["function"] for r in reports}
    }
    print("peak memory per function (MB):", peaks)


def test_a_worker_killed_during_analysis_costs_no_second_call(tmp_path: Path) -> None:
    """kill -9 of the process running the model call: the event is delivered again, waits for
    the dead attempt's idempotency record to expire, and the item ends ready with one analysis
    and one answered (paid) call."""
    with FakeModelServer() as claude:
        claude.script("/v1/messages", [("sleep", 8)])  # the first call hangs: kill it there
        try:
            spawned = spawn_dev(
                tmp_path / "data",
                tmp_path / "dev.log",
                workers=1,
                attempt_timeout_s=5,
                timeout_s=START_TIMEOUT_S,
                extra_env={
                    "ANTHROPIC_API_KEY": "sk-ant-local-test",
                    "COLLECTIONS_ANTHROPIC_BASE_URL": claude.url,
                },
            )
        except RuntimeError as error:
            pytest.fail(str(error))
        product = LocalProduct(spawned.process, spawned.data_dir, spawned.log, spawned)
        try:
            config = tmp_path / "demo"
            assert product.cli("login", config=config).returncode == 0
            photo = tmp_path / "photo.jpg"
            photo.write_bytes(
                dataset("screenshots")
                .joinpath(sorted(p.name for p in dataset("screenshots").glob("*.jpg"))[20])
                .read_bytes()
            )
            item_id = _json(product.cli("upload", str(photo), "--json", config=config))[0][
                "item_id"
            ]
            deadline = time.monotonic() + 120
            while claude.count("/v1/messages") == 0:
                assert time.monotonic() < deadline, "the analysis never called the model"
                time.sleep(0.2)
            (analyzing,) = [
                p
                for p in _descendants(product.process)
                if "runtime.local.sandbox" in " ".join(p.cmdline()) and "analyze" in p.cmdline()
            ]
            analyzing.kill()  # SIGKILL, mid-call

            deadline = time.monotonic() + 180
            while (item := _json(product.cli("show", item_id, "--json", config=config)))[
                "status"
            ] not in ("ready", "failed"):
                assert time.monotonic() < deadline, item
                time.sleep(1)
            assert item["status"] == "ready", item
            assert item["analysis"]["version"] == 1 and item["analysis"]["provider"] == "anthropic"
            assert claude.count("/v1/messages") == 2  # the killed request, then one more
            assert claude.answered("/v1/messages") == 1  # one answered: one paid call
            assert claude.problems == []
            assert "Runtime.ExitError" in product.log.read_text()
        finally:
            _stop(product)
