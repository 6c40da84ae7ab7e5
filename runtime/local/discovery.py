"""How the CLI finds the local product from any working directory, whatever ``--data-dir``
``collections dev`` was given.

A running ``collections dev`` records its data directory (an absolute path) in the CLI's
configuration directory and removes the record when it stops. The CLI looks, in order, at
``COLLECTIONS_LOCAL_DIR``, at that record, and at ``./.local``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

DEFAULT_DATA_DIR_NAME = ".local"


def config_dir() -> Path:
    base = os.environ.get("COLLECTIONS_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME", os.path.expanduser("~/.config")), "collections"
    )
    return Path(base)


def _record() -> Path:
    return config_dir() / "local-dev.json"


def default_data_dir() -> Path:
    return Path(os.environ.get("COLLECTIONS_LOCAL_DIR") or DEFAULT_DATA_DIR_NAME)


def remember_data_dir(data_dir: Path) -> None:
    record = _record()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"data_dir": str(data_dir.resolve()), "pid": os.getpid()}))


def forget_data_dir(data_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(_record().read_text())["data_dir"] == str(data_dir.resolve()):
            _record().unlink()


def find_data_dir() -> Path:
    """The local product's data directory (it may not exist: nothing was started yet)."""
    explicit = os.environ.get("COLLECTIONS_LOCAL_DIR")
    if explicit:
        return Path(explicit).resolve()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = Path(json.loads(_record().read_text())["data_dir"])
        if (recorded / "dev.json").exists():
            return recorded
    return Path(DEFAULT_DATA_DIR_NAME).resolve()
