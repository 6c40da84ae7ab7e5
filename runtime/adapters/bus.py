"""EventBridge as the domain's EventPublisher."""

from __future__ import annotations

from typing import Any

from runtime.domain.errors import TransientError
from runtime.events import BusEvent


class EventBridgePublisher:
    def __init__(self, client: Any, bus_name: str, source: str) -> None:
        self._events = client
        self.bus_name = bus_name
        self.source = source

    def publish(self, event: BusEvent) -> None:
        response = self._events.put_events(
            Entries=[
                {
                    "Source": self.source,
                    "DetailType": str(event.detail_type),
                    "Detail": event.model_dump_json(),
                    "EventBusName": self.bus_name,
                    "Resources": [],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise TransientError(
                f"EventBridge refused {event.detail_type}: {entry.get('ErrorCode')} "
                f"{entry.get('ErrorMessage')}"
            )
