"""Conversations with the assistant: what is stored, and the store the domain needs.

A conversation belongs to one user and expires ``conversation_ttl_hours`` after it was created,
with every message in it (the store writes the expiry on each record: DynamoDB's TTL attribute on
AWS). Expiry is enforced on read as well, because DynamoDB deletes expired items only eventually.

A message is one exchange: the user's question and, once the assistant has answered, the answer
with its citations, what it cost (tokens), how long it took and why it stopped. The API stores
it ``pending``; the assistant function moves it to ``answering`` (only if it is still pending, so
a redelivered event never answers twice), then to ``done`` or ``failed``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol


class MessageStatus(StrEnum):
    PENDING = "pending"
    ANSWERING = "answering"
    DONE = "done"
    FAILED = "failed"


class StopReason(StrEnum):
    ANSWERED = "answered"  # the model answered on its own
    MAX_TOOL_ROUNDS = "max_tool_rounds"  # cut off: still calling tools after the last round
    TOKEN_LIMIT = "token_limit"  # cut off: the message's (or the day's) token allowance is spent


@dataclass(frozen=True)
class Citation:
    """A source an answer used: one of the user's items, or a web page (web search)."""

    kind: str  # "item" | "web"
    title: str
    item_id: str | None = None
    category: str | None = None
    thumbnail_key: str | None = None
    url: str | None = None
    cited_text: str | None = None


@dataclass(frozen=True)
class Usage:
    provider: str  # "anthropic" | "offline"
    model: str
    input_tokens: int = 0  # every input token of every call, cached or not
    output_tokens: int = 0
    cache_read_input_tokens: int = 0  # the part of input_tokens read from the prompt cache
    tool_rounds: int = 0
    latency_ms: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    conversation_id: uuid.UUID
    question: str
    status: MessageStatus
    created_at: datetime
    answer: str | None = None
    citations: tuple[Citation, ...] = ()
    stop_reason: StopReason | None = None
    usage: Usage | None = None
    answered_at: datetime | None = None
    failure_reason: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    user_id: str
    title: str | None
    created_at: datetime
    expires_at: datetime
    message_count: int = 0
    messages: tuple[Message, ...] = field(default_factory=tuple)

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or datetime.now(UTC))


class ConversationStore(Protocol):
    """Every method takes the tenant; nothing reads or writes across tenants."""

    def create(self, conversation: Conversation) -> None: ...

    def get(self, user_id: str, conversation_id: uuid.UUID) -> Conversation | None:
        """The conversation with its messages (oldest first); expired or absent: None."""
        ...

    def list(self, user_id: str, *, limit: int) -> list[Conversation]:
        """The user's live conversations, newest first, without their messages."""
        ...

    def delete(self, user_id: str, conversation_id: uuid.UUID) -> bool: ...

    def add_message(self, user_id: str, conversation: Conversation, message: Message) -> bool:
        """Append a pending message unless another one is still pending or the conversation
        is full; False if refused."""
        ...

    def get_message(
        self, user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> Message | None: ...

    def start_answer(self, user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID) -> bool:
        """pending -> answering; False if the message is not pending (already taken)."""
        ...

    def finish(self, user_id: str, conversation_id: uuid.UUID, message: Message) -> None:
        """Store the final state (done or failed) of a message."""
        ...

    def tokens_used(self, user_id: str, day: str) -> int: ...

    def add_tokens(self, user_id: str, day: str, tokens: int) -> None: ...

    def sweep_expired(self, now: datetime) -> int:
        """Delete every expired record (local mode: the emulator never expires them)."""
        ...


def expiry(created_at: datetime, ttl_hours: float) -> datetime:
    return created_at + timedelta(hours=ttl_hours)


def utc_day(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def seconds_until_next_day(moment: datetime | None = None) -> int:
    now = (moment or datetime.now(UTC)).astimezone(UTC)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


def is_stale(message: Message, timeout_s: int, now: datetime | None = None) -> bool:
    """A message still unanswered well after the assistant function's timeout never will be."""
    if message.status not in (MessageStatus.PENDING, MessageStatus.ANSWERING):
        return False
    grace = timedelta(seconds=timeout_s + 60)
    return message.created_at + grace < (now or datetime.now(UTC))
