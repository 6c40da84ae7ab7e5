"""The application role: what the service functions connect as (never the master user).

It may read and change rows, and read the schema version; it may not change the schema, create
objects, or touch other roles. On RDS it signs in with IAM database authentication (membership
of ``rds_iam``), so it has no password; elsewhere (local mode, tests) it has none either and
is reachable only where the server trusts local connections.

Roles belong to the server, not to one database: the role is created if missing and kept on
downgrade (another database of the same server may use it); its privileges here are revoked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

from runtime.topology import DATABASE_APP_ROLE

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROLE = DATABASE_APP_ROLE
DATA_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


def upgrade() -> None:
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
            END IF;
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
                GRANT rds_iam TO {ROLE};
            END IF;
        END
        $$
        """
    )
    op.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT {DATA_PRIVILEGES} ON ALL TABLES IN SCHEMA public TO {ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")
    # The schema version is the migrator's: the API only reads it (its health check).
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {ROLE}")
    # Tables and sequences later migrations create (as the migrating user) get the same grants.
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {DATA_PRIVILEGES} ON TABLES TO {ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {ROLE}"
    )


def downgrade() -> None:
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE {DATA_PRIVILEGES} ON TABLES FROM {ROLE}"
    )
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
