"""Items, analyses and search documents, with the tenant in every index that serves a query.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

from runtime.config import get_settings
from runtime.providers.factory import embedding_dimension

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")

    op.create_table(
        "items",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_stage", sa.String(32)),
        sa.Column("failure_reason", sa.Text),
        sa.Column("file_name", sa.String(512)),
        sa.Column("declared_content_type", sa.String(128)),
        sa.Column("content_type", sa.String(128)),
        sa.Column("byte_size", sa.BigInteger),
        sa.Column("etag", sa.String(128)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("original_key", sa.String(1024), nullable=False),
        sa.Column("derived_keys", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        *_timestamps(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("ready_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "status IN ('uploading','processing','analyzing','indexing','ready','failed')",
            name="items_status_valid",
        ),
    )
    # Listing: newest first per user (keyset pagination on created_at, id).
    op.create_index(
        "items_user_created_idx",
        "items",
        ["user_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index("items_user_status_idx", "items", ["user_id", "status"])
    # Housekeeping scans across tenants for items stuck in an early state.
    op.create_index(
        "items_stuck_idx",
        "items",
        ["updated_at"],
        postgresql_where=sa.text("status IN ('uploading','processing')"),
    )

    op.create_table(
        "analyses",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "item_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("result", postgresql.JSONB, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Integer, nullable=False, server_default="0"),
        *_timestamps(),
        sa.UniqueConstraint("item_id", "version", name="analyses_item_version_key"),
        sa.UniqueConstraint("item_id", "generation", name="analyses_item_generation_key"),
    )
    op.create_index(
        "analyses_user_item_idx", "analyses", ["user_id", "item_id", sa.text("version DESC")]
    )

    dimension = embedding_dimension(get_settings())
    op.create_table(
        "search_documents",
        sa.Column(
            "item_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("analysis_version", sa.Integer, nullable=False),
        sa.Column("category", sa.String(128)),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("tsv", postgresql.TSVECTOR, nullable=False),
        sa.Column("embedding", Vector(dimension), nullable=False),
        sa.Column("embedding_model", sa.String(128), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # Full text, tenant first (btree_gin lets the GIN index carry the user column).
    op.execute(
        "CREATE INDEX search_documents_user_tsv_idx ON search_documents USING gin (user_id, tsv)"
    )
    # Approximate nearest neighbours by cosine distance; the tenant filter is applied during the
    # scan (pgvector >= 0.8 iterative index scans), see runtime.domain.search.
    op.execute(
        "CREATE INDEX search_documents_embedding_hnsw_idx ON search_documents "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    op.create_index(
        "search_documents_user_category_idx", "search_documents", ["user_id", "category"]
    )


def downgrade() -> None:
    op.drop_table("search_documents")
    op.drop_table("analyses")
    op.drop_table("items")
    op.execute("DROP EXTENSION IF EXISTS btree_gin")
    op.execute("DROP EXTENSION IF EXISTS vector")
