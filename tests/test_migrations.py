"""Alembic migrations on an empty database: up, down, and up again."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, create_engine, inspect, text

from runtime.db import migrate
from runtime.local.postgres import LocalPostgres


def _indexes(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")
        )
        return {name: definition for name, definition in rows}


def test_migrations_up_down_up(postgres: LocalPostgres) -> None:
    postgres.drop_database("migrations_check")
    engine = create_engine(postgres.create_database("migrations_check", extensions=()))
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
        assert {
            "items",
            "analyses",
            "search_documents",
            "search_lexemes",
            "search_collections",
        } <= set(inspect(engine).get_table_names())

        indexes = _indexes(engine)
        assert (
            "USING hnsw (embedding vector_cosine_ops)"
            in indexes["search_documents_embedding_hnsw_idx"]
        )
        assert "USING gin (user_id, tsv)" in indexes["search_documents_user_tsv_idx"]
        assert "(user_id, created_at DESC, id DESC)" in indexes["items_user_created_idx"]
        assert "(user_id, category)" in indexes["search_documents_user_category_idx"]
        with engine.connect() as conn:
            dimension = conn.execute(
                text(
                    "SELECT atttypmod FROM pg_attribute "
                    "WHERE attrelid = 'search_documents'::regclass "
                    "AND attname = 'embedding'"
                )
            ).scalar()
            assert dimension == 384  # the configured (local) embedder's dimension
            unique = (
                conn.execute(
                    text(
                        "SELECT conname FROM pg_constraint "
                        "WHERE conrelid = 'analyses'::regclass AND contype = 'u'"
                    )
                )
                .scalars()
                .all()
            )
            assert set(unique) == {"analyses_item_version_key", "analyses_item_generation_key"}
        tenant_free = [
            name
            for name, definition in indexes.items()
            if "user_id" not in definition and not name.endswith("_pkey") and "alembic" not in name
        ]
        # the only indexes without the tenant: the ANN index (filtered during the scan), the
        # cross-tenant housekeeping index, and the unique constraints keyed by item
        assert sorted(tenant_free) == sorted(
            [
                "search_documents_embedding_hnsw_idx",
                "items_stuck_idx",
                "analyses_item_version_key",
                "analyses_item_generation_key",
            ]
        )

        migrate.downgrade(engine)
        assert migrate.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        assert migrate.is_current(engine)
    finally:
        engine.dispose()
        postgres.drop_database("migrations_check")


def test_the_application_role_changes_rows_never_the_schema(postgres: LocalPostgres) -> None:
    """The functions' role (created by the migrations) may read and write data, read the schema
    version, and nothing else: no DDL, no schema-version writes, no new roles."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ProgrammingError

    from runtime.topology import DATABASE_APP_ROLE

    postgres.drop_database("app_role_check")
    url = postgres.create_database("app_role_check", extensions=())
    admin = create_engine(url)
    # On AWS the role signs in with IAM tokens; here the server asks for a password (scram).
    app_password = uuid.uuid4().hex
    app = create_engine(make_url(url).set(username=DATABASE_APP_ROLE, password=app_password))
    try:
        migrate.upgrade(admin)
        with admin.begin() as conn:
            conn.execute(text(f"ALTER ROLE {DATABASE_APP_ROLE} PASSWORD '{app_password}'"))
        with app.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO items (id, user_id, status, original_key) "
                    "VALUES (gen_random_uuid(), 'u1', 'uploading', 'users/u1/items/x/original')"
                )
            )
            conn.execute(text("UPDATE items SET status = 'failed' WHERE user_id = 'u1'"))
            assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 1
            conn.execute(text("DELETE FROM items WHERE user_id = 'u1'"))
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        forbidden = [
            "CREATE TABLE intruder (id int)",
            "DROP TABLE items",
            "ALTER TABLE items ADD COLUMN intruder int",
            "TRUNCATE items",
            "UPDATE alembic_version SET version_num = 'x'",
            "CREATE ROLE intruder",
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        ]
        for statement in forbidden:
            with app.connect() as conn, conn.begin():
                try:
                    conn.execute(text(statement))
                except ProgrammingError as err:
                    assert "permission denied" in str(err) or "must be owner" in str(err), err
                else:
                    raise AssertionError(f"the application role may run: {statement}")
        migrate.downgrade(admin)
        with app.connect() as conn, conn.begin():
            try:
                conn.execute(text("SELECT 1 FROM alembic_version"))
            except ProgrammingError as err:
                assert "permission denied" in str(err)
            else:
                raise AssertionError("privileges survive the downgrade")
    finally:
        app.dispose()
        admin.dispose()
        postgres.drop_database("app_role_check")
