"""DynamoDB as the domain's ConversationStore.

One table, partitioned by tenant: ``pk = user#<sub>``; ``sk`` = ``conv#<id>`` (a conversation),
``msg#<conversation id>#<message id>`` (a message), ``usage#<YYYY-MM-DD>`` (the user's tokens
that UTC day). Every record carries ``expires_at`` (epoch seconds), the table's TTL attribute.
Every request names the caller's partition, so no call can reach another user's records.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from runtime.domain.conversations import (
    Citation,
    Conversation,
    Message,
    MessageStatus,
    StopReason,
    Usage,
)

TTL_ATTRIBUTE = "expires_at"
PARTITION_KEY = "pk"
SORT_KEY = "sk"
USAGE_RETENTION = timedelta(days=2)
_BATCH = 25  # BatchWriteItem limit


def _pk(user_id: str) -> dict[str, str]:
    return {"S": f"user#{user_id}"}


def _conversation_key(user_id: str, conversation_id: uuid.UUID) -> dict[str, Any]:
    return {PARTITION_KEY: _pk(user_id), SORT_KEY: {"S": f"conv#{conversation_id}"}}


def _message_key(user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID) -> dict[str, Any]:
    return {PARTITION_KEY: _pk(user_id), SORT_KEY: {"S": f"msg#{conversation_id}#{message_id}"}}


def _epoch(moment: datetime) -> dict[str, str]:
    return {"N": str(int(moment.timestamp()))}


def _iso(moment: datetime) -> dict[str, str]:
    return {"S": moment.astimezone(UTC).isoformat()}


def _when(value: dict[str, str] | None) -> datetime | None:
    return datetime.fromisoformat(value["S"]) if value else None


def _conditional_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


class DynamoConversationStore:
    def __init__(
        self, client: Any, table: str, *, pending_timeout_s: int = 240, max_messages: int = 50
    ) -> None:
        self._db = client
        self.table = table
        self.max_messages = max_messages
        # A pending message older than this no longer blocks the conversation (its answer was
        # lost: the function crashed or timed out).
        self._pending_timeout_s = pending_timeout_s

    # -- conversations ---------------------------------------------------------------------------

    def create(self, conversation: Conversation) -> None:
        item = {
            **_conversation_key(conversation.user_id, conversation.id),
            "created_at": _iso(conversation.created_at),
            TTL_ATTRIBUTE: _epoch(conversation.expires_at),
            "message_count": {"N": "0"},
        }
        if conversation.title:
            item["title"] = {"S": conversation.title}
        self._db.put_item(TableName=self.table, Item=item)

    def get(self, user_id: str, conversation_id: uuid.UUID) -> Conversation | None:
        head = self._db.get_item(
            TableName=self.table,
            Key=_conversation_key(user_id, conversation_id),
            ConsistentRead=True,
        ).get("Item")
        if head is None:
            return None
        conversation = _conversation(user_id, head)
        if conversation.expired():
            return None
        records = self._query(user_id, f"msg#{conversation_id}#")
        messages = sorted(
            (_message(conversation_id, r) for r in records), key=lambda m: m.created_at
        )
        return Conversation(**{**conversation.__dict__, "messages": tuple(messages)})

    def list(self, user_id: str, *, limit: int) -> list[Conversation]:
        now = datetime.now(UTC)
        conversations = [
            _conversation(user_id, r) for r in self._query(user_id, "conv#", consistent=False)
        ]
        live = [c for c in conversations if not c.expired(now)]
        live.sort(key=lambda c: c.created_at, reverse=True)
        return live[:limit]

    def delete(self, user_id: str, conversation_id: uuid.UUID) -> bool:
        try:
            self._db.delete_item(
                TableName=self.table,
                Key=_conversation_key(user_id, conversation_id),
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as error:
            if _conditional_failure(error):
                return False
            raise
        keys = [
            {PARTITION_KEY: r[PARTITION_KEY], SORT_KEY: r[SORT_KEY]}
            for r in self._query(user_id, f"msg#{conversation_id}#", keys_only=True)
        ]
        self._delete_keys(keys)
        return True

    # -- messages --------------------------------------------------------------------------------

    def add_message(self, user_id: str, conversation: Conversation, message: Message) -> bool:
        now = datetime.now(UTC)
        stale_before = int((now - timedelta(seconds=self._pending_timeout_s)).timestamp())
        item = {
            **_message_key(user_id, conversation.id, message.id),
            "question": {"S": message.question},
            "status": {"S": str(message.status)},
            "created_at": _iso(message.created_at),
            TTL_ATTRIBUTE: _epoch(conversation.expires_at),
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _conversation_key(user_id, conversation.id),
                            "UpdateExpression": (
                                "SET pending_id = :m, pending_since = :now ADD message_count :one"
                            ),
                            "ConditionExpression": (
                                "attribute_exists(pk) AND #exp > :now AND message_count < :max "
                                "AND (attribute_not_exists(pending_id) OR pending_since < :stale)"
                            ),
                            "ExpressionAttributeNames": {"#exp": TTL_ATTRIBUTE},
                            "ExpressionAttributeValues": {
                                ":m": {"S": str(message.id)},
                                ":now": _epoch(now),
                                ":one": {"N": "1"},
                                ":max": {"N": str(self.max_messages)},
                                ":stale": {"N": str(stale_before)},
                            },
                        }
                    },
                    {"Put": {"TableName": self.table, "Item": item}},
                ]
            )
        except ClientError as error:
            if _conditional_failure(error):
                return False
            raise
        return True

    def get_message(
        self, user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> Message | None:
        record = self._db.get_item(
            TableName=self.table,
            Key=_message_key(user_id, conversation_id, message_id),
            ConsistentRead=True,
        ).get("Item")
        if record is None or int(record[TTL_ATTRIBUTE]["N"]) <= datetime.now(UTC).timestamp():
            return None
        return _message(conversation_id, record)

    def start_answer(self, user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID) -> bool:
        try:
            self._db.update_item(
                TableName=self.table,
                Key=_message_key(user_id, conversation_id, message_id),
                UpdateExpression="SET #s = :answering",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":answering": {"S": str(MessageStatus.ANSWERING)},
                    ":pending": {"S": str(MessageStatus.PENDING)},
                },
            )
        except ClientError as error:
            if _conditional_failure(error):
                return False
            raise
        return True

    def finish(self, user_id: str, conversation_id: uuid.UUID, message: Message) -> None:
        values: dict[str, Any] = {":status": {"S": str(message.status)}}
        names = {"#s": "status"}
        sets = ["#s = :status"]

        def put(name: str, value: dict[str, Any] | None) -> None:
            if value is not None:  # names go through placeholders: some are reserved words
                values[f":{name}"] = value
                names[f"#{name}"] = name
                sets.append(f"#{name} = :{name}")

        put("answer", {"S": message.answer} if message.answer is not None else None)
        put("citations", {"S": json.dumps([asdict(c) for c in message.citations])})
        put("stop_reason", {"S": str(message.stop_reason)} if message.stop_reason else None)
        put("usage", {"S": json.dumps(asdict(message.usage))} if message.usage else None)
        put("answered_at", _iso(message.answered_at) if message.answered_at else None)
        put("failure_reason", {"S": message.failure_reason} if message.failure_reason else None)
        put("failure_message", {"S": message.failure_message} if message.failure_message else None)
        try:
            self._db.update_item(
                TableName=self.table,
                Key=_message_key(user_id, conversation_id, message.id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            self._db.update_item(
                TableName=self.table,
                Key=_conversation_key(user_id, conversation_id),
                UpdateExpression="REMOVE pending_id, pending_since",
                ConditionExpression="attribute_exists(pk) AND pending_id = :m",
                ExpressionAttributeValues={":m": {"S": str(message.id)}},
            )
        except ClientError as error:
            if not _conditional_failure(error):  # deleted meanwhile, or a newer message
                raise

    # -- daily token budget ----------------------------------------------------------------------

    def tokens_used(self, user_id: str, day: str) -> int:
        record = self._db.get_item(
            TableName=self.table,
            Key={PARTITION_KEY: _pk(user_id), SORT_KEY: {"S": f"usage#{day}"}},
            ConsistentRead=True,
        ).get("Item")
        return int(record["tokens"]["N"]) if record else 0

    def add_tokens(self, user_id: str, day: str, tokens: int) -> None:
        if tokens <= 0:
            return
        self._db.update_item(
            TableName=self.table,
            Key={PARTITION_KEY: _pk(user_id), SORT_KEY: {"S": f"usage#{day}"}},
            UpdateExpression="ADD tokens :t SET #exp = :exp",
            ExpressionAttributeNames={"#exp": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":t": {"N": str(tokens)},
                ":exp": _epoch(datetime.now(UTC) + USAGE_RETENTION),
            },
        )

    # -- expiry ----------------------------------------------------------------------------------

    def sweep_expired(self, now: datetime) -> int:
        keys: list[dict[str, Any]] = []
        paginator = self._db.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table,
            FilterExpression="#exp <= :now",
            ExpressionAttributeNames={"#exp": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":now": _epoch(now)},
            ProjectionExpression="pk, sk",
        ):
            keys.extend(page.get("Items", []))
        self._delete_keys(keys)
        return len(keys)

    # -- helpers ---------------------------------------------------------------------------------

    def _query(
        self, user_id: str, prefix: str, *, consistent: bool = True, keys_only: bool = False
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _pk(user_id), ":prefix": {"S": prefix}},
            "ConsistentRead": consistent,
        }
        if keys_only:
            kwargs["ProjectionExpression"] = "pk, sk"
        records: list[dict[str, Any]] = []
        for page in self._db.get_paginator("query").paginate(**kwargs):
            records.extend(page.get("Items", []))
        return records

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), _BATCH):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[start : start + _BATCH]]
            pending: dict[str, Any] = {self.table: requests}
            for _ in range(5):
                response = self._db.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break


def _conversation(user_id: str, record: dict[str, Any]) -> Conversation:
    return Conversation(
        id=uuid.UUID(record[SORT_KEY]["S"].removeprefix("conv#")),
        user_id=user_id,
        title=record.get("title", {}).get("S"),
        created_at=datetime.fromisoformat(record["created_at"]["S"]),
        expires_at=datetime.fromtimestamp(int(record[TTL_ATTRIBUTE]["N"]), UTC),
        message_count=int(record.get("message_count", {}).get("N", "0")),
    )


def _message(conversation_id: uuid.UUID, record: dict[str, Any]) -> Message:
    message_id = record[SORT_KEY]["S"].rsplit("#", 1)[1]
    citations = json.loads(record["citations"]["S"]) if "citations" in record else []
    usage = json.loads(record["usage"]["S"]) if "usage" in record else None
    return Message(
        id=uuid.UUID(message_id),
        conversation_id=conversation_id,
        question=record["question"]["S"],
        status=MessageStatus(record["status"]["S"]),
        created_at=datetime.fromisoformat(record["created_at"]["S"]),
        answer=record.get("answer", {}).get("S"),
        citations=tuple(Citation(**c) for c in citations),
        stop_reason=StopReason(record["stop_reason"]["S"]) if "stop_reason" in record else None,
        usage=Usage(**usage) if usage else None,
        answered_at=_when(record.get("answered_at")),
        failure_reason=record.get("failure_reason", {}).get("S"),
        failure_message=record.get("failure_message", {}).get("S"),
    )
