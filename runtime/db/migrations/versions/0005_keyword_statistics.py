"""Per-user keyword statistics, kept by the database as search documents change.

``search_lexemes``: for each user and lexeme, how many of the user's search documents contain
it (its document frequency); ``search_collections``: how many search documents the user has.
Keyword search reads its IDF from them instead of counting matches with a scan per query term.
Statement-level triggers on ``search_documents`` apply each statement's changes (inserts,
re-analyses, deletes, cascaded deletes of items) as one sorted batch of increments, so that
concurrent writers lock the rows they share in the same order; TRUNCATE clears both. A lexeme
whose count falls to 0 keeps its row (it reads as absent).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# One statement's changes: +1 per (user, lexeme) of each new row, -1 per old row.
_CHANGES = {
    "INSERT": "SELECT user_id, tsv, 1 AS change FROM new_rows",
    "UPDATE": "SELECT user_id, tsv, 1 AS change FROM new_rows "
    "UNION ALL SELECT user_id, tsv, -1 FROM old_rows",
    "DELETE": "SELECT user_id, tsv, -1 AS change FROM old_rows",
}


def _apply_changes(changes: str) -> str:
    return f"""
        INSERT INTO search_lexemes AS s (user_id, lexeme, documents)
        SELECT c.user_id, l.lexeme, sum(c.change)
        FROM ({changes}) c CROSS JOIN LATERAL unnest(tsvector_to_array(c.tsv)) AS l(lexeme)
        GROUP BY c.user_id, l.lexeme
        HAVING sum(c.change) <> 0
        ORDER BY c.user_id, l.lexeme
        ON CONFLICT (user_id, lexeme) DO UPDATE SET documents = s.documents + EXCLUDED.documents;
        INSERT INTO search_collections AS s (user_id, documents)
        SELECT c.user_id, sum(c.change) FROM ({changes}) c
        GROUP BY c.user_id HAVING sum(c.change) <> 0 ORDER BY c.user_id
        ON CONFLICT (user_id) DO UPDATE SET documents = s.documents + EXCLUDED.documents;
    """


_APPLY = (
    "CREATE FUNCTION search_statistics_apply() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
    + "\n".join(
        f"{'IF' if n == 0 else 'ELSIF'} TG_OP = '{op_}' THEN {_apply_changes(changes)}"
        for n, (op_, changes) in enumerate(_CHANGES.items())
    )
    + "\nEND IF;\nRETURN NULL;\nEND\n$$"
)

_CLEAR = """
CREATE FUNCTION search_statistics_clear() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_lexemes;
    DELETE FROM search_collections;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE search_lexemes (
            user_id varchar(128) NOT NULL,
            lexeme text COLLATE "C" NOT NULL,
            documents integer NOT NULL,
            PRIMARY KEY (user_id, lexeme)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE search_collections (
            user_id varchar(128) PRIMARY KEY,
            documents integer NOT NULL
        )
        """
    )
    op.execute(_APPLY)
    op.execute(_CLEAR)
    op.execute(
        "CREATE TRIGGER search_statistics_insert AFTER INSERT ON search_documents "
        "REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION search_statistics_apply()"
    )
    op.execute(
        "CREATE TRIGGER search_statistics_update AFTER UPDATE ON search_documents "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION search_statistics_apply()"
    )
    op.execute(
        "CREATE TRIGGER search_statistics_delete AFTER DELETE ON search_documents "
        "REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION search_statistics_apply()"
    )
    op.execute(
        "CREATE TRIGGER search_statistics_truncate AFTER TRUNCATE ON search_documents "
        "FOR EACH STATEMENT EXECUTE FUNCTION search_statistics_clear()"
    )
    # The documents already indexed.
    op.execute(
        """
        INSERT INTO search_lexemes (user_id, lexeme, documents)
        SELECT d.user_id, l.lexeme, count(*)
        FROM search_documents d CROSS JOIN LATERAL unnest(tsvector_to_array(d.tsv)) AS l(lexeme)
        GROUP BY d.user_id, l.lexeme
        """
    )
    op.execute(
        "INSERT INTO search_collections (user_id, documents) "
        "SELECT user_id, count(*) FROM search_documents GROUP BY user_id"
    )


def downgrade() -> None:
    for trigger in ("insert", "update", "delete", "truncate"):
        op.execute(f"DROP TRIGGER search_statistics_{trigger} ON search_documents")
    op.execute("DROP FUNCTION search_statistics_apply()")
    op.execute("DROP FUNCTION search_statistics_clear()")
    op.execute("DROP TABLE search_collections")
    op.execute("DROP TABLE search_lexemes")
