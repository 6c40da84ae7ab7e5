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
        ["uv", "export", "--frozen", "--no-dev", "--no-default-groups", "--no-hashes",
         "--no-emit-project"],
        cwd=ROOT, capture_output=True, text=True, check=True,
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
        *pip_command(), "install", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", f"manylinux_2_28_{arch}", "--platform", f"manylinux2014_{arch}",
        "--platform", f"manylinux_2_17_{arch}",
        "--python-version", python_version, "--implementation", "cp",
        "--target", str(target), "-r", str(requirements),
    ]
    subprocess.run(command, check=True)
    return " ".join(command[len(pip_command()):])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def sizes_by_package(target: Path) -> dict[str, int]:
    """Bytes on disk per distribution, from each .dist-info RECORD (files not listed: 'other')."""
    owner: dict[Path, str] = {}
    for info in target.glob("*.dist-info"):
        name = _normal(info.name.rsplit("-", 1)[0])
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
    "botocore": "the largest by far: service models for every AWS service (JSON). The Lambda "
    "Python runtime already ships boto3/botocore, so the image could rely on it, or strip "
    "data/ to the five services used (s3, events, ssm, dynamodb, cognito-idp not needed)",
    "pillow_heif": "libheif + codecs; needed for HEIC uploads from iPhones",
    "pillow": "image codecs (libjpeg-turbo, libwebp, …); needed",
    "sqlalchemy": "ORM; needed by the API",
    "pydantic_core": "compiled validator; needed",
}


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
    total = sum(sizes.values())
    total_mb = total / MB
    rows = [
        [name, f"{size / MB:.1f}", f"{100 * size / total:.0f}%", TRIM_NOTES.get(name, "")]
        for name, size in sizes.items()
        if size >= 0.5 * MB
    ]
    small = [size for size in sizes.values() if size < 0.5 * MB]
    rows.append([f"{len(small)} smaller packages", f"{sum(small) / MB:.1f}",
                 f"{100 * sum(small) / total:.0f}%", ""])
    met = total_mb <= TARGET_MB
    summary = table(
        ["image", "installed dependencies (MB)", "target", "result"],
        [[f"Collections, all functions (one image), {args.arch} py{args.python_version}",
          f"{total_mb:.1f}", f"<= {TARGET_MB:.0f} MB", verdict(met)]]
        + [[f"predecessor {name} (reported)", f"~{size:.0f}", "", ""]
           for name, size in PREDECESSOR_MB.items()],
    )
    markdown = (
        f"### Image payload ({args.arch}, CPython {args.python_version}, wheels only)\n\n{summary}\n"
        f"Ratio vs the predecessor: {PREDECESSOR_MB['API image'] / total_mb:.1f}x smaller than "
        f"its API image, {PREDECESSOR_MB['embedder image'] / total_mb:.1f}x smaller than its "
        "embedder image (these are installed dependencies; the Lambda base image's own Python "
        "is not counted for either).\n\nBy package:\n\n"
        + table(["package", "MB", "share", "note"], rows)
    )
    write_results(args.out, "image_payload", {
        "platform": f"manylinux_2_28_{args.arch}", "python_version": args.python_version,
        "pip_command": command, "requirements": pins,
        "total_mb": round(total_mb, 2), "target_mb": TARGET_MB, "meets_target": met,
        "predecessor_mb": PREDECESSOR_MB,
        "by_package_mb": {k: round(v / MB, 2) for k, v in sizes.items()},
    }, markdown)


if __name__ == "__main__":
    main()
