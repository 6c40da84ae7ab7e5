"""Installed size of each runtime image's dependencies for the Lambda platform, by package.

Each image (``runtime.topology``: ``Function.image``) installs ``[project.dependencies]`` plus
its own dependency group, exported from the lock file as images/Dockerfile does (``uv export
--frozen --no-dev --no-default-groups --group <image>``, minus the Dockerfile's
``--no-emit-package`` names), installed with pip for Linux/aarch64 (Graviton), CPython 3.12 (the
image's base), wheels only, ``--no-deps``, then trimmed as the Dockerfile trims (botocore's
models of the services not kept, numpy's tests): what is built, measured.

    uv run python -m benchmarks.image_payload [--arch aarch64] [--python-version 3.12]

Every image's packages are installed once into one scratch folder (a package's files do not
depend on its neighbours) and summed per image; the same set before the trims, and the one image
the functions ran before (every group in one image), are reported next to it.

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
from runtime.topology import FUNCTIONS, function, images

TARGET_MB = 150.0  # the API's image
PIPELINE_TARGET_MB = 100.0  # each pipeline function's
DOCKERFILE = ROOT / "images" / "Dockerfile"
LIMITS = """**What limits it.** The `voyageai` SDK imports numpy, Pillow, aiohttp, huggingface-hub
and langchain-core at `import voyageai` (each is needed for the import to succeed), {voyage_mb:.0f}
MB that only it uses, for what is one HTTPS POST: the API, embed and assistant images carry it
as long as the official SDK is kept. The thumbnail image carries two image stacks (libvips for
speed, Pillow + libheif for HEIC and the encoders). The shared set is mostly SQLAlchemy and
psycopg's bundled libpq, which every function that touches the database needs.

**What was tried, with its figure.** (1) Dropping what voyageai declares but never imports
({dropped}): the one image went from 338 to 301 MB (earlier run). (2) Per-function images
instead of one: the rows above (each image's own group on the shared set). (3) Trimming
botocore's models to the services the runtime calls ({kept}) and numpy's test suites: the
"before the trims" column is the same set untrimmed; the one image for every function would be
{one_before:.0f} MB untrimmed, {one:.0f} MB trimmed, so it misses every target either way.
(4) Older voyageai releases (read from their wheels): 0.3.x-0.5.0 all import numpy and Pillow
at `import voyageai`; 0.2.4 imports numpy but not Pillow, huggingface-hub or langchain-core, but
its `Client.embed` has no `output_dimension`, which the embedder sets: not adopted. Not tried:
relying on the Lambda base image's own boto3/botocore (about 25 MB less per image, at the cost
of an SDK version the lock file does not pin), shipping bytecode without sources.
"""
PREDECESSOR_MB = {"API image": 300.0, "embedder image": 250.0}
MB = 1_000_000


def dropped_packages() -> list[str]:
    """The Dockerfile's ``--no-emit-package`` names."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return re.findall(r"--no-emit-package\s+(\S+)", "\n".join(lines))


def export_requirements(image: str) -> list[str]:
    """The pins the Dockerfile's ``uv export`` writes for build argument IMAGE=``image``."""
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-default-groups",
            "--group",
            image,
            "--no-hashes",
            "--no-emit-project",
            *(f"--no-emit-package={name}" for name in dropped_packages()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in exported.splitlines() if line and not line.startswith(("#", " "))]


def pin_name(pin: str) -> str:
    return _normal(re.split(r"[=\[;]", pin)[0])


def botocore_services_kept() -> set[str]:
    """The botocore service models the Dockerfile keeps (its ``! -name`` list)."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.startswith("#")]
    return set(re.findall(r"! -name (\S+)", "\n".join(lines)))


def trim(site_packages: Path) -> None:
    """The Dockerfile's trims: botocore's models of other services, numpy's test suites."""
    data = site_packages / "botocore" / "data"
    kept = botocore_services_kept()
    if data.is_dir():
        for service in data.iterdir():
            if service.is_dir() and service.name not in kept:
                shutil.rmtree(service)
    for tests in list(site_packages.glob("numpy/**/tests")):
        shutil.rmtree(tests, ignore_errors=True)


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


NOTES = {
    "numpy": "imported by `import voyageai` only (api, embed, assistant); tests trimmed",
    "botocore": "trimmed to the models of the services the runtime calls (about 22 MB less)",
    "zstandard": "pulled in transitively (langsmith/langchain-core via voyageai); not used",
    "tokenizers": "voyageai's local token counting; not used by the runtime",
    "hf_xet": "huggingface-hub's transfer backend, via voyageai -> tokenizers; not used",
    "huggingface_hub": "via voyageai -> tokenizers; not used",
    "langchain_core": "via voyageai; not used",
    "langsmith": "via voyageai -> langchain-core; not used",
    "aiohttp": "voyageai's async client; not used",
    "anthropic": "the Claude SDK: needed by analyze only",
    "pillow_heif": "libheif + HEVC decoder; needed for iPhone HEIC uploads (thumbnail only)",
    "pillow": "thumbnail's codecs; also imported by `import voyageai` (api, embed, assistant)",
    "sqlalchemy": "every function (ORM; Alembic for migrate and the API's health check)",
    "cryptography": "PyJWT's RS256 verification (API) - needed",
    "psycopg_binary": "libpq + OpenSSL bundled; needed",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="aarch64", choices=["aarch64", "x86_64"])
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    wanted = {image: export_requirements(image) for image in images()}
    union = sorted(set().union(*wanted.values()))
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("\n".join(union) + "\n")
        target = Path(scratch) / "site-packages"
        command = install(requirements, target, args.arch, args.python_version)
        untrimmed = sizes_by_package(target)
        bytecode = bytecode_bytes(target)
        trim(target)
        sizes = sizes_by_package(target)
    core = {pin_name(p) for p in export_requirements("core")}
    per_image: dict[str, dict] = {}
    for image, pins in wanted.items():
        members = {pin_name(p) for p in pins}
        functions = [fn.name for fn in FUNCTIONS if fn.image == image]
        target_mb = TARGET_MB if "api" in functions else PIPELINE_TARGET_MB
        mb = sum(sizes.get(m, 0) for m in members) / MB
        own = sorted(members - core, key=lambda m: -sizes.get(m, 0))
        per_image[image] = {
            "functions": functions,
            "mb": round(mb, 1),
            "mb_before_trims": round(sum(untrimmed.get(m, 0) for m in members) / MB, 1),
            "target_mb": target_mb,
            "meets_target": mb <= target_mb,
            "packages": sorted(members),
            "largest_own": [(m, round(sizes.get(m, 0) / MB, 1)) for m in own[:5]],
        }
    per_function = {
        fn.name: {"image": fn.image, **{k: per_image[fn.image][k] for k in ("mb", "target_mb")}}
        | {"meets_target": per_image[fn.image]["meets_target"]}
        for fn in FUNCTIONS
    }
    core_mb = sum(sizes.get(m, 0) for m in core) / MB
    one_mb = sum(sizes.values()) / MB
    one_before_mb = sum(untrimmed.values()) / MB
    rows = [
        [name, f"{size / MB:.1f}", f"{100 * size / sum(sizes.values()):.0f}%", NOTES.get(name, "")]
        for name, size in sizes.items()
        if size >= 0.5 * MB
    ]
    small = [size for size in sizes.values() if size < 0.5 * MB]
    rows.append([f"{len(small)} smaller packages", f"{sum(small) / MB:.1f}", "", ""])
    image_rows = [
        [
            image,
            ", ".join(f["functions"]),
            f"{f['mb']:.1f}",
            f"{f['mb_before_trims']:.1f}",
            f"<= {f['target_mb']:.0f} MB",
            verdict(f["meets_target"]),
            ", ".join(f"{m} {mb:.0f}" for m, mb in f["largest_own"] if mb >= 0.5),
        ]
        for image, f in per_image.items()
    ]
    image_rows.append(
        [
            "(one image for every function, as before)",
            "all",
            f"{one_mb:.1f}",
            f"{one_before_mb:.1f}",
            f"<= {TARGET_MB:.0f} MB",
            verdict(one_mb <= TARGET_MB),
            "",
        ]
    )
    image_rows += [
        [f"predecessor {name} (reported)", "", f"~{size:.0f}", "", "", "", ""]
        for name, size in PREDECESSOR_MB.items()
    ]
    # What the embed image adds to the shared set: voyageai and what it imports.
    only_voyage = {pin_name(p) for p in wanted[function("embed").image]} - core
    voyage_mb = sum(size for name, size in sizes.items() if name in only_voyage) / MB
    api_mb = per_image[function("api").image]["mb"]
    embed_mb = per_image[function("embed").image]["mb"]
    markdown = (
        f"### Image payload ({args.arch}, CPython {args.python_version}, wheels only)\n\n"
        "One image per dependency group a function names (`Function.image`), each built by the "
        "Pulumi program from images/Dockerfile and the one lock file; installed dependencies as "
        "the Dockerfile leaves them (bytecode included; the Lambda base image's own Python and "
        "boto3 are not counted).\n\n"
        + table(
            [
                "image",
                "functions",
                "installed dependencies (MB)",
                "before the trims (MB)",
                "target",
                "result",
                "largest of its own (MB)",
            ],
            image_rows,
        )
        + f"\nOurs / predecessor: the API's image {api_mb / PREDECESSOR_MB['API image']:.2f}x its "
        f"API image; the embed image {embed_mb / PREDECESSOR_MB['embedder image']:.2f}x "
        f"its embedder image. Every image holds the shared set ({core_mb:.0f} MB: SQLAlchemy, "
        "psycopg, pydantic, Powertools, boto3/botocore). Bytecode is "
        f"{bytecode / MB:.1f} MB of the untrimmed union.\n\n"
        + LIMITS.format(
            voyage_mb=voyage_mb,
            dropped=", ".join(dropped_packages()),
            kept=", ".join(sorted(botocore_services_kept())),
            one_before=one_before_mb,
            one=one_mb,
        )
        + "\nBy package (every image's, trimmed):\n\n"
        + table(["package", "MB", "share", "note"], rows)
    )
    write_results(
        args.out,
        "image_payload",
        {
            "platform": f"manylinux_2_28_{args.arch}",
            "python_version": args.python_version,
            "pip_command": command,
            "requirements": {image: pins for image, pins in wanted.items()},
            "dropped_packages": dropped_packages(),
            "botocore_services_kept": sorted(botocore_services_kept()),
            "per_image": per_image,
            "per_function": per_function,
            "core_mb": round(core_mb, 1),
            "one_image_mb": round(one_mb, 1),
            "one_image_before_trims_mb": round(one_before_mb, 1),
            "bytecode_mb": round(bytecode / MB, 2),
            "voyageai_only_packages": sorted(only_voyage),
            "voyageai_only_mb": round(voyage_mb, 2),
            "target_mb": TARGET_MB,
            "pipeline_target_mb": PIPELINE_TARGET_MB,
            "meets_targets": all(f["meets_target"] for f in per_image.values()),
            "predecessor_mb": PREDECESSOR_MB,
            "by_package_mb": {k: round(v / MB, 2) for k, v in sizes.items()},
            "by_package_before_trims_mb": {k: round(v / MB, 2) for k, v in untrimmed.items()},
        },
        markdown,
    )


if __name__ == "__main__":
    main()
