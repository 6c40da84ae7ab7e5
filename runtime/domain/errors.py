"""The two kinds of failure the pipeline knows.

A permanent error fails the item with a stage and a reason and is never retried (a bad image, a
model answer that stays malformed). A transient error propagates so that the platform retries the
event (Lambda async retries, then the dead-letter queue).
"""


class PipelineError(Exception):
    """Base class of the pipeline's own errors."""


class PermanentError(PipelineError):
    """The item cannot be processed; retrying would give the same answer."""

    def __init__(self, reason: str, detail: str = "", *, stage: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.stage = stage
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def describe(self) -> str:
        return str(self)


class TransientError(PipelineError):
    """A dependency failed for now (timeout, throttling, 5xx); the event must be retried."""
