"""Shared fixtures: a real PostgreSQL + pgvector, a real AWS emulator endpoint (moto's server),
and the fake model API server. All started by the project's own code, once per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from runtime.domain.assistant import Toolbox
from runtime.local.cloud import EventPump, LocalCloud, bootstrap, start_emulator
from runtime.local.postgres import LocalPostgres, free_port
from runtime.providers.base import Embedder
from tests.fakes.model_server import FakeModelServer

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("COLLECTIONS_DATASETS", ROOT.parent / "shared" / "datasets"))

# boto3 needs credentials even for the emulator; make sure no real account is ever reached.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_NAMESPACE": "CollectionsTest",
}.items():
    os.environ[_name] = _value
for _name in ("ANTHROPIC_API_KEY", "VOYAGE_API_KEY", "AWS_PROFILE"):
    os.environ.pop(_name, None)


def dataset(*parts: str) -> Path:
    """A path under ../shared/datasets, or a skip with a clear message when it is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"evaluation data not found at {path} (set COLLECTIONS_DATASETS to its folder)")
    return path


def reset_process_state() -> None:
    """Forget per-process singletons (settings, clients, engine, providers) between tests."""
    from runtime.adapters import aws
    from runtime.config import get_settings
    from runtime.db.session import reset_engine
    from runtime.handlers import wiring
    from runtime.providers import factory

    get_settings.cache_clear()
    aws.client.cache_clear()
    wiring.pipeline.cache_clear()
    wiring.conversation_store.cache_clear()
    wiring.assistant_services.cache_clear()
    reset_engine()
    factory.reset()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path_factory.mktemp("postgres") / "data", ephemeral=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    process = start_emulator(port, log_path=str(log_path))
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def database_url(postgres: LocalPostgres) -> str:
    """A database migrated to head once per session; tests empty its tables (see ``env``)."""
    from runtime.db.migrate import upgrade

    url = postgres.create_database("collections_test")
    os.environ["COLLECTIONS_DATABASE_URL"] = url
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database, for tests that query it directly."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def embedding_dimension(engine: Engine) -> int:
    """The dimension of the search documents' embedding column (vector typmod = dimension)."""
    with engine.connect() as conn:
        dimension = conn.execute(
            text(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'search_documents'::regclass "
                "AND attname = 'embedding'"
            )
        ).scalar_one()
    return int(dimension)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on empty tables; everything it writes is rolled back afterwards."""
    from runtime.config import get_settings

    get_settings.cache_clear()
    with Session(engine) as session:
        session.execute(text("DELETE FROM items"))  # cascades to analyses and documents
        yield session
        session.rollback()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, emulator: str) -> Iterator[LocalCloud]:
    """A fresh stack on the emulator (own bucket, bus, queues, table) and empty tables."""
    cloud = bootstrap(emulator, stack=f"t{uuid.uuid4().hex[:10]}")
    for name, value in cloud.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLLECTIONS_DATABASE_URL", database_url)
    monkeypatch.setenv("COLLECTIONS_ANALYZER", "local")
    monkeypatch.setenv("COLLECTIONS_EMBEDDER", "local")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE search_documents, analyses, items CASCADE"))
    engine.dispose()
    reset_process_state()
    yield cloud
    reset_process_state()


@pytest.fixture
def claude(
    env: LocalCloud, model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> FakeModelServer:
    """Route analysis to the fake Anthropic API (through the real SDK)."""
    model_server.reset()
    monkeypatch.setenv("COLLECTIONS_ANALYZER", "anthropic")
    monkeypatch.setenv("COLLECTIONS_ANTHROPIC_BASE_URL", model_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    reset_process_state()
    return model_server


@pytest.fixture
def pump(env: LocalCloud) -> EventPump:
    return EventPump(env, retry_delay_seconds=0)


def no_database() -> AbstractContextManager[Session]:
    raise AssertionError("a tool reached the database")


def no_embedder() -> Embedder:
    raise AssertionError("a tool embedded a query")


def unreachable_toolbox(user_id: str = "alice") -> Toolbox:
    """The assistant's tools for ``user_id``, failing the test if they reach the database or the
    embedder (for tool calls refused before, and for answers that call no tool)."""
    return Toolbox(user_id, sessions=no_database, embedder=no_embedder)
