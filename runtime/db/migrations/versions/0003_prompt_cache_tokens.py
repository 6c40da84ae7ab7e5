"""Analyses record prompt-cache writes and reads apart from the uncached input tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("cache_creation_input_tokens", "cache_read_input_tokens")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("analyses", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    for name in COLUMNS:
        op.drop_column("analyses", name)
