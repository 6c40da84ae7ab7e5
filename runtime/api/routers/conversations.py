"""Conversations with the assistant. Per user: another user's conversation is a 404.

Answers are asynchronous (a tool loop can outlast API Gateway's 30 s integration timeout):
``POST /conversations/{id}/messages`` stores the question as a pending message, publishes
``QuestionAsked`` and returns 202 with the message; the assistant function answers; the client
polls ``GET /conversations/{id}/messages/{message_id}`` until the status is ``done`` or
``failed``.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from runtime.api.context import ApiContext, api_context
from runtime.api.deps import CurrentUser
from runtime.api.errors import ApiError, responses
from runtime.api.schemas import (
    AnswerUsage,
    AskRequest,
    CitationOut,
    ConversationDetail,
    ConversationList,
    ConversationMessage,
    ConversationSummary,
    CreateConversationRequest,
    MessageFailure,
)
from runtime.api.urls import presigned_get
from runtime.domain.conversations import (
    Conversation,
    ConversationStore,
    Message,
    MessageStatus,
    expiry,
    is_stale,
    seconds_until_next_day,
    utc_day,
)
from runtime.events import QuestionAsked
from runtime.topology import function

router = APIRouter(prefix="/conversations", tags=["assistant"])
Ctx = Annotated[ApiContext, Depends(api_context)]
ConversationId = Annotated[uuid.UUID, Path(description="The conversation's id")]
MessageId = Annotated[uuid.UUID, Path(description="The message's id")]
COMMON = responses(401, 422, 429, 500, 503)
ASSISTANT_TIMEOUT_S = function("assistant").timeout_s


def _store() -> ConversationStore:
    from runtime.handlers.wiring import conversation_store

    return conversation_store()


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such conversation.")


def _summary(conversation: Conversation) -> ConversationSummary:
    return ConversationSummary(
        id=conversation.id,
        title=conversation.title,
        created_at=conversation.created_at,
        expires_at=conversation.expires_at,
        message_count=conversation.message_count,
    )


def _message_out(ctx: ApiContext, message: Message) -> ConversationMessage:
    status, failure = message.status, None
    if message.status is MessageStatus.FAILED:
        failure = MessageFailure(
            reason=message.failure_reason or "failed",
            message=message.failure_message or "The assistant could not answer.",
        )
    elif is_stale(message, ASSISTANT_TIMEOUT_S):
        status = MessageStatus.FAILED
        failure = MessageFailure(
            reason="timed_out", message="The assistant did not answer in time; ask again."
        )
    citations = []
    s3 = bucket = None
    for citation in message.citations:
        thumbnail_url = None
        if citation.thumbnail_key:
            if s3 is None:
                s3, bucket = ctx.s3(), ctx.settings.bucket
            thumbnail_url = presigned_get(s3, bucket=bucket, key=citation.thumbnail_key)
        citations.append(
            CitationOut(
                kind="web" if citation.kind == "web" else "item",
                title=citation.title,
                item_id=uuid.UUID(citation.item_id) if citation.item_id else None,
                category=citation.category,
                thumbnail_url=thumbnail_url,
                url=citation.url,
                cited_text=citation.cited_text,
            )
        )
    usage = message.usage
    return ConversationMessage(
        id=message.id,
        conversation_id=message.conversation_id,
        question=message.question,
        status=status,  # type: ignore[arg-type]
        answer=message.answer,
        citations=citations,
        stop_reason=str(message.stop_reason) if message.stop_reason else None,  # type: ignore[arg-type]
        usage=AnswerUsage(**usage.__dict__) if usage else None,
        created_at=message.created_at,
        answered_at=message.answered_at,
        failure=failure,
    )


@router.post(
    "",
    status_code=201,
    operation_id="createConversation",
    summary="Start a conversation with the assistant",
    description="It expires (with its messages) at `expires_at`, a configured time after now.",
    responses={**COMMON},
)
def create_conversation(
    user: CurrentUser, ctx: Ctx, body: CreateConversationRequest | None = None
) -> ConversationSummary:
    now = datetime.now(UTC)
    conversation = Conversation(
        id=uuid.uuid4(),
        user_id=user.user_id,
        title=body.title if body else None,
        created_at=now,
        expires_at=expiry(now, ctx.settings.conversation_ttl_hours),
    )
    _store().create(conversation)
    return _summary(conversation)


@router.get(
    "",
    operation_id="listConversations",
    summary="The caller's conversations, newest first",
    responses={**COMMON},
)
def list_conversations(
    user: CurrentUser, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> ConversationList:
    return ConversationList(
        conversations=[_summary(c) for c in _store().list(user.user_id, limit=limit)]
    )


@router.get(
    "/{conversation_id}",
    operation_id="getConversation",
    summary="A conversation with its messages",
    responses={**COMMON, **responses(404)},
)
def get_conversation(
    user: CurrentUser, ctx: Ctx, conversation_id: ConversationId
) -> ConversationDetail:
    conversation = _store().get(user.user_id, conversation_id)
    if conversation is None:
        raise _not_found()
    return ConversationDetail(
        **_summary(conversation).model_dump(),
        messages=[_message_out(ctx, m) for m in conversation.messages],
    )


@router.delete(
    "/{conversation_id}",
    status_code=204,
    operation_id="deleteConversation",
    summary="Delete a conversation and its messages",
    responses={**COMMON, **responses(404)},
)
def delete_conversation(user: CurrentUser, conversation_id: ConversationId) -> Response:
    if not _store().delete(user.user_id, conversation_id):
        raise _not_found()
    return Response(status_code=204)


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    operation_id="ask",
    summary="Ask the assistant; the answer comes asynchronously",
    description=(
        "Stores the question and returns it with status `pending` (202); poll the message "
        "(`Location` header) until its status is `done` or `failed`. One question at a time "
        "per conversation (409 while one is unanswered). 429 `daily_budget_exhausted` once the "
        "caller's daily token budget is spent."
    ),
    responses={**COMMON, **responses(404, 409)},
)
def ask(
    user: CurrentUser,
    ctx: Ctx,
    conversation_id: ConversationId,
    body: AskRequest,
    response: Response,
) -> ConversationMessage:
    store, settings = _store(), ctx.settings
    conversation = store.get(user.user_id, conversation_id)
    if conversation is None:
        raise _not_found()
    budget = settings.assistant_daily_token_budget
    used = store.tokens_used(user.user_id, utc_day())
    if used >= budget:
        wait = seconds_until_next_day()
        raise ApiError(
            429,
            "daily_budget_exhausted",
            f"You have used your daily assistant budget ({used:,} of {budget:,} tokens). "
            f"It resets at 00:00 UTC, in {wait // 3600} h {wait % 3600 // 60} min.",
            headers={"Retry-After": str(wait)},
        )
    message = Message(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        question=body.content.strip() or body.content,
        status=MessageStatus.PENDING,
        created_at=datetime.now(UTC),
    )
    if not store.add_message(user.user_id, conversation, message):
        if conversation.message_count >= settings.assistant_max_messages_per_conversation:
            raise ApiError(
                409,
                "conversation_full",
                "This conversation has reached its message limit; start a new one.",
            )
        raise ApiError(
            409,
            "answer_pending",
            "The assistant is still answering the previous question in this conversation.",
        )
    try:
        ctx.pipeline().publisher.publish(
            QuestionAsked(
                user_id=user.user_id, conversation_id=conversation.id, message_id=message.id
            )
        )
    except Exception:
        # Not delivered: end the message now rather than leave it pending until it times out.
        store.finish(
            user.user_id,
            conversation.id,
            replace(
                message,
                status=MessageStatus.FAILED,
                failure_reason="not_delivered",
                failure_message="The question could not be passed to the assistant; ask again.",
            ),
        )
        raise
    response.headers["Location"] = f"/conversations/{conversation.id}/messages/{message.id}"
    return _message_out(ctx, message)


@router.get(
    "/{conversation_id}/messages/{message_id}",
    operation_id="getMessage",
    summary="One message: poll it until its status is done or failed",
    responses={**COMMON, **responses(404)},
)
def get_message(
    user: CurrentUser, ctx: Ctx, conversation_id: ConversationId, message_id: MessageId
) -> ConversationMessage:
    message = _store().get_message(user.user_id, conversation_id, message_id)
    if message is None:
        raise ApiError(404, "not_found", "No such message.")
    return _message_out(ctx, message)
