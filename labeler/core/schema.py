"""The project database schema and its migrations.

``PRAGMA user_version`` holds the schema version. Each entry of :data:`MIGRATIONS` takes a
database from version ``i`` to ``i + 1``; opening an older project runs the missing steps in one
transaction. Never edit a released step: add a new one.
"""

from __future__ import annotations

import sqlite3
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the first schema.
    """
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        width INTEGER,
        height INTEGER,
        content_hash TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        added REAL NOT NULL
    );
    CREATE TABLE categories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        color TEXT NOT NULL
    );
    CREATE TABLE model_versions (
        id INTEGER PRIMARY KEY,
        plugin TEXT NOT NULL,
        settings TEXT NOT NULL,
        categories TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        parent INTEGER REFERENCES model_versions(id),
        metrics TEXT NOT NULL,
        data TEXT NOT NULL,
        created REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids never reused: undo restores a deleted label under its old id
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        category_id INTEGER NOT NULL REFERENCES categories(id),
        kind TEXT NOT NULL CHECK (kind IN ('box', 'polygon', 'mask')),
        geometry TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('proposed', 'accepted', 'rejected')),
        model_version INTEGER REFERENCES model_versions(id),
        score REAL,
        iscrowd INTEGER NOT NULL DEFAULT 0,
        group_id INTEGER,
        attributes TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX annotations_image ON annotations(image_id);
    """,
    # 1 -> 2: per-image uncertainty for active learning, an ignore region, and the edit log.
    """
    ALTER TABLE images ADD COLUMN uncertainty REAL;
    ALTER TABLE images ADD COLUMN ignore_rle TEXT;
    CREATE TABLE edit_log (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        action TEXT NOT NULL,
        image_id INTEGER,
        annotation_id INTEGER,
        kind TEXT,
        seconds REAL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX edit_log_image ON edit_log(image_id);
    """,
    # 2 -> 3: "next most uncertain" and the done count are index steps, not scans of a million rows.
    """
    CREATE INDEX images_uncertain ON images(done, uncertainty DESC, id);
    """,
    # 3 -> 4: teams: who made each edit (the database user), and a revision per annotation so
    # that saving a copy someone else changed since is refused instead of overwriting their edit.
    """
    ALTER TABLE edit_log ADD COLUMN author TEXT;
    ALTER TABLE annotations ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    """,
    # 4 -> 5: teams: who has which image open (a record per window, kept fresh by a heartbeat and
    # gone past ``expires``); on PostgreSQL this step also makes the project's roles
    # (:mod:`labeler.core.access`), as every step there re-grants them.
    """
    CREATE TABLE presence (
        session TEXT PRIMARY KEY,
        image_id INTEGER REFERENCES images(id) ON DELETE CASCADE,
        author TEXT,
        expires REAL NOT NULL
    );
    """,
    # 5 -> 6: teams: "who has this image open" is an index step; on PostgreSQL this step also
    # makes every change announce itself (POSTGRESQL_STEPS).
    """
    CREATE INDEX presence_image ON presence(image_id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

CHANGES_CHANNEL = "labeler_changes"
"""The PostgreSQL channel on which every change of an image's labels, done state or presence is
announced (``NOTIFY``), as JSON ``{"table": ..., "image_id": ..., "author": ..., "writer": ...}``
(``writer``: the server process of the connection that made it):
:mod:`labeler.core.live` listens to it."""

POSTGRESQL_STEPS: dict[int, tuple[str, ...]] = {
    # after step 5 -> 6: triggers that NOTIFY each changed image (delivered at commit; PostgreSQL
    # folds identical notifications of one transaction, so a bulk import sends one per image)
    5: (
        f"""
        CREATE OR REPLACE FUNCTION labeler_announce() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed JSONB;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                changed := to_jsonb(OLD);
            ELSE
                changed := to_jsonb(NEW);
            END IF;
            -- TG_ARGV[0]: the column holding the image's id ("id" in images, else "image_id")
            PERFORM pg_notify('{CHANGES_CHANNEL}', json_build_object(
                'table', TG_TABLE_NAME, 'image_id', (changed ->> TG_ARGV[0])::BIGINT,
                'author', session_user, 'writer', pg_backend_pid())::text);
            RETURN NULL;
        END $$
        """,
        "DROP TRIGGER IF EXISTS annotations_announce ON annotations",
        "CREATE TRIGGER annotations_announce AFTER INSERT OR UPDATE OR DELETE ON annotations "
        "FOR EACH ROW EXECUTE FUNCTION labeler_announce('image_id')",
        "DROP TRIGGER IF EXISTS images_announce ON images",
        "CREATE TRIGGER images_announce AFTER UPDATE OF done ON images FOR EACH ROW EXECUTE FUNCTION labeler_announce('id')",
        "DROP TRIGGER IF EXISTS presence_announce ON presence",
        "CREATE TRIGGER presence_announce AFTER INSERT OR UPDATE OR DELETE ON presence "
        "FOR EACH ROW EXECUTE FUNCTION labeler_announce('image_id')",
    ),
}
"""Statements that only PostgreSQL runs, after the shared step of the same index (each whole:
a function body holds semicolons)."""


class SchemaError(Exception):
    """The database is from a newer labeler, or not a labeler project."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to :data:`SCHEMA_VERSION`; returns the version it had."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:  # up to date: no write lock needed
        return version
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"this project was written by a newer labeler (schema {version}, "
            f"this one knows up to {SCHEMA_VERSION}); update labeler to open it"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"this project was written by a newer labeler (schema {version}, this one knows up to {SCHEMA_VERSION})"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def migrate_postgresql(conn: Any) -> int:
    """:func:`migrate` for a PostgreSQL database (a :class:`labeler.core.pg.PgConnection`): the
    version is kept in table ``labeler_schema``; the same steps run, translated, under an
    advisory lock so that two machines opening a new project at once migrate it once, and the
    project's roles are (re)granted on the tables (when this user may create roles)."""
    from labeler.core import access
    from labeler.core.pg import translate_ddl

    version = _postgresql_version(conn)
    if version == SCHEMA_VERSION:  # up to date: nothing to create (a reviewer may create nothing)
        return version
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"this project was written by a newer labeler (schema {version}, "
            f"this one knows up to {SCHEMA_VERSION}); update labeler to open it"
        )
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(7253)")
        conn.execute("CREATE TABLE IF NOT EXISTS labeler_schema (version INTEGER NOT NULL)")
        version = _postgresql_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"this project was written by a newer labeler (schema {version}, "
                f"this one knows up to {SCHEMA_VERSION}); update labeler to open it"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in translate_ddl(MIGRATIONS[step]).split(";"):
                if statement.strip():
                    conn.execute(statement)
            for statement in POSTGRESQL_STEPS.get(step, ()):
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM labeler_schema")
            conn.execute("INSERT INTO labeler_schema(version) VALUES (?)", (SCHEMA_VERSION,))
            access.install(conn)  # the roles, granted on the tables as they are now
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _postgresql_version(conn: Any) -> int:
    if not conn.execute("SELECT to_regclass('labeler_schema') IS NOT NULL").fetchone()[0]:
        return 0
    row = conn.execute("SELECT version FROM labeler_schema").fetchone()
    return int(row[0]) if row is not None else 0
