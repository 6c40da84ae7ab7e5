"""collections: run the product locally, or use it (local or deployed) from the command line.

Exit codes: 0 success, 1 some items failed, 2 usage error, 3 not signed in / refused,
4 not found, 5 service unreachable or erroring.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from runtime.cli import commands
from runtime.cli.api import ApiError
from runtime.cli.auth import AuthError
from runtime.cli.profiles import LOCAL, ProfileError, Unreachable
from runtime.local.discovery import default_data_dir

EXIT_FAILED_ITEMS, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_SERVICE = 1, 2, 3, 4, 5


def default_api_workers() -> int:
    """The CPUs this process may run on (local mode runs that many API processes)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collections",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default=LOCAL, help="service profile (default: local)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # the same two options are accepted after the subcommand too
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", default=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    sub = _Subparsers(parser.add_subparsers(dest="command", required=True), common)

    dev = sub.add_parser("dev", help="run the whole product on this machine")
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where local mode keeps its data (default: $COLLECTIONS_LOCAL_DIR or ./.local)",
    )
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--workers", type=int, default=2, help="pipeline worker processes")
    dev.add_argument(
        "--api-workers",
        type=int,
        default=default_api_workers(),
        help="API server processes (default: the number of CPUs this process may use)",
    )
    dev.add_argument("--aws-port", type=int, default=4566)
    dev.add_argument("--postgres-port", type=int, default=54329)
    dev.add_argument(
        "--attempt-timeout",
        type=int,
        help="seconds before the event of a worker that died is delivered again, and before a "
        "dead attempt's model-call lock expires (default: the function's timeout, as on Lambda; "
        "a live attempt keeps its event and is only cut at the function's timeout)",
    )

    login = sub.add_parser("login", help="sign in (local: the demo user by default)")
    login.add_argument("--username")
    login.add_argument("--password-stdin", action="store_true")
    sub.add_parser("logout", help="forget the stored sign-in")

    profile = sub.add_parser("profile", help="configure a deployed service")
    profile_sub = _Subparsers(profile.add_subparsers(dest="profile_command", required=True), common)
    set_profile = profile_sub.add_parser("set")
    set_profile.add_argument("name")
    set_profile.add_argument("--api-url", required=True)
    set_profile.add_argument("--region", required=True)
    set_profile.add_argument("--user-pool-id", required=True)
    set_profile.add_argument("--app-client-id", required=True)
    from_stack = profile_sub.add_parser("from-stack", help="read a Pulumi stack's outputs")
    from_stack.add_argument("name")
    from_stack.add_argument("--stack")

    upload = sub.add_parser("upload", help="upload images (files or folders)")
    upload.add_argument("paths", nargs="+", type=Path)
    upload.add_argument("--wait", action="store_true", help="wait until each item is ready")
    upload.add_argument("--parallel", type=int, default=4)
    upload.add_argument("--timeout", type=float, default=1800, help="seconds to wait with --wait")

    ls = sub.add_parser("ls", help="list your items, newest first")
    ls.add_argument("--status")
    ls.add_argument("--category")
    ls.add_argument("--limit", type=int, default=50, help="items per page (at most 100)")
    pages = ls.add_mutually_exclusive_group()
    pages.add_argument("--all", action="store_true", help="every item: follow all the pages")
    pages.add_argument("--cursor", help="continue where a previous `ls` stopped")

    show = sub.add_parser("show", help="one item with its analysis")
    show.add_argument("id")

    search = sub.add_parser("search", help="search your items")
    search.add_argument("query")
    search.add_argument("--mode", choices=["keyword", "semantic", "hybrid"], default="hybrid")
    search.add_argument("--category")
    search.add_argument("--limit", type=int, default=10)

    ask = sub.add_parser("ask", help="ask the assistant about your items (answers cite them)")
    ask.add_argument("question")
    ask.add_argument("--conversation", help="continue this conversation (id)")
    ask.add_argument("--timeout", type=float, default=300, help="seconds to wait for the answer")
    reanalyze = sub.add_parser("reanalyze", help="analyze items again (a new analysis version)")
    reanalyze.add_argument("ids", nargs="+")
    reanalyze.add_argument("--wait", action="store_true", help="wait until each is ready again")
    reanalyze.add_argument("--timeout", type=float, default=600, help="seconds to wait")

    rm = sub.add_parser("rm", help="delete items")
    rm.add_argument("ids", nargs="+")

    open_item = sub.add_parser("open", help="download (and open) an item's thumbnail")
    open_item.add_argument("id")
    open_item.add_argument("--size", choices=["256", "1024", "original"], default="1024")
    open_item.add_argument("--output", type=Path)
    return parser


class _Subparsers:
    def __init__(self, action: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self._action, self._common = action, common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return self._action.add_parser(name, parents=[self._common], **kwargs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dev":
            from runtime.local.dev import DevOptions, run

            return run(
                DevOptions(
                    data_dir=args.data_dir or default_data_dir(),
                    api_port=args.port,
                    workers=args.workers,
                    api_workers=args.api_workers,
                    aws_port=args.aws_port,
                    postgres_port=args.postgres_port,
                    visibility_timeout_s=args.attempt_timeout,
                )
            )
        if args.command == "login":
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            return commands.login(args.profile, args.username, password, getpass.getpass, args.json)
        return commands.run(args)
    except ProfileError as error:
        return _fail(str(error), EXIT_USAGE)
    except AuthError as error:
        return _fail(str(error), EXIT_AUTH)
    except Unreachable as error:
        return _fail(str(error), EXIT_SERVICE)
    except ApiError as error:
        code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(error.status, EXIT_SERVICE)
        if 400 <= error.status < 500 and code == EXIT_SERVICE:
            code = EXIT_USAGE
        return _fail(str(error), code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `collections ls | head`
        # point stdout at /dev/null so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _fail(message: str, code: int) -> int:
    print(f"collections: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
