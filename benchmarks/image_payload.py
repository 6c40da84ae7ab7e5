"""Installed size of the runtime dependencies for the Lambda platform, by package.

Only ``[project.dependencies]`` (what the Lambda image needs): exported from the lock file with
``uv export --frozen --no-dev --no-default-groups --no-hashes`` and installed with pip for
Linux/aarch64 (Graviton), CPython 3.12 (the image's base), wheels only, into a scratch folder.

    uv run python -m benchmarks.image_payload [--arch aarch64] [--python-version 3.12]

Compared with the predecessor's reported images (~300 MB API, ~250 MB embedder).
Target: <= 150 MB installed in all (one image serves every function).
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

TARGET_MB = 150.0
PREDECESSOR_MB = {"API image": 300.0, "embedder image": 250.0}
MB = 1_000_000


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


def install(requirements: Path, target: Path, arch: str, python_version: str) -> str:
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
    total = sum(sizes.values())
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
    only_voyage = voyage_only()
    voyage_mb = sum(size for name, size in sizes.items() if name in only_voyage) / MB
    summary = table(
        ["image", "installed dependencies (MB)", "target", "result"],
        [
            [
                f"Collections, all functions (one image), {args.arch} py{args.python_version}",
                f"{total_mb:.1f}",
                f"<= {TARGET_MB:.0f} MB",
                verdict(met),
            ]
        ]
        + [
            [f"predecessor {name} (reported)", f"~{size:.0f}", "", ""]
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
        f"**What limits it:** the `voyageai` SDK brings {voyage_mb:.0f} MB of packages nothing "
        "else needs (numpy, tokenizers, huggingface-hub, hf-xet, langchain-core, langsmith, "
        "zstandard, aiohttp, …) for what is one HTTPS POST; replacing it with a small httpx "
        f"client would leave about {total_mb - voyage_mb:.0f} MB. Relying on the boto3/botocore "
        "the Lambda Python runtime already ships would save about another 25 MB.\n\n"
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
