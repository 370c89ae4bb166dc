"""Other people's changes as they happen, on a project shared in PostgreSQL.

Every change of an image's labels, of its done state, and of who has it open is announced by the
database itself (triggers, ``NOTIFY`` on :data:`~labeler.core.schema.CHANGES_CHANNEL`; see
:mod:`labeler.core.schema`), whoever made it: the window, a CLI import, an auto-label child on
another machine. :class:`ChangeListener` holds a connection of its own that ``LISTEN``\\ s there,
so a window learns which images changed without polling the project; it then re-reads just those.
A SQLite project has no other writers to hear (:func:`listener_for` gives ``None``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labeler.core.pg import redact
from labeler.core.schema import CHANGES_CHANNEL

if TYPE_CHECKING:
    from labeler.core.store import Project


@dataclass(frozen=True)
class Change:
    """One announced change: ``table`` (``annotations``, ``images`` or ``presence``), the image
    it concerns (``None``: a window showing no image), the database user who made it, and the
    server process of the connection that made it (``writer``)."""

    table: str
    image_id: int | None
    author: str
    writer: int | None


def parse_change(payload: str) -> Change | None:
    """A notification's payload as a :class:`Change`; ``None`` for one that is not ours."""
    try:
        data = json.loads(payload)
        image_id = data.get("image_id")
        writer = data.get("writer")
        return Change(
            table=str(data["table"]),
            image_id=int(image_id) if image_id is not None else None,
            author=str(data.get("author") or ""),
            writer=int(writer) if writer is not None else None,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class ChangeListener:
    """A connection to the project's database that listens to its change channel."""

    def __init__(self, url: str) -> None:
        import psycopg

        try:
            self._conn: Any = psycopg.connect(url, autocommit=True)
            self._conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        except psycopg.Error as exc:
            reason = " ".join(redact(str(exc)).split())
            raise ConnectionError(f"cannot listen to {redact(url)}: {reason}") from None

    def wait(self, timeout: float) -> list[Change]:
        """The changes announced since the last call, each once (in order of arrival), waiting up
        to ``timeout`` seconds for the first. Raises :class:`ConnectionError` when the server
        went away."""
        import psycopg

        changes: list[Change] = []
        seen: set[Change] = set()
        try:
            for first in (True, False):
                for note in self._conn.notifies(timeout=timeout if first else 0.0, stop_after=1 if first else None):
                    change = parse_change(note.payload)
                    if change is not None and change not in seen:
                        seen.add(change)
                        changes.append(change)
                if not changes:
                    break
        except psycopg.Error as exc:
            raise ConnectionError(f"the change listener lost its connection: {' '.join(str(exc).split())}") from None
        return changes

    def close(self) -> None:
        self._conn.close()


def listener_for(project: Project) -> ChangeListener | None:
    """A listener on ``project``'s changes, or ``None`` for a SQLite project."""
    if project.url is None:
        return None
    return ChangeListener(project.url)
