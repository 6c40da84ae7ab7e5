"""The database engine: created lazily, once per process, reused across Lambda invocations.

Locally the URL comes from settings. On AWS it is built from the host, TLS required, and the
credentials are produced at connect time: the service functions sign in as the application role
(``db_user``) with an IAM authentication token (signed locally from the function's role, valid 15
minutes, so no password exists anywhere); the migrator reads the RDS-managed master secret,
cached, so a rotation is picked up by new connections. The pool is bounded by ``db_pool_size`` +
``db_max_overflow`` (see the README's "Database connections").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from runtime.config import Settings, get_settings

SECRET_MAX_AGE_SECONDS = 300


def database_url(settings: Settings) -> str | URL:
    if settings.database_url:
        return settings.database_url
    if not (settings.db_host and (settings.db_secret_arn or settings.db_user)):
        raise RuntimeError(
            "no database configured: set COLLECTIONS_DATABASE_URL, or COLLECTIONS_DB_HOST "
            "and COLLECTIONS_DB_USER (IAM authentication) or COLLECTIONS_DB_SECRET_ARN"
        )
    return URL.create(
        "postgresql+psycopg",
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
        query={"sslmode": "require"},
    )


def make_engine(settings: Settings) -> Engine:
    engine = create_engine(
        database_url(settings),
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=300,
    )
    if not settings.database_url:

        @event.listens_for(engine, "do_connect")
        def _inject_credentials(
            dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]
        ) -> None:
            cparams.update(credentials(settings))

    return engine


def credentials(settings: Settings) -> dict[str, str]:
    """User and password for a new connection on AWS."""
    if settings.db_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        secret = json.loads(
            parameters.get_secret(settings.db_secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
        )
        return {"user": secret["username"], "password": secret["password"]}
    from runtime.adapters.aws import client

    user = str(settings.db_user)
    token = client("rds").generate_db_auth_token(
        DBHostname=settings.db_host, Port=settings.db_port, DBUsername=user
    )
    return {"user": user, "password": token}


@cache
def get_engine() -> Engine:
    return make_engine(get_settings())


@cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any exception."""
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine() -> None:
    """Forget the cached engine (tests and local mode switch databases)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
