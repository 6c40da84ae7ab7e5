"""The one declaration of the service's functions: what runs, on what trigger, with what access.

The Pulumi program creates one Lambda (with its role, log group, trigger and permission) per entry,
and local mode wires the same handlers to the same triggers. Nothing else lists the functions.
This module is plain data: it imports nothing heavy, so the Pulumi program can read it.
"""

from dataclasses import dataclass, field
from enum import StrEnum

# S3 key layout. Every key starts with the tenant: users/<sub>/items/<item_id>/...
ORIGINAL_KEY_PATTERN = "users/*/items/*/original"
DERIVED_KEY_PATTERN = "users/*/items/*/derived/*"
USERS_PREFIX = "users/"

# The PostgreSQL role every function except the migrator connects as. The migrations create it
# with only the privileges the service needs (data, not schema); on AWS it signs in with IAM
# database authentication, so it has no password anywhere.
DATABASE_APP_ROLE = "collections_app"
# Connections one execution environment may hold: Lambda runs one invocation at a time per
# environment; the second connection covers a nested unit of work.
DB_CONNECTIONS_PER_ENVIRONMENT = 2


class EventType(StrEnum):
    """``detail-type`` of the events the pipeline publishes on its bus."""

    IMAGE_PROCESSED = "ImageProcessed"
    ITEM_ANALYZED = "ItemAnalyzed"
    ITEM_INDEXED = "ItemIndexed"
    ITEM_FAILED = "ItemFailed"
    ANALYSIS_REQUESTED = "AnalysisRequested"
    QUESTION_ASKED = "QuestionAsked"


class Resource(StrEnum):
    """What a function may touch. The Pulumi program turns each into least-privilege IAM."""

    DATABASE = "database"  # RDS connection as the application role (IAM database auth)
    DATABASE_ADMIN = "database:admin"  # as the master user, via the RDS-managed secret
    ORIGINALS = "s3:originals"  # users/*/items/*/original
    DERIVED = "s3:derived"  # users/*/items/*/derived/*
    DEAD_LETTERS = "sqs:deadLetters"  # the dead-letter queues of the event-triggered functions
    USER_OBJECTS = "s3:users"  # everything under users/ (list and delete)
    EVENTS = "events:bus"  # PutEvents on the pipeline bus
    ANTHROPIC_KEY = "ssm:anthropicApiKey"
    VOYAGE_KEY = "ssm:voyageApiKey"
    CURSOR_KEY = "ssm:cursorKey"  # the page cursors' MAC key, generated once per stack
    IDEMPOTENCY = "dynamodb:idempotency"
    CONVERSATIONS = "dynamodb:conversations"
    TAVILY_KEY = "ssm:tavilyApiKey"  # optional: granted only when the stack configures it


@dataclass(frozen=True)
class ObjectCreated:
    """S3 "Object Created" on the bucket (via EventBridge), for keys matching a wildcard."""

    key_pattern: str


@dataclass(frozen=True)
class OnEvent:
    """Events on the pipeline bus with one of these detail-types."""

    detail_types: tuple[EventType, ...]


@dataclass(frozen=True)
class Schedule:
    """An EventBridge schedule expression, e.g. ``rate(1 hour)``."""

    expression: str


@dataclass(frozen=True)
class DeadLetters:
    """Records from the dead-letter queues of every event-triggered function (an SQS event
    source on AWS): what exhausted its retries, so its item can be failed with a reason."""


@dataclass(frozen=True)
class Http:
    """The HTTP API. ``public_routes`` need no token; everything else is authorized."""

    public_routes: tuple[str, ...] = (
        "GET /health",
        "GET /version",
        "GET /openapi.json",
        "GET /docs",
        "GET /docs/static/{proxy+}",  # the docs page's script and styles
        # The web app: its page and fingerprinted assets, and the sign-in routes that give a
        # browser its token (they check the origin themselves; see runtime/api/routers/session)
        "GET /",
        "GET /assets/{proxy+}",
        "POST /auth/login",
        "POST /auth/refresh",
        "POST /auth/logout",
    )


@dataclass(frozen=True)
class Deploy:
    """Invoked once per deployment whose migration set changed (never by an event)."""


Trigger = ObjectCreated | OnEvent | Schedule | DeadLetters | Http | Deploy


@dataclass(frozen=True)
class RetryPolicy:
    """How an event is retried before it lands in the dead-letter queue (AWS and local alike)."""

    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 3600


@dataclass(frozen=True)
class Function:
    name: str
    handler: str  # dotted path of the Lambda handler: the image command
    trigger: Trigger
    memory_mb: int
    timeout_s: int
    reads: frozenset[Resource] = field(default_factory=frozenset)
    writes: frozenset[Resource] = field(default_factory=frozenset)
    retry: RetryPolicy = RetryPolicy()
    description: str = ""
    # Reserved concurrency: the most execution environments the function may run at once. It
    # bounds the database connections (see infra/database.py) and keeps one function from
    # starving the others of the account's concurrency.
    reserved_concurrency: int = 2
    # The runtime image it runs: a dependency group of pyproject.toml, installed on top of the
    # dependencies every function shares (images/Dockerfile), so each image carries what its
    # functions import. Functions naming the same group share one image.
    image: str = "core"

    @property
    def resources(self) -> frozenset[Resource]:
        return self.reads | self.writes


FUNCTIONS: tuple[Function, ...] = (
    Function(
        name="api",
        handler="runtime.handlers.api.handler",
        image="api",
        trigger=Http(),
        memory_mb=1024,
        timeout_s=29,
        reads=frozenset(
            {
                Resource.DATABASE,
                Resource.USER_OBJECTS,
                Resource.VOYAGE_KEY,
                Resource.CONVERSATIONS,
                Resource.CURSOR_KEY,
            }
        ),
        writes=frozenset(
            {Resource.DATABASE, Resource.USER_OBJECTS, Resource.EVENTS, Resource.CONVERSATIONS}
        ),
        description="HTTP API: items, uploads, search, conversations",
        reserved_concurrency=15,
    ),
    Function(
        name="thumbnail",
        handler="runtime.handlers.thumbnail.handler",
        image="thumbnail",
        trigger=ObjectCreated(key_pattern=ORIGINAL_KEY_PATTERN),
        memory_mb=2048,
        timeout_s=120,
        reads=frozenset({Resource.ORIGINALS, Resource.DATABASE}),
        writes=frozenset({Resource.DERIVED, Resource.DATABASE, Resource.EVENTS}),
        description="Thumbnails and the analysis-size derivative of an uploaded original",
        reserved_concurrency=5,
    ),
    Function(
        name="analyze",
        handler="runtime.handlers.analyze.handler",
        image="analyze",
        trigger=OnEvent(detail_types=(EventType.IMAGE_PROCESSED, EventType.ANALYSIS_REQUESTED)),
        memory_mb=1024,
        timeout_s=300,
        reads=frozenset(
            {Resource.DERIVED, Resource.DATABASE, Resource.ANTHROPIC_KEY, Resource.IDEMPOTENCY}
        ),
        writes=frozenset({Resource.DATABASE, Resource.EVENTS, Resource.IDEMPOTENCY}),
        description="Vision-model analysis of the analysis-size derivative",
        reserved_concurrency=5,
    ),
    Function(
        name="embed",
        handler="runtime.handlers.embed.handler",
        image="embed",
        trigger=OnEvent(detail_types=(EventType.ITEM_ANALYZED,)),
        memory_mb=1024,
        timeout_s=120,
        reads=frozenset({Resource.DATABASE, Resource.VOYAGE_KEY}),
        writes=frozenset({Resource.DATABASE, Resource.EVENTS}),
        description="Search document (full text + embedding) from the latest analysis",
        reserved_concurrency=5,
    ),
    # The assistant answers asynchronously: a tool loop can outlast API Gateway's 30 s
    # integration timeout, so the API stores the question and publishes QuestionAsked; this
    # function writes the answer, which the client polls. No retries: an answer is not paid for
    # twice, and a message that never ends is reported as timed out by the API.
    Function(
        name="assistant",
        handler="runtime.handlers.assistant.handler",
        image="assistant",
        trigger=OnEvent(detail_types=(EventType.QUESTION_ASKED,)),
        memory_mb=1024,
        timeout_s=180,
        reads=frozenset(
            {
                Resource.DATABASE,
                Resource.CONVERSATIONS,
                Resource.ANTHROPIC_KEY,
                Resource.VOYAGE_KEY,
                Resource.TAVILY_KEY,
            }
        ),
        writes=frozenset({Resource.CONVERSATIONS}),
        retry=RetryPolicy(maximum_retry_attempts=0, maximum_event_age_seconds=600),
        description="Assistant: answers a question with tools over the asker's collection",
        reserved_concurrency=3,
    ),
    Function(
        name="cleanup",
        handler="runtime.handlers.cleanup.handler",
        trigger=Schedule(expression="rate(1 hour)"),
        memory_mb=512,
        timeout_s=300,
        reads=frozenset({Resource.DATABASE, Resource.USER_OBJECTS}),
        writes=frozenset({Resource.DATABASE, Resource.USER_OBJECTS}),
        description="Fails abandoned items and removes unreferenced objects",
        reserved_concurrency=1,
    ),
    Function(
        name="deadletter",
        handler="runtime.handlers.deadletter.handler",
        trigger=DeadLetters(),
        memory_mb=512,
        timeout_s=60,
        reserved_concurrency=1,  # rare, small batches; keeps the database's connection budget
        reads=frozenset({Resource.DEAD_LETTERS, Resource.DATABASE}),
        writes=frozenset({Resource.DEAD_LETTERS, Resource.DATABASE, Resource.EVENTS}),
        description="Fails the item of every event that exhausted its retries",
    ),
    Function(
        name="migrate",
        handler="runtime.handlers.migrate.handler",
        image="migrate",
        trigger=Deploy(),
        memory_mb=512,
        timeout_s=300,
        reads=frozenset({Resource.DATABASE_ADMIN}),
        writes=frozenset({Resource.DATABASE_ADMIN}),
        description="Applies database migrations during a deployment",
        reserved_concurrency=1,
    ),
)


DATABASE_ACCESS = frozenset({Resource.DATABASE, Resource.DATABASE_ADMIN})


def uses_database(fn: Function) -> bool:
    """Whether ``fn`` connects to PostgreSQL (as the application role or as the master user)."""
    return bool(fn.resources & DATABASE_ACCESS)


def images() -> tuple[str, ...]:
    """The runtime images the functions run, each once, in declaration order."""
    return tuple(dict.fromkeys(fn.image for fn in FUNCTIONS))


def function(name: str) -> Function:
    for fn in FUNCTIONS:
        if fn.name == name:
            return fn
    raise KeyError(f"no function named {name!r} in the topology")


def event_functions() -> tuple[Function, ...]:
    """Functions invoked asynchronously by EventBridge (each needs a retry policy and a DLQ)."""
    return tuple(f for f in FUNCTIONS if isinstance(f.trigger, ObjectCreated | OnEvent | Schedule))


def dead_letter_consumer() -> Function:
    """The function that reads every event function's dead-letter queue."""
    (consumer,) = (f for f in FUNCTIONS if isinstance(f.trigger, DeadLetters))
    return consumer


def function_for_event(detail_type: str, source: str) -> Function | None:
    """The event-triggered function that an event of this type and source was meant for."""
    for fn in FUNCTIONS:
        trigger = fn.trigger
        if isinstance(trigger, ObjectCreated):
            matches = source == "aws.s3" and detail_type == "Object Created"
        elif isinstance(trigger, OnEvent):
            matches = detail_type in {str(t) for t in trigger.detail_types}
        else:
            matches = isinstance(trigger, Schedule) and detail_type == "Scheduled Event"
        if matches:
            return fn
    return None


PIPELINE_EVENT_SOURCE = "collections.pipeline"


def event_pattern(fn: Function, *, bucket: str, source: str = PIPELINE_EVENT_SOURCE) -> dict | None:
    """The EventBridge event pattern of an event-triggered function (None for other triggers).

    S3 events arrive on the account's default bus; pipeline events on the stack's own bus.
    """
    trigger = fn.trigger
    if isinstance(trigger, ObjectCreated):
        return {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [bucket]},
                "object": {"key": [{"wildcard": trigger.key_pattern}]},
            },
        }
    if isinstance(trigger, OnEvent):
        return {"source": [source], "detail-type": [str(t) for t in trigger.detail_types]}
    return None


def uses_default_bus(fn: Function) -> bool:
    """S3's EventBridge notifications can only be matched on the default bus."""
    return isinstance(fn.trigger, ObjectCreated)
