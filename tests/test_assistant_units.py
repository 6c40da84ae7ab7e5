"""The assistant's pure parts: tool refusals, cut-off answers, staleness, the budget's clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runtime.domain.assistant import (
    ITEM_TOOL,
    SEARCH_TOOL,
    WEB_TOOL,
    Source,
    Toolbox,
    cut_off_answer,
    tool_definitions,
)
from runtime.domain.conversations import (
    Citation,
    Message,
    MessageStatus,
    StopReason,
    is_stale,
    seconds_until_next_day,
    utc_day,
)
from tests.conftest import no_database, no_embedder, unreachable_toolbox


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        (SEARCH_TOOL, {"query": ""}, "Invalid input for search_collection: query:"),
        (SEARCH_TOOL, {"query": "x", "limit": 500}, "limit: Input should be less than or equal"),
        (SEARCH_TOOL, {"query": "x", "mode": "sql"}, "mode: Input should be"),
        (ITEM_TOOL, {"item_id": "../../etc/passwd"}, "item_id: Input should be a valid UUID"),
        (ITEM_TOOL, {}, "item_id: Field required"),
        (WEB_TOOL, {"query": "x"}, "There is no tool named 'web_search'."),
        ("drop_table", {}, "There is no tool named 'drop_table'."),
        (SEARCH_TOOL, ["not", "an", "object"], "The tool input must be a JSON object."),
    ],
)
def test_bad_tool_calls_are_error_results_for_the_model(
    name: str, arguments: object, expected: str
) -> None:
    result = unreachable_toolbox().run(name, arguments)
    assert result.is_error and not result.sources
    assert result.note is not None and expected in result.note


def test_a_toolbox_needs_a_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        Toolbox("", sessions=no_database, embedder=no_embedder)


def test_web_search_is_a_tool_only_when_configured() -> None:
    assert [t["name"] for t in tool_definitions(web=False)] == [SEARCH_TOOL, ITEM_TOOL]
    assert [t["name"] for t in tool_definitions(web=True)] == [SEARCH_TOOL, ITEM_TOOL, WEB_TOOL]
    for tool in tool_definitions(web=True):
        schema = tool["input_schema"]
        assert schema["additionalProperties"] is False
        assert not {"user_id", "tenant", "owner"} & set(schema["properties"])


def source(n: int) -> Source:
    citation = Citation(kind="item", title=f"Item {n}", item_id=str(uuid.uuid4()))
    return Source(key=f"collections://items/{citation.item_id}", title=citation.title,
                  texts=("text",), citation=citation)  # fmt: skip


def test_cut_off_answers_say_why_and_list_what_was_found() -> None:
    found = {s.key: s for s in (source(n) for n in range(30))}
    text, citations = cut_off_answer(StopReason.MAX_TOOL_ROUNDS, found, rounds=4)
    assert text.startswith("I stopped after 4 rounds of searching, the limit for one question")
    assert "- Item 0" in text and len(citations) == 20  # bounded
    text, citations = cut_off_answer(StopReason.TOKEN_LIMIT, {}, rounds=1)
    assert "token limit" in text and "found nothing relevant" in text and citations == ()


def message(status: MessageStatus, age: timedelta) -> Message:
    return Message(uuid.uuid4(), uuid.uuid4(), "q", status, datetime.now(UTC) - age)


def test_an_unanswered_message_is_stale_after_the_functions_timeout_and_a_minute() -> None:
    assert not is_stale(message(MessageStatus.PENDING, timedelta(seconds=200)), 180)
    assert is_stale(message(MessageStatus.PENDING, timedelta(seconds=241)), 180)
    assert is_stale(message(MessageStatus.ANSWERING, timedelta(seconds=241)), 180)
    assert not is_stale(message(MessageStatus.DONE, timedelta(days=1)), 180)
    assert not is_stale(message(MessageStatus.FAILED, timedelta(days=1)), 180)


def test_the_daily_budget_runs_on_utc_days() -> None:
    late = datetime(2026, 12, 1, 23, 59, 30, tzinfo=UTC)
    assert utc_day(late) == "2026-12-01"
    assert seconds_until_next_day(late) == 30
    east = late.astimezone(ZoneInfo("Asia/Tokyo"))
    assert utc_day(east) == "2026-12-01"  # the same instant, the same budget day
    assert seconds_until_next_day(datetime(2026, 12, 1, tzinfo=UTC)) == 86400
