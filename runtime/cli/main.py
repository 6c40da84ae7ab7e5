"""``collections``: the project's command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="collections", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run the whole product locally (not yet available)")
    args = parser.parse_args(argv)
    if args.command == "dev":
        print(
            "collections dev: not yet. Local mode (API on http://127.0.0.1:8000, workers, "
            "embedded PostgreSQL and the AWS emulator) lands with its own issue.",
            file=sys.stderr,
        )
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
