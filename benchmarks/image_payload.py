"""Installed size of the runtime dependencies for the Lambda platform, by package.

Only ``[project.dependencies]`` (what the Lambda image needs): exported from the lock file with
``uv export --frozen --no-dev --no-default-groups --no-hashes`` and installed with pip for
Linux/aarch64 (Graviton), CPython 3.12 (the image's base), wheels only, into a scratch folder.

    uv run python -m benchmarks.image_payload [--arch aarch64] [--python-version 3.12]

The export drops the packages the Dockerfile drops (its ``--no-emit-package`` flags: what the
voyageai SDK declares but never imports) and installs with ``--no-deps``, as the image does. Next
to the one image, the same install is split by function: each function's closure of the
distributions its code imports (``FUNCTION_ROOTS``, closed over each wheel's ``Requires-Dist``
for this platform), i.e. what a per-function image built from the same lock would hold.

Compared with the predecessor's reported images (~300 MB API, ~250 MB embedder).
Targets: <= 150 MB for the API's image, <= 100 MB for each pipeline function's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks._common import RESULTS, ROOT, table, verdict, write_results

TARGET_MB = 150.0  # the API's image
PIPELINE_TARGET_MB = 100.0  # each pipeline function's
DOCKERFILE = ROOT / "images" / "Dockerfile"
# The distributions each function's code imports (its image's roots); the closure comes from
# the installed wheels' metadata.
COMMON_ROOTS = (
    "aws-lambda-powertools",
    "boto3",
    "pydantic",
    "pydantic-settings",
    "sqlalchemy",
    "psycopg",
    "psycopg-binary",
    "pgvector",
)
FUNCTION_ROOTS = {
    "api": (
        "fastapi",
        "fastapi-offline",
        "mangum",
        "pyjwt",
        "cryptography",
        "python-multipart",
        "voyageai",
    ),
    "thumbnail": ("pillow", "pillow-heif", "pyvips", "pyvips-binary"),
    "analyze": ("anthropic",),
    "embed": ("voyageai",),
    "cleanup": (),
    "migrate": ("alembic",),
    "assistant": ("anthropic", "voyageai"),  # Claude's tool loop; searches embed the question
}
PREDECESSOR_MB = {"API image": 300.0, "embedder image": 250.0}
MB = 1_000_000


def dropped_packages() -> list[str]:
    """The Dockerfile's ``--no-emit-package`` names."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return re.findall(r"--no-emit-package\s+(\S+)", "\n".join(lines))


def export_requirements(path: Path) -> list[str]:
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-default-groups",
            "--no-hashes",
            "--no-emit-project",
            *(f"--no-emit-package={name}" for name in dropped_packages()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in exported.splitlines() if line and not line.startswith(("#", " "))]
    path.write_text("\n".join(lines) + "\n")
    return lines


def pip_command() -> list[str]:
    """pip for the install (the project venv has none: uv manages it)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    if shutil.which("pip3"):
        return ["pip3"]
    raise SystemExit("pip is needed for the platform install (pip3 on PATH or in this venv)")


def source_only() -> list[str]:
    """The Dockerfile's ``--no-binary`` names (published as sdists only, pure Python)."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return re.findall(r"--no-binary=(\S+)", "\n".join(lines))


def install(requirements: Path, target: Path, arch: str, python_version: str) -> str:
    pins = requirements.read_text().splitlines()
    sources = {_normal(n) for n in source_only()}
    from_source = [p for p in pins if _normal(re.split(r"[=\[;]", p)[0]) in sources]
    requirements.write_text("\n".join(p for p in pins if p not in from_source) + "\n")
    if from_source:  # pure Python: the same files on every platform
        subprocess.run(
            [
                *pip_command(),
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                *from_source,
            ],
            check=True,
        )
    command = [
        *pip_command(),
        "install",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        f"manylinux_2_28_{arch}",
        "--platform",
        f"manylinux2014_{arch}",
        "--platform",
        f"manylinux_2_17_{arch}",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]
    subprocess.run(command, check=True)
    return " ".join(command[len(pip_command()) :])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def bytecode_bytes(target: Path) -> int:
    return sum(f.stat().st_size for f in target.rglob("*.pyc"))


def sizes_by_package(target: Path) -> dict[str, int]:
    """Bytes on disk per distribution, from each .dist-info RECORD (files not listed: 'other')."""
    owner: dict[Path, str] = {}
    for info in target.glob("*.dist-info"):
        name = _normal(info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        record = info / "RECORD"
        if record.exists():
            for line in record.read_text().splitlines():
                rel = line.split(",", 1)[0]
                if rel:
                    owner[(target / rel).resolve()] = name
    totals: dict[str, int] = defaultdict(int)
    for file in target.rglob("*"):
        if file.is_file() and not file.is_symlink():
            totals[owner.get(file.resolve(), "(other: bytecode, scripts)")] += file.stat().st_size
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


TRIM_NOTES = {
    "numpy": "pulled in by voyageai only; the runtime's own code needs no numpy on "
    "Lambda - calling Voyage's HTTP API directly (one POST) would drop it",
    "botocore": "service models for every AWS service; the Lambda Python runtime already ships "
    "boto3/botocore (or strip data/ to the services used: s3, events, ssm, dynamodb)",
    "zstandard": "pulled in transitively (langsmith/langchain-core via voyageai); not used",
    "tokenizers": "voyageai's local token counting; not used by the runtime",
    "hf_xet": "huggingface-hub's transfer backend, via voyageai -> tokenizers; not used",
    "huggingface_hub": "via voyageai -> tokenizers; not used",
    "langchain_core": "via voyageai; not used",
    "langsmith": "via voyageai -> langchain-core; not used",
    "aiohttp": "voyageai's async client; not used",
    "anthropic": "the Claude SDK: needed by analyze only",
    "pillow_heif": "libheif + HEVC decoder; needed for iPhone HEIC uploads (thumbnail only)",
    "pillow": "image codecs; needed by thumbnail only",
    "sqlalchemy": "needed (ORM + Alembic); ships its C extensions and tests-free source",
    "cryptography": "PyJWT's RS256 verification (API) - needed",
    "psycopg_binary": "libpq + OpenSSL bundled; needed",
}


def requirements_of(target: Path, python_version: str, arch: str) -> dict[str, set[str]]:
    """Each installed distribution's requirements (markers evaluated for the platform)."""
    from email.parser import Parser

    from packaging.requirements import Requirement

    env = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": arch,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "extra": "",
    }
    graph: dict[str, set[str]] = {}
    for info in target.glob("*.dist-info"):
        meta = Parser().parsestr((info / "METADATA").read_text(errors="replace"))
        name = _normal(meta["Name"])
        needs = set()
        for line in meta.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(env):
                needs.add(_normal(requirement.name))
        graph[name] = needs
    return graph


def closure(roots: tuple[str, ...], graph: dict[str, set[str]]) -> set[str]:
    """``roots`` and everything they require that is installed (dropped packages stay out)."""
    todo, seen = [_normal(r) for r in roots], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        todo.extend(graph[name])
    return seen


def voyage_only() -> set[str]:
    """Packages in the runtime set only because of voyageai (from `uv tree --invert`)."""
    keep = subprocess.run(
        ["uv", "tree", "--frozen", "--no-dev", "--no-default-groups", "--prune", "voyageai"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    full = subprocess.run(
        ["uv", "tree", "--frozen", "--no-dev", "--no-default-groups", "--package", "voyageai"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    names = re.compile(r"([A-Za-z0-9_.-]+) v\d")
    return {_normal(n) for n in names.findall(full)} - {_normal(n) for n in names.findall(keep)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="aarch64", choices=["aarch64", "x86_64"])
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        pins = export_requirements(requirements)
        target = Path(scratch) / "site-packages"
        command = install(requirements, target, args.arch, args.python_version)
        sizes = sizes_by_package(target)
        bytecode = bytecode_bytes(target)
        graph = requirements_of(target, args.python_version, args.arch)
    total = sum(sizes.values())
    per_function = {}
    for name, roots in FUNCTION_ROOTS.items():
        members = closure(COMMON_ROOTS + roots, graph)
        target_mb = TARGET_MB if name == "api" else PIPELINE_TARGET_MB
        mb = sum(sizes.get(m, 0) for m in members) / MB
        largest = sorted(members - closure(COMMON_ROOTS, graph), key=lambda m: -sizes.get(m, 0))
        per_function[name] = {
            "mb": round(mb, 1),
            "target_mb": target_mb,
            "meets_target": mb <= target_mb,
            "packages": sorted(members),
            "largest_own": [(m, round(sizes.get(m, 0) / MB, 1)) for m in largest[:4]],
        }
    common_mb = sum(sizes.get(m, 0) for m in closure(COMMON_ROOTS, graph)) / MB
    total_mb = total / MB
    rows = [
        [name, f"{size / MB:.1f}", f"{100 * size / total:.0f}%", TRIM_NOTES.get(name, "")]
        for name, size in sizes.items()
        if size >= 0.5 * MB
    ]
    small = [size for size in sizes.values() if size < 0.5 * MB]
    rows.append(
        [
            f"{len(small)} smaller packages",
            f"{sum(small) / MB:.1f}",
            f"{100 * sum(small) / total:.0f}%",
            "",
        ]
    )
    met = total_mb <= TARGET_MB
    function_rows = [
        [
            f"per-function image: {name}",
            f"{f['mb']:.1f}",
            f"<= {f['target_mb']:.0f} MB",
            verdict(f["meets_target"]),
            ", ".join(f"{m} {mb:.0f}" for m, mb in f["largest_own"] if mb >= 0.5),
        ]
        for name, f in per_function.items()
    ]
    only_voyage = voyage_only()
    voyage_mb = sum(size for name, size in sizes.items() if name in only_voyage) / MB
    summary = table(
        ["image", "installed dependencies (MB)", "target", "result", "largest of its own (MB)"],
        [
            [
                f"one image for every function (built), {args.arch} py{args.python_version}",
                f"{total_mb:.1f}",
                f"<= {TARGET_MB:.0f} MB",
                verdict(met),
                "",
            ]
        ]
        + function_rows
        + [
            [f"predecessor {name} (reported)", f"~{size:.0f}", "", "", ""]
            for name, size in PREDECESSOR_MB.items()
        ],
    )
    markdown = (
        f"### Image payload ({args.arch}, CPython {args.python_version}, wheels only)\n\n"
        f"{summary}\n"
        f"Ours / predecessor: {total_mb / PREDECESSOR_MB['API image']:.2f}x its API image, "
        f"{total_mb / PREDECESSOR_MB['embedder image']:.2f}x its embedder image (installed "
        "dependencies as the Dockerfile's `pip install --target` leaves them, bytecode "
        f"included: {bytecode / MB:.1f} MB of it; the Lambda base image's own Python is not "
        "counted for either).\n\n"
        f"Every function needs the shared core ({common_mb:.0f} MB: SQLAlchemy, psycopg, "
        "pydantic, Powertools, boto3/botocore). Dropped from the image (declared by voyageai, "
        f"never imported for embeddings): {', '.join(dropped_packages())}.\n\n"
        "**What limits it.** The `voyageai` SDK imports numpy, Pillow, aiohttp, "
        "huggingface-hub and langchain-core at `import voyageai` (measured: each is needed for "
        f"the import to succeed), {voyage_mb:.0f} MB that nothing else uses, for what is one "
        "HTTPS POST; the API and embed functions carry it as long as the official SDK is kept. "
        "The thumbnail function carries two image stacks (libvips for speed, Pillow + libheif "
        "for HEIC and the encoders). Tried: trimming voyageai's unused dependencies (above; "
        "about 55 MB); per-function sets (the rows above, measured, not built: the Pulumi program "
        "builds the one image). Not tried: relying on the Lambda base image's boto3/botocore "
        "(about -25 MB, at the cost of an SDK version the lock file does not pin), stripping "
        "botocore's data for unused services.\n\n"
        "By package:\n\n" + table(["package", "MB", "share", "note"], rows)
    )
    write_results(
        args.out,
        "image_payload",
        {
            "platform": f"manylinux_2_28_{args.arch}",
            "python_version": args.python_version,
            "pip_command": command,
            "requirements": pins,
            "dropped_packages": dropped_packages(),
            "per_function": per_function,
            "common_mb": round(common_mb, 1),
            "total_mb": round(total_mb, 2),
            "bytecode_mb": round(bytecode / MB, 2),
            "voyageai_only_packages": sorted(only_voyage),
            "voyageai_only_mb": round(voyage_mb, 2),
            "target_mb": TARGET_MB,
            "meets_target": met,
            "predecessor_mb": PREDECESSOR_MB,
            "by_package_mb": {k: round(v / MB, 2) for k, v in sizes.items()},
        },
        markdown,
    )


if __name__ == "__main__":
    main()
