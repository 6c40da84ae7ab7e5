"""Handlers for the sandbox tests: one that behaves, one that runs away with memory, one that
asks for a huge block at once, one that hangs, one that dies."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def echo(event: dict, context: Any) -> dict:
    return {"echo": event, "memory_limit_in_mb": context.memory_limit_in_mb}


def creep(event: dict, context: Any) -> dict:
    """Grows its resident memory 16 MB at a time (like a decoder on a hostile file)."""
    hoard = []
    for _ in range(int(event.get("steps", 10_000))):
        hoard.append(bytearray(16 * 1024 * 1024))  # zero-filled: every page is touched
        time.sleep(0.05)  # slower than the sampler: the bound below is about sampling
    return {"kept": len(hoard)}


def grab(event: dict, context: Any) -> dict:
    """Asks for one block far beyond any limit at once."""
    block = bytearray(int(event["gigabytes"]) * 1024**3)
    return {"size": len(block)}


def hang(event: dict, context: Any) -> dict:
    time.sleep(3600)
    return {}


def die(event: dict, context: Any) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def thumbnail_file(event: dict, context: Any) -> dict:
    """The thumbnail stage's image work on one file; the analysis derivative is kept on disk."""
    from pathlib import Path

    from runtime.domain.images import BadImage, process_image

    try:
        processed = process_image(Path(event["path"]).read_bytes())
    except BadImage as error:
        return {"status": "failed", "reason": error.reason}
    analysis = next(r for r in processed.renditions if r.name == "analysis")
    Path(event["derivative"]).write_bytes(analysis.data)
    return {
        "status": "ready",
        "size": [processed.width, processed.height],
        "warnings": [w.code for w in processed.warnings],
    }


def analyze_file(event: dict, context: Any) -> dict:
    """The offline analyzer (OCR) on one analysis derivative."""
    from pathlib import Path

    from runtime.providers.local_analyzer import LocalAnalyzer

    result = LocalAnalyzer().analyze(Path(event["path"]).read_bytes(), "image/jpeg")
    return {"headline": result.analysis.headline}
