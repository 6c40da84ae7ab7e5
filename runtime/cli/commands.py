"""The CLI's subcommands, over the HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime.cli import auth
from runtime.cli.api import Api, ApiError
from runtime.cli.profiles import (
    LOCAL,
    Profile,
    forget_tokens,
    load_profile,
    profile_from_stack,
    save_profile,
)
from runtime.local.cognito import DemoUser
from runtime.local.discovery import find_data_dir

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
PAGE_SIZE = 100
POLL_SECONDS = 2.0
ASK_POLL_SECONDS = 1.0
# Transient API errors (unreachable, 429, 5xx) are retried with exponential backoff.
RETRY_FIRST_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 30.0
UPLOAD_ATTEMPTS = 5


def login(
    profile_name: str,
    username: str | None,
    password: str | None,
    ask: Callable[[str], str],
    as_json: bool,
) -> int:
    profile = load_profile(profile_name)
    if username is None and profile_name == LOCAL:
        demo = DemoUser(**json.loads((find_data_dir() / "demo-user.json").read_text()))
        username, password = demo.username, password or demo.password
    if username is None:
        raise auth.AuthError("give --username")
    tokens = auth.login(profile, username, password or ask(f"password for {username}: "))
    _emit(
        {"profile": profile.name, "username": tokens.username},
        as_json,
        f"signed in as {tokens.username} ({profile.name}: {profile.api_url})",
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "profile":
        return _profile(args)
    if args.command == "logout":
        forget_tokens(args.profile)
        _emit({"profile": args.profile}, args.json, "signed out")
        return 0
    api = Api(load_profile(args.profile))
    handler = {
        "upload": _upload,
        "ls": _ls,
        "show": _show,
        "search": _search,
        "rm": _rm,
        "open": _open,
        "ask": _ask,
        "reanalyze": _reanalyze,
    }[args.command]
    return handler(api, args)


def _profile(args: argparse.Namespace) -> int:
    if args.profile_command == "set":
        profile = Profile(
            args.name, args.api_url.rstrip("/"), args.region, args.user_pool_id, args.app_client_id
        )
    else:
        profile = profile_from_stack(args.name, args.stack or args.name)
    save_profile(profile)
    _emit(vars(profile), args.json, f"profile {profile.name}: {profile.api_url}")
    return 0


@dataclass
class Upload:
    path: Path
    item_id: str | None = None
    status: str = "pending"
    failure: str | None = None


def image_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """The images among ``paths`` (folders searched recursively) and the files skipped."""
    images, skipped = [], []
    for path in paths:
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            if not candidate.exists():
                raise ApiError(400, f"no such file: {candidate}")
            if candidate.suffix.lower() in CONTENT_TYPES:
                images.append(candidate)
            elif not path.is_dir():
                skipped.append(candidate)
    return images, skipped


def _upload(api: Api, args: argparse.Namespace) -> int:
    files, skipped = image_files(args.paths)
    for path in skipped:
        print(f"skipped {path}: not a supported image type", file=sys.stderr)
    uploads = [Upload(path) for path in files]
    progress = Progress("uploading", len(uploads), quiet=args.json)

    def send(upload: Upload) -> Upload:
        content_type = CONTENT_TYPES[upload.path.suffix.lower()]
        digest = _sha256(upload.path)
        try:
            created = _retrying(
                lambda: api.create_upload(upload.path, content_type, digest),
                attempts=UPLOAD_ATTEMPTS,
            )
            upload.item_id = created["item"]["id"]
            _retrying(
                lambda: api.send_upload(created["upload"], upload.path), attempts=UPLOAD_ATTEMPTS
            )
            upload.status = "uploaded"
        except ApiError as error:
            if error.status == 409 and error.code == "duplicate_item":
                upload.status, upload.item_id = "duplicate", error.item_id
            else:
                upload.status, upload.failure = "failed", str(error)
        return upload

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for _ in as_completed([pool.submit(send, u) for u in uploads]):
            progress.advance()
    progress.done()
    if args.wait:
        _wait(api, [u for u in uploads if u.status == "uploaded"], args.timeout, quiet=args.json)

    failed = [u for u in uploads if u.status == "failed"]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "file": str(u.path),
                        "item_id": u.item_id,
                        "status": u.status,
                        "failure": u.failure,
                    }
                    for u in uploads
                ],
                indent=2,
            )
        )
    else:
        _print_summary(uploads)
    return 1 if failed else 0


def _print_summary(uploads: list[Upload]) -> None:
    """One line per file, then the totals."""
    for upload in uploads:
        if upload.status == "failed":
            print(f"failed     {upload.path}: {upload.failure}", file=sys.stderr)
        elif upload.status == "duplicate":
            print(f"duplicate  {upload.path}: already in your collection (item {upload.item_id})")
        else:
            print(f"{upload.status:<10} {upload.path} (item {upload.item_id})")
    states = ("uploaded", "ready", "duplicate", "failed")
    counts = {state: sum(u.status == state for u in uploads) for state in states}
    print(", ".join(f"{n} {state}" for state, n in counts.items() if n) or "nothing uploaded")


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _retrying(call: Callable[[], Any], *, attempts: int) -> Any:
    """``call()``, retried with backoff while the API fails transiently."""
    delay = RETRY_FIRST_DELAY_S
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ApiError as error:
            if not error.transient or attempt == attempts:
                raise
            print(f"{error}; retrying in {delay:.0f} s", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY_S)
    raise AssertionError("unreachable")  # pragma: no cover


def _wait(api: Api, uploads: list[Upload], timeout_s: float, *, quiet: bool) -> None:
    pending = {u.item_id: u for u in uploads}
    progress = Progress("processing", len(pending), quiet=quiet)
    deadline = time.monotonic() + timeout_s
    outage = _Outage()
    while pending and time.monotonic() < deadline:
        cursor = None
        while pending:
            try:
                page = api.items(limit=PAGE_SIZE, cursor=cursor)
            except ApiError as error:
                if not error.transient:
                    raise
                time.sleep(min(outage.failed(error), max(0.0, deadline - time.monotonic())))
                break  # start the listing again
            outage.over()
            for item in page["items"]:
                upload = pending.get(item["id"])
                if upload and item["status"] in ("ready", "failed"):
                    upload.status = item["status"]
                    if item.get("failure"):
                        failure = item["failure"]
                        upload.failure = f"{failure['stage']}: {failure['reason']}"
                    del pending[item["id"]]
                    progress.advance()
            cursor = page.get("next_cursor")
            if not cursor:
                break
        if pending and not outage.delay:  # (during an outage the backoff was the pause)
            time.sleep(POLL_SECONDS)
    progress.done()
    for upload in pending.values():
        why = f"; the API was unreachable: {outage.last}" if outage.last else ""
        upload.status, upload.failure = "failed", f"not ready after {timeout_s:.0f} s{why}"


class _Outage:
    """Backoff while the API fails transiently, with one message when it starts and ends."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.last: str | None = None

    def failed(self, error: ApiError) -> float:
        if self.delay == 0:
            print(f"the API is not answering ({error}); still waiting…", file=sys.stderr)
        self.delay = min(max(self.delay * 2, RETRY_FIRST_DELAY_S), RETRY_MAX_DELAY_S)
        self.last = str(error)
        return self.delay

    def over(self) -> None:
        if self.delay:
            print("the API answers again", file=sys.stderr)
        self.delay, self.last = 0.0, None


def _ls(api: Api, args: argparse.Namespace) -> int:
    limit = max(1, min(args.limit, PAGE_SIZE))
    filters = {"status": args.status, "category": args.category}
    page = api.items(limit=limit, cursor=args.cursor, **filters)
    items = list(page["items"])
    while args.all and page.get("next_cursor"):
        page = api.items(limit=limit, cursor=page["next_cursor"], **filters)
        items.extend(page["items"])
    next_cursor = page.get("next_cursor")
    if args.json:
        print(json.dumps({"items": items, "next_cursor": next_cursor}, indent=2))
        return 0
    if not items:
        print("no items" + (" match these filters" if args.status or args.category else ""))
    for item in items:
        print(
            f"{item['id']}  {when(item['created_at'])}  {item['status']:<9}  "
            f"{item.get('category') or '-':<16}  {item.get('file_name') or '-'}"
            + (f"  {item['headline']}" if item.get("headline") else "")
        )
    if next_cursor:
        print(f"more items: `collections ls --cursor {next_cursor}` (or `--all`)", file=sys.stderr)
    return 0


def when(timestamp: str) -> str:
    """An API timestamp as local date and time, to the minute."""
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M")


def _show(api: Api, args: argparse.Namespace) -> int:
    item = api.item(args.id)
    if args.json:
        print(json.dumps(item, indent=2))
        return 0
    print(f"{item['id']}  {item['status']}  {item.get('file_name') or ''}")
    if item.get("failure"):
        print(f"failed at {item['failure']['stage']}: {item['failure']['reason']}")
    analysis = item.get("analysis")
    if analysis:
        result = analysis["result"]
        print(f"{result.get('category')}: {result.get('headline')}")
        print(result.get("summary") or "")
        print(f"(analysis v{analysis['version']} by {analysis['provider']}/{analysis['model']})")
    return 0


def _ask(api: Api, args: argparse.Namespace) -> int:
    """Ask the assistant: a new conversation (or ``--conversation``), then poll the answer."""
    conversation = args.conversation or api.create_conversation(args.question[:80])["id"]
    message = api.ask(conversation, args.question)
    deadline = time.monotonic() + args.timeout
    while message["status"] in ("pending", "answering"):
        if time.monotonic() > deadline:
            raise ApiError(0, f"no answer after {args.timeout:.0f} s (message {message['id']})")
        time.sleep(ASK_POLL_SECONDS)
        message = api.message(conversation, message["id"])
    if args.json:
        print(json.dumps(message, indent=2))
    elif message["status"] == "failed":
        failure = message["failure"]
        print(f"no answer: {failure['message']} ({failure['reason']})", file=sys.stderr)
    else:
        print(message["answer"])
        for n, citation in enumerate(message["citations"], start=1):
            where = citation.get("item_id") or citation.get("url")
            print(f"  [{n}] {citation['title']}  ({where})")
        print(f"(conversation {conversation}: ask more with --conversation {conversation})")
    return 1 if message["status"] == "failed" else 0


def _search(api: Api, args: argparse.Namespace) -> int:
    response = api.search(args.query, mode=args.mode, category=args.category, limit=args.limit)
    if args.json:
        print(json.dumps(response, indent=2))
        return 0
    if not response["results"]:
        print("nothing relevant in your collection")
    for hit in response["results"]:
        print(
            f"{hit['score']:.3f}  {hit['item_id']}  {when(hit['created_at'])}  "
            f"{hit.get('category') or '-':<14}  {hit.get('file_name') or '-'}"
            + (f"  {hit['headline']}" if hit.get("headline") else "")
        )
    return 0


def _reanalyze(api: Api, args: argparse.Namespace) -> int:
    requests = [Upload(Path(item_id), item_id=item_id) for item_id in args.ids]
    for request in requests:
        try:
            api.reanalyze(request.item_id or "")
            request.status = "reanalyzing"
        except ApiError as error:
            if error.status not in (404, 409):
                raise
            request.status, request.failure = "failed", str(error)
    if args.wait:
        _wait(
            api, [r for r in requests if r.status == "reanalyzing"], args.timeout, quiet=args.json
        )
    if args.json:
        print(
            json.dumps(
                [
                    {"item_id": r.item_id, "status": r.status, "failure": r.failure}
                    for r in requests
                ],
                indent=2,
            )
        )
    else:
        for request in requests:
            detail = f": {request.failure}" if request.failure else ""
            print(f"{request.item_id}  {request.status}{detail}")
    return 1 if any(r.status == "failed" for r in requests) else 0


def _rm(api: Api, args: argparse.Namespace) -> int:
    missing = 0
    for item_id in args.ids:
        try:
            api.delete(item_id)
        except ApiError as error:
            if error.status != 404:
                raise
            missing += 1
            print(f"no item {item_id}", file=sys.stderr)
    if not args.json:
        print(f"deleted {len(args.ids) - missing}")
    return 4 if missing else 0


def _open(api: Api, args: argparse.Namespace) -> int:
    item = api.item(args.id)
    urls = item["urls"]
    url = (
        urls["original"]
        if args.size == "original"
        else urls["thumbnails"].get(f"thumb_{args.size}")
    )
    if not url:
        raise ApiError(
            404, f"item {args.id} has no {args.size} image yet (status {item['status']})"
        )
    suffix = ".webp" if args.size != "original" else Path(item.get("file_name") or "x.jpg").suffix
    target = args.output or Path(f"{args.id}-{args.size}{suffix}")
    api.download(url, target)
    if not args.json:
        print(target)
        if os.environ.get("DISPLAY") and sys.stdout.isatty():
            subprocess.Popen(
                ["xdg-open", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    else:
        print(json.dumps({"file": str(target)}))
    return 0


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int, *, quiet: bool) -> None:
        self.label, self.total, self.count = label, total, 0
        self.quiet = quiet or total == 0

    def advance(self) -> None:
        self.count += 1
        if not self.quiet:
            filled = int(30 * self.count / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            print(f"\r{self.label:<11}[{bar}] {self.count}/{self.total}", end="", file=sys.stderr)

    def done(self) -> None:
        if not self.quiet:
            print(file=sys.stderr)


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(data) if as_json else text)
