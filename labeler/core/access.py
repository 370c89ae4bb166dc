"""Who may do what in a team's project: three rights, held as PostgreSQL group roles.

A project in PostgreSQL database ``DB`` has three group roles (NOLOGIN), ``labeler_DB_owner``,
``labeler_DB_annotator`` and ``labeler_DB_reviewer``; a database user holds a right by being a
member of one of them (``labeler access``). The database enforces the rights through ordinary
table and column GRANTs, so a client that skips the window's checks is refused all the same:

- **reviewer**: reads everything; writes nothing of the project (only its own presence record and
  the image sizes read from the files, which are facts about the files, not labels);
- **annotator**: the reviewer's rights, plus the labels: annotations (add, edit, delete, accept and
  reject proposals, auto-label's proposals), images' done state, uncertainty and ignore region,
  the edit log, adding and renaming categories; not deleting a category, adding images, adding
  or activating a model version (training makes one);
- **owner**: every privilege on every table.

The user who made the tables (and any superuser) can do everything without a role. The roles and
their grants are made by ``labeler init`` and by the migration of an older project when its user
may create roles; otherwise by the first ``labeler access ... grant`` of a user who may.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

RIGHTS: tuple[str, ...] = ("owner", "annotator", "reviewer")

_TABLES = ("images", "categories", "model_versions", "annotations", "edit_log", "labeler_schema", "presence")

#: The privileges of each right beyond reading every table, as GRANT clauses ``(privileges, table)``.
_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "reviewer": (
        ("UPDATE (width, height, content_hash)", "images"),
        ("INSERT, UPDATE, DELETE", "presence"),
    ),
    "annotator": (
        ("UPDATE (width, height, content_hash, done, uncertainty, ignore_rle)", "images"),
        ("INSERT, UPDATE", "categories"),
        ("INSERT, UPDATE, DELETE", "annotations"),
        ("INSERT", "edit_log"),
        ("INSERT, UPDATE, DELETE", "presence"),
    ),
    "owner": tuple(("ALL", table) for table in _TABLES if table != "labeler_schema"),
}


class AccessSetupError(Exception):
    """The roles cannot be made or changed by this database user; the message says why."""


@dataclass(frozen=True)
class Holder:
    """A database user and the right it holds on the project (``creator`` for the tables' owner,
    ``superuser`` for a superuser: both may do everything)."""

    user: str
    right: str


def role_name(database: str, right: str) -> str:
    """The group role of ``right`` on the project in ``database`` (at most 63 bytes, PostgreSQL's limit)."""
    if right not in RIGHTS:
        raise ValueError(f"{right!r} is not a right (one of {', '.join(RIGHTS)})")
    name = f"labeler_{database}_{right}"
    if len(name.encode("utf-8")) <= 63:
        return name
    digest = hashlib.sha1(database.encode("utf-8")).hexdigest()[:8]
    return f"labeler_{database.encode('utf-8')[:30].decode('utf-8', 'ignore')}_{digest}_{right}"


def _connection(project: Any) -> Any:
    """The project's PostgreSQL connection (core's own store); a project on SQLite has no roles."""
    if project.url is None:
        raise AccessSetupError(f"{project.root}: roles need a project in PostgreSQL (this one is a SQLite folder)")
    return project._conn


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _database(conn: Any) -> str:
    return str(conn.execute("SELECT current_database()").fetchone()[0])


def _tables(conn: Any) -> list[str]:
    """The project's tables that exist in this database (older schemas lack some)."""
    return [t for t in _TABLES if conn.execute("SELECT to_regclass(?) IS NOT NULL", (t,)).fetchone()[0]]


def may_create_roles(conn: Any) -> bool:
    row = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def install(conn: Any) -> bool:
    """Make the project's group roles if missing and (re)grant their privileges on every table of
    the project; returns False, changing nothing, when this user may not create roles. Runs inside
    the caller's transaction (a migration's, or ``grant``'s)."""
    if not may_create_roles(conn):
        return False
    database = _database(conn)
    tables = _tables(conn)
    for right in RIGHTS:
        role = role_name(database, right)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {_ident(role)} NOLOGIN")
        for table in tables:
            conn.execute(f"GRANT SELECT ON {table} TO {_ident(role)}")
        for privileges, table in _GRANTS[right]:
            if table in tables:
                conn.execute(f"GRANT {privileges} ON {table} TO {_ident(role)}")
        sequences = "ALL" if right == "owner" else "USAGE, SELECT, UPDATE"
        if right != "reviewer":
            conn.execute(f"GRANT {sequences} ON ALL SEQUENCES IN SCHEMA public TO {_ident(role)}")
    return True


def _existing_role(conn: Any, user: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (user,)).fetchone() is None:
        raise AccessSetupError(f"there is no database role named {user!r} (make it first: CREATE ROLE ... LOGIN)")
    if any(user == role_name(_database(conn), r) for r in RIGHTS):
        raise AccessSetupError(f"{user!r} is one of the project's group roles, not a user")


def grant(project: Any, user: str, right: str) -> None:
    """Give database role ``user`` the ``right`` on ``project`` (and no other right of it)."""
    conn = _connection(project)
    if right not in RIGHTS:
        raise AccessSetupError(f"{right!r} is not a right: give owner, annotator or reviewer")
    _existing_role(conn, user)
    conn.execute("BEGIN")
    try:
        if not install(conn) and not _installed(conn):
            raise AccessSetupError(
                f"this project has no roles yet and {conn.user!r} may not create them "
                "(a user with CREATEROLE, or a superuser, must grant the first right)"
            )
        database = _database(conn)
        for other in RIGHTS:
            if other != right:
                conn.execute(f"REVOKE {_ident(role_name(database, other))} FROM {_ident(user)}")
        conn.execute(f"GRANT {_ident(role_name(database, right))} TO {_ident(user)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def revoke(project: Any, user: str) -> list[str]:
    """Take every right on ``project`` from ``user``; returns the rights it held directly."""
    conn = _connection(project)
    _existing_role(conn, user)
    held = [h.right for h in holders(project) if h.user == user and h.right in RIGHTS]
    database = _database(conn)
    conn.execute("BEGIN")
    try:
        for right in held:
            conn.execute(f"REVOKE {_ident(role_name(database, right))} FROM {_ident(user)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return held


def _installed(conn: Any) -> bool:
    role = role_name(_database(conn), "owner")
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (role,)).fetchone() is not None


def holders(project: Any) -> list[Holder]:
    """Everyone with a right on ``project``: the tables' creator, the members of each group role
    (directly or through another role), ordered by right then name."""
    conn = _connection(project)
    database = _database(conn)
    out: list[Holder] = []
    creator = conn.execute(
        "SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = to_regclass('images')"
    ).fetchone()
    if creator is not None:
        out.append(Holder(str(creator[0]), "creator"))
    for right in RIGHTS:
        rows = conn.execute(
            "SELECT m.rolname FROM pg_roles m WHERE m.rolcanlogin AND m.oid IN ("
            " WITH RECURSIVE inside(oid) AS ("
            "  SELECT member FROM pg_auth_members WHERE roleid = (SELECT oid FROM pg_roles WHERE rolname = ?)"
            "  UNION SELECT a.member FROM pg_auth_members a JOIN inside ON a.roleid = inside.oid)"
            " SELECT oid FROM inside) ORDER BY m.rolname",
            (role_name(database, right),),
        ).fetchall()
        out += [Holder(str(r[0]), right) for r in rows]
    return out


def require(project: Any, right: str, doing: str, *, table: str, privilege: str) -> None:
    """Refuse at once (:class:`~labeler.core.store.AccessError`) what the database would refuse at
    the end, e.g. a training run whose version could not be stored; nothing to check on SQLite."""
    if project.url is None:
        return
    if not project._conn.execute("SELECT has_table_privilege(?, ?)", (table, privilege)).fetchone()[0]:
        from labeler.core.store import AccessError

        raise AccessError(f"{project.author} needs the {right} right to {doing}")
