"""The web app in a real browser (Debian's Chromium driven by Playwright) against local mode
(`collections dev` as a real process, offline providers), used the way a person would: sign in,
drop images in, watch them become ready, search, ask the assistant about them, open,
reanalyze, delete, sign out; a second user sees none of it; a broken file says why. Every main
page is checked with axe-core and saved as a screenshot (desktop and phone width) under
``test-artifacts/web/``."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from runtime.local.cognito import LocalPool, create_user
from runtime.local.spawn import SpawnedDev, spawn_dev
from tests.conftest import ROOT, dataset
from tests.corpus import bad_image_corpus

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "tests" / "web" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("COLLECTIONS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "web"
# Headless Chromium as root on a machine with no network but loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
READY_TIMEOUT_MS = 240_000
ANSWER_TIMEOUT_MS = 120_000
# A conversation takes two questions: the third is refused (409 conversation_full) for real.
MESSAGES_PER_CONVERSATION = 2
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SECOND_USER = ("second@collections.local", "Second-user-passw0rd")

# A loaded 2-CPU machine is slow (the first search loads the query embedder in the API process).
expect.set_options(timeout=30_000)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not AXE.exists(),
    reason="run scripts/bootstrap.sh: it installs Debian's chromium and the pinned axe-core",
)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedDev]:
    base = tmp_path_factory.mktemp("web")
    dev = spawn_dev(
        base / "data",
        base / "dev.log",
        workers=2,
        extra_env={
            "COLLECTIONS_ASSISTANT_MAX_MESSAGES_PER_CONVERSATION": str(MESSAGES_PER_CONVERSATION)
        },
    )
    yield dev
    dev.process.send_signal(signal.SIGINT)
    dev.process.wait(timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Session:
    """One browser context (one person) on the app, failing on any CSP violation or page error."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.url = url
        self.context: BrowserContext = browser.new_context(viewport=DESKTOP)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(message.text)

    def sign_in(self, username: str, password: str) -> None:
        page = self.page
        page.goto(self.url)
        expect(page.get_by_role("heading", name="Sign in to Collections")).to_be_visible()
        page.get_by_label("Email").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Your collection", exact=True)).to_be_visible()

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems


def accessible(page: Page, name: str) -> None:
    """axe-core finds no serious or critical violation on what the page shows now."""
    page.evaluate(AXE.read_text())  # through the driver: no inline script the CSP would refuse
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not serious, f"{name}: {json.dumps(serious, indent=2)}"


def snapshot(page: Page, name: str, *, phone: bool = True) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
    if phone:
        page.set_viewport_size(PHONE)
        page.screenshot(path=ARTIFACTS / f"{name}-phone.png", full_page=True)
        accessible(page, f"{name} (phone width)")
        page.set_viewport_size(DESKTOP)


def drop_files(page: Page, files: list[Path], target: str = "#dropzone") -> None:
    """A drag-and-drop of these files onto the page, as the browser delivers it."""
    payload = [
        {"name": f.name, "type": "image/jpeg", "data": base64.b64encode(f.read_bytes()).decode()}
        for f in files
    ]
    page.evaluate(
        """([files, target]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, {type: f.type}));
            }
            const zone = document.querySelector(target);
            for (const type of ['dragenter', 'dragover', 'drop']) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true,
                                                        dataTransfer: transfer}));
            }
        }""",
        [payload, target],
    )


def paste_file(page: Page, name: str, data: bytes, mime: str) -> None:
    """A paste of an image from the clipboard (as after copying a screenshot)."""
    page.evaluate(
        """([name, data, mime]) => {
            const transfer = new DataTransfer();
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], name, {type: mime}));
            document.dispatchEvent(new ClipboardEvent('paste', {bubbles: true, cancelable: true,
                                                                clipboardData: transfer}));
        }""",
        [name, base64.b64encode(data).decode(), mime],
    )


def demo_password(product: SpawnedDev) -> tuple[str, str]:
    demo = json.loads((product.data_dir / "demo-user.json").read_text())
    return demo["username"], demo["password"]


def second_user(product: SpawnedDev) -> tuple[str, str]:
    profile = product.profile
    idp = product.client("cognito-idp")  # the emulator takes the installation's credentials only
    create_user(idp, LocalPool(profile["user_pool_id"], profile["app_client_id"]), *SECOND_USER)
    return SECOND_USER


def upload_row(page: Page, file_name: str) -> Any:
    return page.locator("#upload-list li", has_text=file_name)


def test_a_person_uses_the_app_end_to_end(product: SpawnedDev, browser: Browser) -> None:
    me = Session(browser, product.profile["api_url"] + "/")
    try:
        journey(product, browser, me)
    except Exception:
        me.page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
        print("page problems:", me.problems, "\nURL:", me.page.url)
        raise


def journey(product: SpawnedDev, browser: Browser, me: Session) -> None:
    url = me.url
    screenshots = sorted(dataset("screenshots").glob("*.jpg"))[20:23]
    username, password = demo_password(product)
    page = me.page

    # -- sign-in page: the demo user's hint, nothing in storage ---------------------------------
    page.goto(url)
    expect(page.get_by_role("heading", name="Sign in to Collections")).to_be_visible()
    expect(page.locator("#signin-hint")).to_contain_text(username)
    expect(page.get_by_label("Email")).to_have_value(username)
    accessible(page, "sign-in")
    snapshot(page, "01-sign-in")
    page.get_by_label("Password").fill("not-the-password-1A")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    me.sign_in(username, password)
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert stored == '[{},{},""]'  # the token is in memory, the session cookie HttpOnly

    # -- empty collection --------------------------------------------------------------------
    expect(page.get_by_role("heading", name="Your collection is empty")).to_be_visible()
    accessible(page, "empty collection")
    snapshot(page, "02-empty")

    # -- upload three: two through the file picker, one dropped ---------------------------------
    page.set_input_files("#file-input", [str(p) for p in screenshots[:2]])
    drop_files(page, screenshots[2:])
    for path in screenshots:
        expect(upload_row(page, path.name)).to_be_visible()
    expect(page.locator("#upload-list progress").first).to_be_attached()
    for path in screenshots:
        expect(upload_row(page, path.name).locator(".upload-status")).to_have_text(
            "Ready — you can search for it now.", timeout=READY_TIMEOUT_MS
        )
    assert page.locator("#upload-list progress[value='100']").count() == 3
    expect(page.locator("#grid li")).to_have_count(3)
    expect(page.locator("#grid .badge")).to_have_count(0)  # all ready
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    accessible(page, "collection")
    snapshot(page, "03-collection")

    # -- open one and search for it by its headline --------------------------------------------
    wanted = screenshots[1].name
    page.locator("#upload-list a", has_text=wanted).click()
    expect(page).to_have_url(re.compile(r"/\?item=[0-9a-f-]{36}$"))
    item_url = page.url
    item_id = item_url.rsplit("=", 1)[1]
    headline = page.locator("#item-title").inner_text()
    expect(page.locator("#view-item")).to_contain_text(wanted)

    page.get_by_label("Search your collection").fill(headline)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"\?q=[^&]+&mode=hybrid$"))
    first = page.locator("#results li").first
    expect(first).to_have_attribute("data-id", item_id)
    expect(first.locator("meter")).to_have_attribute("aria-label", re.compile("Relevance: "))
    accessible(page, "search results")
    snapshot(page, "04-results")
    search_url = page.url

    # the back button walks the views; a bookmarked search opens as it was
    page.go_back()
    expect(page).to_have_url(item_url)
    expect(page.locator("#item-title")).to_have_text(headline)
    page.go_forward()
    expect(page.locator("#results li").first).to_have_attribute("data-id", item_id)
    page.goto(search_url)
    expect(page.locator("#results li").first).to_have_attribute("data-id", item_id)
    expect(page.get_by_label("Search your collection")).to_have_value(headline)

    # nothing relevant: said so
    page.get_by_label("Search your collection").fill("zebra saxophone glacier")
    page.get_by_label("Search your collection").press("Enter")
    expect(page.get_by_role("heading", name="Nothing relevant in your collection")).to_be_visible()

    conversation_url = ask_about_the_collection(me, url, headline, item_id)

    # -- the item view, opened from the results with the keyboard -----------------------------
    page.goto(search_url)
    page.locator("#results li a").first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(item_url)
    view = page.locator("#view-item")
    expect(view.get_by_role("heading", name="Text in the image")).to_be_visible()
    expect(view.get_by_role("heading", name="Analysis versions")).to_be_visible()
    expect(view.get_by_role("link", name="Download")).to_have_attribute(
        "href", re.compile("response-content-disposition=attachment")
    )
    image = page.locator("#item-image")
    assert "thumb_1024" in (image.get_attribute("src") or "") or "1024" in (
        image.get_attribute("src") or ""
    )
    page.wait_for_function("document.querySelector('#item-image').naturalWidth > 0")
    accessible(page, "item")
    snapshot(page, "05-item")
    view.get_by_role("button", name="Show the original").click()
    expect(image).to_have_attribute("src", re.compile("/original"))
    page.wait_for_function("document.querySelector('#item-image').naturalWidth > 1000")

    # -- reanalyze: a second version, ready again ------------------------------------------------
    view.get_by_role("button", name="Analyze again").click()
    expect(view.get_by_role("button", name="Version 2")).to_be_visible(timeout=READY_TIMEOUT_MS)
    expect(view.locator(".status")).to_have_text("Ready and searchable.")
    expect(view.get_by_role("button", name="Version 2")).to_have_attribute("aria-current", "true")
    view.get_by_role("button", name="Version 1").click()
    expect(view).to_contain_text("You are looking at version 1, not the latest.")

    # -- delete, with confirmation ---------------------------------------------------------------
    view.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog", name="Delete this item?")
    expect(dialog).to_be_visible()
    accessible(page, "delete confirmation")
    page.screenshot(path=ARTIFACTS / "06-delete.png")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    view.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="Your collection", exact=True)).to_be_visible()
    expect(page.locator("#grid li")).to_have_count(2)
    expect(page.locator(f"#grid li[data-id='{item_id}']")).to_have_count(0)
    page.goto(item_url)
    expect(page.get_by_role("heading", name="No such item")).to_be_visible()

    # -- the same file again: recognised before any byte is sent, no second item ---------------
    page.goto(url)
    expect(page.locator("#grid li")).to_have_count(2)
    page.set_input_files("#file-input", [str(screenshots[0])])
    again = upload_row(page, screenshots[0].name)
    expect(again.locator(".upload-status")).to_have_text(
        "Already in your collection. See the one you have"
    )
    page.reload()  # an item created for the upload (and failed later) would be listed now
    expect(page.locator("#grid li")).to_have_count(2)
    expect(page.locator("#grid .badge")).to_have_count(0)

    # -- a broken file, pasted from the clipboard: it fails, and says why ------------------------
    broken, _ = bad_image_corpus()["truncated.jpg"]
    paste_file(page, "broken.jpg", broken, "image/jpeg")
    row = upload_row(page, "broken.jpg")
    expect(row.locator(".upload-status")).to_have_text(
        re.compile("The file is incomplete"), timeout=READY_TIMEOUT_MS
    )
    expect(page.locator("#grid li[data-status='failed'] .badge")).to_contain_text(
        "Failed: The file is incomplete"
    )
    # and a file that is not an image at all never leaves the page
    paste_file(page, "notes.txt", b"hello", "text/plain")
    expect(upload_row(page, "notes.txt").locator(".upload-status")).to_have_text(
        re.compile("cannot be uploaded")
    )
    accessible(page, "failed upload")
    snapshot(page, "07-failed-upload")

    # -- filters: status failed only, in the URL -------------------------------------------------
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(r"\?status=failed$"))
    expect(page.locator("#grid li")).to_have_count(1)
    page.get_by_label("From", exact=True).fill("2000-01-01")
    page.get_by_label("To", exact=True).fill("2000-01-02")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.get_by_role("heading", name="Nothing matches these filters")).to_be_visible()

    # -- another person sees none of it -----------------------------------------------------------
    other = Session(browser, url)
    other.sign_in(*second_user(product))
    expect(other.page.get_by_role("heading", name="Your collection is empty")).to_be_visible()
    page.goto(url)
    remaining = page.locator("#grid li").first.get_attribute("data-id")
    other.page.goto(f"{url}?item={remaining}")
    expect(other.page.get_by_role("heading", name="No such item")).to_be_visible()
    other.page.goto(f"{url}?q={headline}")
    expect(
        other.page.get_by_role("heading", name="Nothing relevant in your collection")
    ).to_be_visible()
    other.page.goto(conversation_url)
    expect(other.page.get_by_role("heading", name="This conversation has ended")).to_be_visible()
    expect(other.page.locator("#ask-turns li")).to_have_count(0)
    other.close()

    # -- an expired session that cannot be renewed: a clear "signed out" screen ------------------
    me.context.clear_cookies()
    page.route(
        "**/items?*",
        lambda route: route.fulfill(
            status=401,
            content_type="application/json",
            body=json.dumps(
                {"error": {"code": "token_expired", "message": "The token has expired."}}
            ),
        ),
    )
    page.get_by_role("link", name="Collections").click()
    expect(page.get_by_role("heading", name="You have been signed out")).to_be_visible()
    accessible(page, "signed out")
    page.unroute("**/items?*")

    # -- sign out: the cookie goes, a reload asks to sign in -----------------------------------
    me.sign_in(username, password)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Collections")).to_be_visible()
    expect(page.locator("#signin-notice")).to_have_text("You have signed out.")
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to Collections")).to_be_visible()
    assert not [c for c in me.context.cookies() if c["name"].endswith("collections-session")]
    me.close()


def ask_about_the_collection(me: Session, url: str, headline: str, item_id: str) -> str:
    """The Ask view: two questions in one conversation, answers citing the items (a citation
    opens its item), the conversation's limit, a spent daily budget, the service out of reach,
    polling only while the view is shown, a failed answer and an unknown conversation, each
    said in words. Returns the conversation's URL."""
    page = me.page
    page.goto(url)
    others = page.locator(f"#grid li[data-status='ready']:not([data-id='{item_id}'])").first
    other_id = others.get_attribute("data-id")
    other_headline = (others.locator(".card-title").text_content() or "").strip()

    page.get_by_role("link", name="Ask", exact=True).click()
    expect(page).to_have_url(re.compile(r"/\?ask=new$"))
    view = page.locator("#view-ask")
    expect(view.get_by_role("heading", name="Ask about your collection")).to_be_visible()
    box = view.get_by_label("Your question")
    send = view.get_by_role("button", name="Ask", exact=True)
    turns = page.locator("#ask-turns > li")
    expect(box).to_be_focused()
    expect(box).to_have_attribute("maxlength", "4000")  # AskRequest.content's limit
    expect(send).to_be_disabled()
    box.fill("   ")
    expect(send).to_be_disabled()

    # -- a question about one item, sent with Enter: answered, citing it -------------------------
    box.fill(headline)
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"/\?ask=[0-9a-f-]{36}$"))
    conversation_url = page.url
    expect(turns).to_have_count(1)
    first = turns.nth(0)
    expect(first.locator(".question")).to_have_text(f"You asked: {headline}")
    expect(first.locator(".answer")).to_have_attribute("aria-live", "polite")
    expect(first.locator(".answer-text")).to_contain_text("I found", timeout=ANSWER_TIMEOUT_MS)
    expect(box).to_have_value("")
    cited = first.locator(".citations > li")
    expect(cited.first).to_have_attribute("data-id", item_id)
    expect(cited.first).to_contain_text(headline)
    expect(cited.first.locator("img")).to_have_count(1)  # its thumbnail
    answer = first.locator(".answer-text").text_content() or ""
    for title in cited.locator(".citation-title").all_text_contents():
        assert title in answer, (title, answer)  # every card is an item the answer lists
    shown = first.locator(".answer").text_content()
    assert shown == answer + first.locator(".citations").text_content(), shown  # nothing else
    page.wait_for_function(
        "[...document.querySelectorAll('#ask-turns img')].every(i => i.complete && i.naturalWidth)"
    )
    accessible(page, "ask")
    snapshot(page, "08-ask")

    # a citation opens its item; back, the conversation is as it was (reloaded from the API)
    cited.first.get_by_role("link").click()
    expect(page).to_have_url(f"{url}?item={item_id}")
    expect(page.locator("#item-title")).to_have_text(headline)
    page.go_back()
    expect(page).to_have_url(conversation_url)
    expect(turns).to_have_count(1)
    expect(turns.nth(0).locator(".citations > li").first).to_have_attribute("data-id", item_id)

    # -- a second question in the same conversation: shown after the first ---------------------
    box.fill(other_headline)
    send.click()
    expect(turns).to_have_count(2)
    expect(turns.nth(1).locator(".answer-text")).to_contain_text(
        "I found", timeout=ANSWER_TIMEOUT_MS
    )
    expect(turns.locator(".question")).to_have_text(
        [f"You asked: {headline}", f"You asked: {other_headline}"]
    )
    expect(turns.nth(1).locator(f".citations > li[data-id='{other_id}']")).to_have_count(1)
    expect(page).to_have_url(conversation_url)

    # -- the conversation's last question taken: the API's 409, said, and a way on --------------
    third = "Which of these did I save first?"
    box.fill(third)
    send.click()
    alert = view.get_by_role("alert")
    expect(alert).to_contain_text("This conversation has reached its message limit")
    expect(send).to_be_disabled()
    expect(box).to_have_value(third)  # nothing typed is lost
    expect(turns).to_have_count(2)
    accessible(page, "ask: conversation full")
    alert.get_by_role("button", name="Start a new conversation").click()
    expect(page).to_have_url(re.compile(r"/\?ask=new$"))
    expect(turns).to_have_count(0)
    expect(alert).to_be_hidden()
    expect(box).to_have_value(third)

    # -- the daily budget spent (the API's 429, answered here by the test): when it resets ----
    def budget_spent(route: Any) -> None:
        route.fulfill(
            status=429,
            headers={"Retry-After": "3600"},
            content_type="application/json",
            body=json.dumps(
                {
                    "error": {
                        "code": "daily_budget_exhausted",
                        "message": "You have used your daily assistant budget "
                        "(500,000 of 500,000 tokens). It resets at 00:00 UTC, in 1 h 0 min.",
                    }
                }
            ),
        )

    page.route("**/conversations/*/messages", budget_spent)
    send.click()
    expect(alert).to_contain_text("You have used your daily assistant budget")
    expect(alert).to_contain_text(re.compile(r"You can ask again from \S"))
    expect(send).to_be_enabled()
    page.unroute("**/conversations/*/messages")

    # -- the service out of reach: said, and the question kept ----------------------------------
    page.route("**/conversations/*/messages", lambda route: route.abort("connectionrefused"))
    send.click()
    expect(alert).to_contain_text("Collections does not answer. Check your connection")
    expect(box).to_have_value(third)
    expect(send).to_be_enabled()
    expect(turns).to_have_count(0)
    page.unroute("**/conversations/*/messages")

    # -- while it is answered: "Answering…" and no second question; polling only while the view
    # is shown; then it fails. The page is shown the message as still answering (the message
    # and the conversation, as the API would send them), then as timed out.
    answered = {"yet": False}
    message_url, conversation_url_glob = "**/conversations/*/messages/*", "**/conversations/*"

    def held(message: dict[str, Any]) -> dict[str, Any]:
        message.update(answer=None, citations=[], status="answering")
        if answered["yet"]:
            message.update(
                status="failed",
                failure={
                    "reason": "timed_out",
                    "message": "The assistant did not answer in time; ask again.",
                },
            )
        return message

    def held_message(route: Any) -> None:
        route.fulfill(json=held(route.fetch().json()))

    def held_conversation(route: Any) -> None:
        conversation = route.fetch().json()
        conversation["messages"] = [held(m) for m in conversation["messages"]]
        route.fulfill(json=conversation)

    page.route(message_url, held_message)
    page.route(conversation_url_glob, held_conversation)
    send.click()
    expect(turns).to_have_count(1)
    pending = turns.nth(0).locator(".answer")
    expect(pending).to_have_text("Answering…")
    expect(pending).to_have_attribute("aria-busy", "true")
    with page.expect_request(message_url):
        pass  # polled, and still answering
    box.fill("And one more?")
    expect(send).to_be_disabled()  # one question at a time

    polls: list[str] = []

    def count_polls(request: Any) -> None:
        if "/messages/" in request.url:
            polls.append(request.url)

    page.on("request", count_polls)
    page.get_by_role("link", name="Collections").click()
    expect(page.get_by_role("heading", name="Your collection", exact=True)).to_be_visible()
    polls.clear()
    page.wait_for_timeout(3500)  # more than three polling intervals
    assert not polls, polls
    page.go_back()  # the conversation again: the question is followed again
    expect(pending).to_have_text("Answering…")
    with page.expect_request(message_url):
        pass
    page.remove_listener("request", count_polls)
    expect(box).to_have_value("And one more?")
    expect(send).to_be_disabled()

    answered["yet"] = True
    expect(pending).to_contain_text(
        "No answer: The assistant did not answer in time; ask again.",
        timeout=ANSWER_TIMEOUT_MS,
    )
    expect(pending).to_contain_text("timed_out")
    expect(pending).to_have_attribute("aria-busy", "false")
    expect(send).to_be_enabled()
    page.unroute(message_url)
    page.unroute(conversation_url_glob)
    turns.nth(0).get_by_role("button", name="Ask it again").click()
    expect(box).to_have_value(third)
    expect(box).to_be_focused()

    # -- a conversation that is not (or no longer) there: said, with a new one offered ---------
    page.goto(f"{url}?ask={uuid.uuid4()}")
    expect(view.get_by_role("heading", name="This conversation has ended")).to_be_visible()
    expect(send).to_be_disabled()
    accessible(page, "ask: conversation ended")
    snapshot(page, "09-ask-ended", phone=False)
    view.get_by_role("button", name="Start a new conversation").click()
    expect(page).to_have_url(re.compile(r"/\?ask=new$"))
    expect(view.get_by_role("heading", name="This conversation has ended")).to_be_hidden()
    return conversation_url
