"""The project store: one SQLite database (WAL) per project folder.

A project is a folder holding ``labeler.db`` and a ``models/`` folder. Image paths are stored
relative to the project folder, so moving the folder (with its images beside it) keeps it working.

Every public method that writes is its own transaction (``BEGIN IMMEDIATE``); several can be
grouped with :meth:`Project.transaction`, which commits all or nothing. Two processes may write to
the same project at once: SQLite serialises them, and a busy database is waited for (up to
:data:`BUSY_TIMEOUT_S` seconds); past that the operation fails with :class:`ProjectBusyError`
("another program holds the project"), having changed nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import numpy as np

from labeler.core.annotation import Annotation, Category, ImageRecord, Kind, State
from labeler.core.images import IMAGE_SUFFIXES, content_hash, read_image, read_image_size
from labeler.core.natural import natural_key
from labeler.core.pg import PgConnection, integrity_errors, is_database_url, privilege_errors, redact
from labeler.core.resources import class_palette
from labeler.core.schema import SchemaError, migrate, migrate_postgresql

DB_NAME = "labeler.db"
MODELS_DIR = "models"
BUSY_TIMEOUT_S = 60.0
"""How long a write waits for another program's write to end before it gives up with
:class:`ProjectBusyError` (read when a project is opened)."""
Progress = Callable[[int, int], None]

#: The colours new categories get in turn (``resources/palette.json``).
PALETTE: tuple[tuple[int, int, int], ...] = class_palette()


#: What either backend raises when a write breaks a constraint (a foreign key, a unique name).
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, *integrity_errors())


class LogEntry(TypedDict, total=False):
    """What a line of the edit log may say besides its action (all optional)."""

    image_id: int | None
    annotation_id: int | None
    kind: str | None
    seconds: float | None
    detail: dict[str, Any] | None


PRESENCE_TTL = 60.0
"""Seconds a window's "I have this image open" record lasts unless renewed."""


class ProjectError(Exception):
    """A project operation that cannot be done; the message says why, for the user."""


class StaleAnnotationError(ProjectError):
    """The annotation was changed by someone else since this copy of it was read; nothing was saved."""


class AccessError(ProjectError):
    """The database refused the edit: this user lacks the right to it (``labeler access``)."""


_PRIVILEGE_ERRORS = privilege_errors()
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _needs(right: str, doing: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A store method that PostgreSQL may refuse for want of ``right`` (``owner`` or
    ``annotator``): its refusal becomes an :class:`AccessError` saying so in one line, e.g.
    "bob needs the owner right to delete a category"; nothing was written."""

    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        if not _PRIVILEGE_ERRORS:
            return method

        @wraps(method)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(*args, **kwargs)
            except _PRIVILEGE_ERRORS:
                who = getattr(args[0], "author", None) or "this user"
                raise AccessError(f"{who} needs the {right} right to {doing}") from None

        return checked

    return wrap


class ProjectBusyError(ProjectError):
    """Another program kept the project's database locked for longer than we wait."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _busy_error(root: Path, seconds: float) -> ProjectBusyError:
    return ProjectBusyError(
        f"another program holds the project {root} (its database has been locked for over {seconds:g} s); "
        "nothing was changed: close the other program or wait for it to finish, then try again"
    )


@dataclass(frozen=True)
class ModelVersion:
    """One trained model of one plugin.

    ``checkpoint`` is a path relative to the project folder (a ``.safetensors`` file with a
    ``.json`` of metadata beside it). ``categories`` lists the category ids the model's class
    outputs stand for, in output order. ``metrics`` are on the fixed validation split.
    ``data`` says what it was trained on (image ids, counts, seconds).
    """

    plugin: str
    settings: dict[str, Any]
    categories: tuple[int, ...]
    checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    parent: int | None = None
    id: int | None = None
    created: float | None = None
    active: bool = False

    @property
    def images_trained_on(self) -> int | None:
        """How many images the final weights learned from: the training split, plus the
        validation images when the run ended with a refit (``data["refit"]["images"]``);
        ``None`` when ``data`` does not say."""
        refit = self.data.get("refit")
        if isinstance(refit, dict) and isinstance(refit.get("images"), int):
            return int(refit["images"])
        train = self.data.get("train_images")
        return len(train) if isinstance(train, list) else None


def _color_to_text(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color)
    return f"#{r:02x}{g:02x}{b:02x}"


def _color_from_text(text: str) -> tuple[int, int, int]:
    return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))


def _stored_geometry(ann: Annotation) -> tuple[str, Any]:
    """``(json text, rle)``: how the annotation's geometry is stored, and for a mask the normalised
    RLE that text holds (``ann.rle`` otherwise), so a caller need not parse the text back."""
    if ann.kind is Kind.BOX:
        return json.dumps(list(ann.box_xywh or ())), ann.rle
    if ann.kind is Kind.POLYGON:
        return json.dumps([p.reshape(-1).tolist() for p in ann.polygons or ()]), ann.rle
    from labeler.core.geometry import normalize_rle

    rle = normalize_rle(ann.rle or {})
    return _mask_text(rle), rle


_COCO_ALPHABET = "".join(chr(c) for c in range(ord("0"), ord("o") + 1))
"""The characters of COCO's compressed counts; json.dumps escapes only the backslash among them."""


def _mask_text(rle: dict[str, Any]) -> str:
    """The stored text of a compressed RLE with ``str`` counts (as :func:`normalize_rle` makes
    it): ``json.dumps(rle)``, written directly where the counts are all of COCO's alphabet."""
    counts = rle["counts"]
    if counts and not counts.strip(_COCO_ALPHABET):
        counts = counts.replace("\\", "\\\\")  # as json.dumps escapes it
        return f'{{"size": [{rle["size"][0]}, {rle["size"][1]}], "counts": "{counts}"}}'
    return json.dumps(rle)


_KINDS = {k.value: k for k in Kind}  # dict lookups: ~4x cheaper than Kind(value) when reading 100k rows
_STATES = {s.value: s for s in State}


def _row_to_annotation(row: sqlite3.Row) -> Annotation:
    kind = _KINDS[row["kind"]]
    geometry = json.loads(row["geometry"])
    geo: dict[str, Any] = {}
    if kind is Kind.BOX:
        geo["box_xywh"] = tuple(geometry)
    elif kind is Kind.POLYGON:
        geo["polygons"] = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in geometry)
    else:
        geo["rle"] = geometry
    return Annotation(
        id=row["id"],
        image_id=row["image_id"],
        category_id=row["category_id"],
        kind=kind,
        state=_STATES[row["state"]],
        model_version=row["model_version"],
        score=row["score"],
        iscrowd=bool(row["iscrowd"]),
        group_id=row["group_id"],
        attributes={} if row["attributes"] == "{}" else json.loads(row["attributes"]),  # most have none
        created=row["created"],
        updated=row["updated"],
        revision=row["revision"],
        **geo,
    )


def _restamped(ann: Annotation, **changes: Any) -> Annotation:
    """``ann`` with fields that need no check changed (its id, image id, times, its RLE as
    normalised after the check): what ``dataclasses.replace`` gives, without running the
    validation again, which costs more than the insert itself when 100,000 labels come in."""
    new = object.__new__(Annotation)
    vars(new).update(vars(ann))
    vars(new).update(changes)
    return new


def _row_to_image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        id=row["id"],
        path=row["path"],
        width=row["width"],
        height=row["height"],
        done=bool(row["done"]),
        content_hash=row["content_hash"],
        uncertainty=row["uncertainty"],
    )


def _row_to_model_version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        id=row["id"],
        plugin=row["plugin"],
        settings=json.loads(row["settings"]),
        categories=tuple(json.loads(row["categories"])),
        checkpoint=row["checkpoint"],
        parent=row["parent"],
        metrics=json.loads(row["metrics"]),
        data=json.loads(row["data"]),
        created=row["created"],
        active=bool(row["active"]),
    )


@dataclass(frozen=True)
class ImageColumns:
    """Every image of a project as columns, in id order: ``paths`` is their UTF-8 paths end to end,
    path ``k`` being ``paths[ends[k - 1]:ends[k]]`` (``ends[-1] == len(paths)``)."""

    ids: np.ndarray
    paths: bytes
    ends: np.ndarray
    done: np.ndarray


class Project:
    """An open project. Thread-safe (one connection behind a lock); cheap to open again."""

    def __init__(self, root: Path, conn: Any, *, url: str | None = None) -> None:
        self.root = root
        self.url = url
        """The PostgreSQL URL (``None`` for a project folder on SQLite)."""
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        self._busy_seconds = BUSY_TIMEOUT_S
        self.author = conn.user if url is not None else _login_name()
        """Who this connection's edits are logged as: the database user on PostgreSQL, the
        login name on SQLite."""

    # ---- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: str | os.PathLike[str], *, exist_ok: bool = False, image_root: str | os.PathLike[str] | None = None
    ) -> Project:
        """Make a new project folder (or open the one there, with ``exist_ok``).

        ``root`` may be a PostgreSQL URL (``postgresql://host/db``): the project then lives in
        that database, and ``image_root`` (required) is the folder the image paths are relative to
        on this machine."""
        if is_database_url(root):
            return cls._connect_postgresql(str(root), image_root=image_root, create=True, exist_ok=exist_ok)
        root = Path(root)
        if (root / DB_NAME).exists():
            if not exist_ok:
                raise ProjectError(f"{root} already holds a project")
            return cls.open(root)
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
        (root / MODELS_DIR).mkdir(exist_ok=True)
        return cls._connect(root)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, image_root: str | os.PathLike[str] | None = None) -> Project:
        """Open the project in folder ``path`` (or whose database file is ``path``, or the
        PostgreSQL database at URL ``path``, its images under ``image_root``)."""
        if is_database_url(path):
            return cls._connect_postgresql(str(path), image_root=image_root, create=False, exist_ok=True)
        path = Path(path)
        root = path.parent if path.name == DB_NAME else path
        if not (root / DB_NAME).is_file():
            raise ProjectError(f"{root} is not a labeler project (no {DB_NAME}); create one with 'labeler init'")
        try:
            (root / MODELS_DIR).mkdir(exist_ok=True)
        except OSError:  # a read-only project still opens; training will say it cannot write
            pass
        return cls._connect(root)

    @classmethod
    def _connect_postgresql(
        cls, url: str, *, image_root: str | os.PathLike[str] | None, create: bool, exist_ok: bool
    ) -> Project:
        if image_root is None:
            raise ProjectError(
                f"{redact(url)}: a project in PostgreSQL needs the image root of this machine (--image-root)"
            )
        root = Path(image_root)
        if not root.is_dir():
            raise ProjectError(f"{root}: the image root is not a folder")
        try:
            conn = PgConnection(url)
        except ConnectionError as exc:
            raise ProjectError(str(exc)) from None
        try:
            known = conn.execute("SELECT to_regclass('labeler_schema') IS NOT NULL").fetchone()[0]
            if known and create and not exist_ok:
                raise ProjectError(f"{redact(url)} already holds a project")
            if not known and not create:
                raise ProjectError(f"{redact(url)} is not a labeler project; create one with 'labeler init'")
            migrate_postgresql(conn)
        except SchemaError:
            conn.close()
            raise
        except ProjectError:
            conn.close()
            raise
        except _PRIVILEGE_ERRORS:
            user = conn.user
            conn.close()
            raise AccessError(
                f"{user} holds no right on the project at {redact(url)} "
                f"(an owner gives one with: labeler access PROJECT grant {user} reviewer|annotator|owner)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any driver error means the database is not a project; said in one line
            conn.close()
            reason = " ".join(redact(str(exc)).split())
            raise ProjectError(f"{redact(url)}: not a usable project database ({reason})") from None
        (root / MODELS_DIR).mkdir(exist_ok=True)
        return cls(root.resolve(), conn, url=url)

    def open_again(self) -> Project:
        """Another connection to this same project (another program's view of it)."""
        if self.url is not None:
            return Project.open(self.url, image_root=self.root)
        return Project.open(self.root)

    @property
    def backend(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return "sqlite" if self.url is None else "postgresql"

    @staticmethod
    def is_project(path: str | os.PathLike[str]) -> bool:
        path = Path(path)
        return (path / DB_NAME).is_file() or (path.name == DB_NAME and path.is_file())

    @classmethod
    def _connect(cls, root: Path) -> Project:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                root / DB_NAME, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            if _is_busy(exc):
                raise _busy_error(root, BUSY_TIMEOUT_S) from None
            raise ProjectError(f"{root / DB_NAME}: not a readable project database ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise ProjectError(f"{root / DB_NAME}: not a readable project database ({exc})") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return cls(root.resolve(), conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def models_dir(self) -> Path:
        return self.root / MODELS_DIR

    # ---- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all. Re-entrant.

        The outermost level is a ``BEGIN IMMEDIATE`` transaction (it waits for other writers);
        inner levels are savepoints, so an error caught inside undoes only that inner block.
        """
        with self._lock:
            depth = self._depth
            try:
                self._conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT level{depth}")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise _busy_error(self.root, self._busy_seconds) from None
                raise
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth = depth
                if depth == 0:
                    self._conn.execute("ROLLBACK")
                else:
                    self._conn.execute(f"ROLLBACK TO level{depth}")
                    self._conn.execute(f"RELEASE level{depth}")
                raise
            self._depth = depth
            try:
                self._conn.execute("COMMIT" if depth == 0 else f"RELEASE level{depth}")
            except sqlite3.OperationalError as exc:
                if depth == 0 and _is_busy(exc):
                    self._conn.execute("ROLLBACK")
                    raise _busy_error(self.root, self._busy_seconds) from None
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                rows: list[sqlite3.Row] = self._conn.execute(sql, params).fetchall()
                return rows
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise _busy_error(self.root, self._busy_seconds) from None
                raise

    # ---- images ---------------------------------------------------------------------------

    def relative_path(self, path: str | os.PathLike[str], *, _folders: dict[str, str] | None = None) -> str:
        """How the store names an image file: relative to the project folder, POSIX style.

        The project's root is stored resolved, so a file reached through a symlinked folder is
        looked at through its real folder too: images inside the project are stored relative to it
        and move with it. Images outside the project are stored relative all the same
        (``../photos/a.jpg``). ``_folders`` caches each folder's relative form over many calls.
        """
        folder, name = os.path.split(os.path.abspath(path))
        folders = _folders if _folders is not None else {}
        rel_folder = folders.get(folder)
        if rel_folder is None:
            rel_folder = folders[folder] = self._relative_folder(folder)
        return f"{rel_folder}/{name}" if rel_folder else name

    def _relative_folder(self, folder: str) -> str:
        """``folder`` (absolute) relative to the root, POSIX style; ``""`` for the root itself."""
        candidates = [folder, os.path.realpath(folder)]
        for candidate in candidates:
            try:
                rel = os.path.relpath(candidate, self.root)
            except ValueError:  # another drive on Windows
                continue
            if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
                return "" if rel == os.curdir else Path(rel).as_posix()
        try:
            return Path(os.path.relpath(folder, self.root)).as_posix()
        except ValueError:
            return Path(folder).as_posix()

    @_needs("owner", "add images")
    def add_images(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        sizes: Sequence[tuple[int, int] | None] | None = None,
        progress: Progress | None = None,
        _folders: dict[str, str] | None = None,
    ) -> list[int]:
        """Add image files (without decoding them); returns their ids, old ones included.

        ``sizes`` may give each new image's ``(width, height)`` as its header says (``None``: not
        known), checked as :meth:`set_image_size` checks them; an image already stored keeps its
        own. ``_folders`` is :meth:`relative_path`'s cache, for a caller adding one image at a time.
        """
        paths = list(paths)
        folders: dict[str, str] = _folders if _folders is not None else {}
        return self._add_relative([self.relative_path(p, _folders=folders) for p in paths], sizes, progress)

    def _add_relative(
        self, rels: list[str], sizes: Sequence[tuple[int, int] | None] | None, progress: Progress | None
    ) -> list[int]:
        """:meth:`add_images` for paths already in the store's relative form."""
        now = time.time()
        undecodable = next((rel for rel in rels if not _is_utf8(rel)), None)
        if undecodable is not None:
            raise ProjectError(f"{undecodable!r}: the file's name is not UTF-8 text; rename it to add it")
        sized = sizes is not None
        if sizes is None:
            sizes = [None] * len(rels)
        elif len(sizes) != len(rels):
            raise ProjectError(f"{len(sizes)} image sizes for {len(rels)} images")
        for size in sizes:
            if size is not None:
                _check_image_size(*size)
        chunk = 20_000
        with self.transaction():
            top = int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM images").fetchone()[0])
            for i in range(0, len(rels), chunk):  # many rows per statement: a million in seconds
                rows = zip(rels[i : i + chunk], sizes[i : i + chunk], strict=True)
                if self.url is None:  # one statement over a JSON array: a third of executemany's time
                    if sized:
                        values = "json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')"
                        payload = json.dumps([(rel, *size) if size else (rel,) for rel, size in rows])
                    else:
                        values, payload = "value, NULL, NULL", json.dumps(rels[i : i + chunk])
                    self._conn.execute(
                        f"INSERT OR IGNORE INTO images(path, width, height, done, added) SELECT {values}, 0, ? "
                        "FROM json_each(?) ORDER BY key",
                        (now, payload),
                    )
                else:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO images(path, width, height, done, added) VALUES (?, ?, ?, 0, ?)",
                        (
                            (rel, None, None, now) if size is None else (rel, size[0], size[1], now)
                            for rel, size in rows
                        ),
                    )
                if progress is not None:
                    progress(min(i + chunk, len(rels)), len(rels))
            last, added = self._conn.execute(
                "SELECT COALESCE(MAX(id), 0), COUNT(*) FROM images WHERE id > ?", (top,)
            ).fetchone()
            if self.url is None and int(added) == len(rels) and int(last) == top + len(rels):
                return list(range(top + 1, top + 1 + len(rels)))  # all new (no other writer), in order
            new = {str(r[0]): int(r[1]) for r in self._conn.execute("SELECT path, id FROM images WHERE id > ?", (top,))}
            ids = [
                new.get(rel) or int(self._conn.execute("SELECT id FROM images WHERE path = ?", (rel,)).fetchone()[0])
                for rel in rels
            ]
        return ids

    @_needs("owner", "add images")
    def add_folder(
        self, folder: str | os.PathLike[str], *, recursive: bool = True, progress: Progress | None = None
    ) -> list[int]:
        """Add every image file under ``folder`` (by name; files are opened only when shown)."""
        if not os.path.isdir(folder):
            raise ProjectError(f"{folder} is not a folder")
        rels = [
            f"{sub}/{name}" if sub else name
            for current, names in image_files_by_folder(os.path.abspath(folder), recursive=recursive)
            for sub in [self._relative_folder(current)]
            for name in names
        ]
        rels.sort(key=natural_key)  # the relative paths share one prefix: the order of the whole paths
        return self._add_relative(rels, None, progress)

    def images(self, *, done: bool | None = None) -> list[ImageRecord]:
        if done is None:
            rows = self._query("SELECT * FROM images ORDER BY id")
        else:
            rows = self._query("SELECT * FROM images WHERE done = ? ORDER BY id", (int(done),))
        return [_row_to_image(r) for r in rows]

    def image_columns(self) -> ImageColumns:
        """Every image's id, path and done flag as columns (one pass over the table, no row objects):
        what the image list of a million images needs, in well under a second."""
        if self.url is None:
            ids_text, blob, lengths_text, done_text = self._query(
                "SELECT group_concat(id), CAST(group_concat(path, '') AS BLOB),"
                " group_concat(length(CAST(path AS BLOB))), group_concat(done, '') FROM images"
            )[0]
        else:  # PostgreSQL: string_agg, in id order; the paths come back as text
            ids_text, paths_text, lengths_text, done_text = self._query(
                "SELECT string_agg(id::text, ',' ORDER BY id), string_agg(path, '' ORDER BY id),"
                " string_agg(octet_length(path)::text, ',' ORDER BY id), string_agg(done::text, '' ORDER BY id)"
                " FROM images"
            )[0]
            blob = b"" if paths_text is None else str(paths_text).encode("utf-8")
        if ids_text is None:
            empty = np.zeros(0, dtype=np.int64)
            return ImageColumns(ids=empty, paths=b"", ends=empty, done=np.zeros(0, dtype=bool))
        ids = np.fromstring(ids_text, dtype=np.int64, sep=",")
        ends = np.cumsum(np.fromstring(lengths_text, dtype=np.int64, sep=","))
        done = np.frombuffer(done_text.encode("ascii"), dtype=np.uint8) != ord("0")
        if len(ids) != len(ends) or len(ids) != len(done) or (len(ends) and int(ends[-1]) != len(blob)):
            raise ProjectError("the images table could not be read as columns (its rows changed while read)")
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):  # a table scan is in id order; just in case
            order = np.argsort(ids, kind="stable")
            starts = ends - np.fromstring(lengths_text, dtype=np.int64, sep=",")
            chunks = [blob[int(starts[k]) : int(ends[k])] for k in order]
            blob = b"".join(chunks)
            ends = np.cumsum([len(c) for c in chunks], dtype=np.int64)
            ids, done = ids[order], done[order]
        return ImageColumns(ids=ids, paths=bytes(blob), ends=ends, done=done)

    def labelled_image_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """``(with_proposals, with_accepted)``: sorted ids of the images holding a pending proposal,
        and of those holding an accepted label (an aggregate over the annotations, not the images)."""
        rows = self._query(
            "SELECT image_id, MAX(CASE WHEN state = 'proposed' THEN 1 ELSE 0 END), "
            "MAX(CASE WHEN state = 'accepted' THEN 1 ELSE 0 END) FROM annotations GROUP BY image_id"
        )  # CASE, not MAX(state = ...): PostgreSQL has no MAX of booleans
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        table = np.array([tuple(r) for r in rows], dtype=np.int64).reshape(-1, 3)
        return table[table[:, 1] > 0, 0], table[table[:, 2] > 0, 0]

    def annotation_watermark(self) -> tuple[int, float]:
        """``(highest annotation id, latest update time)``: what :meth:`images_changed_since` compares to."""
        top, updated = self._query("SELECT MAX(id), MAX(updated) FROM annotations")[0]
        return int(top or 0), float(updated or 0.0)

    def images_changed_since(self, watermark: tuple[int, float]) -> list[int]:
        """Ids of the images whose annotations were added or changed after ``watermark``
        (:meth:`annotation_watermark`), and of those holding a pending proposal (a proposal
        replaced by nothing leaves no row behind to find)."""
        top, updated = watermark
        rows = self._query(
            "SELECT DISTINCT image_id FROM annotations WHERE id > ? OR updated > ? OR state = 'proposed'",
            (top, updated),
        )
        return [int(r[0]) for r in rows]

    def next_uncertain_image(
        self, *, below: tuple[float, int] | None, exclude: int | None = None
    ) -> ImageRecord | None:
        """The first not-done auto-labelled image after ``below`` = ``(uncertainty, id)`` in the order
        most uncertain first, ties by id (from the top when ``below`` is None); ``exclude`` is
        skipped. One step of an index (``images_uncertain``), not a scan of every image."""
        skip = exclude if exclude is not None else -1
        if below is None:
            rows = self._query(
                "SELECT * FROM images WHERE done = 0 AND uncertainty IS NOT NULL AND id != ? "
                "ORDER BY uncertainty DESC, id LIMIT 1",
                (skip,),
            )
        else:
            value, image_id = below
            rows = self._query(
                "SELECT * FROM images WHERE done = 0 AND uncertainty IS NOT NULL AND id != ? "
                "AND (uncertainty < ? OR (uncertainty = ? AND id > ?)) "
                "ORDER BY uncertainty DESC, id LIMIT 1",
                (skip, value, value, image_id),
            )
        return _row_to_image(rows[0]) if rows else None

    def uncertain_image_count(self) -> int:
        """How many not-done images carry an uncertainty (the length of the "next most uncertain" walk)."""
        return int(self._query("SELECT COUNT(*) FROM images WHERE done = 0 AND uncertainty IS NOT NULL")[0][0])

    def image_count(self, *, done: bool | None = None) -> int:
        if done is None:
            return int(self._query("SELECT COUNT(*) FROM images")[0][0])
        return int(self._query("SELECT COUNT(*) FROM images WHERE done = ?", (int(done),))[0][0])

    def image(self, image_id: int) -> ImageRecord:
        rows = self._query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise ProjectError(f"no image with id {image_id}")
        return _row_to_image(rows[0])

    def find_image(self, path: str | os.PathLike[str]) -> ImageRecord | None:
        """The image stored for this file path, or ``None``."""
        rows = self._query("SELECT * FROM images WHERE path = ?", (self.relative_path(path),))
        return _row_to_image(rows[0]) if rows else None

    def find_images_by_name(self, name: str) -> list[ImageRecord]:
        """Images whose file name (last path part) is ``name``."""
        rows = self._query(
            "SELECT * FROM images WHERE path = ? OR path LIKE ? ESCAPE '\\' ORDER BY id",
            (name, "%/" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")),
        )
        return [_row_to_image(r) for r in rows]

    def image_ids_by_path(self) -> dict[str, int]:
        """Every image's stored path (relative, POSIX) to its id, in one query and without building
        a record per image (how an import looks up many names at once)."""
        return {str(r[0]): int(r[1]) for r in self._query("SELECT path, id FROM images")}

    def image_path(self, image_id: int) -> Path:
        """Absolute path of the image file."""
        return (self.root / self.image(image_id).path).resolve()

    def image_size(self, image_id: int) -> tuple[int, int]:
        """``(width, height)`` in pixels; read from the file header the first time, then stored."""
        record = self.image(image_id)
        if record.width is not None and record.height is not None:
            return record.width, record.height
        width, height = read_image_size(self.root / record.path)
        with self.transaction():
            self._conn.execute("UPDATE images SET width = ?, height = ? WHERE id = ?", (width, height, image_id))
        return width, height

    def read_image(self, image_id: int, *, reduce: int = 1) -> np.ndarray:
        """Decode the image as ``(h, w, 3)`` uint8 RGB; records its size and hash on first read."""
        record = self.image(image_id)
        path = self.root / record.path
        pixels = read_image(path, reduce=reduce)
        if record.content_hash is None and reduce == 1:
            with self.transaction():
                self._conn.execute(
                    "UPDATE images SET width = ?, height = ?, content_hash = ? WHERE id = ?",
                    (pixels.shape[1], pixels.shape[0], content_hash(path), image_id),
                )
        return pixels

    def image_sizes(self, image_ids: Iterable[int]) -> dict[int, tuple[int, int] | None]:
        """:meth:`image_size` of each of these images (``None`` where its header cannot be read),
        the stored sizes read in one query per thousand images rather than one each."""
        from labeler.core.images import ImageError

        ids = list(dict.fromkeys(image_ids))
        stored = self._stored_sizes(ids)
        out: dict[int, tuple[int, int] | None] = {}
        for image_id in ids:
            if image_id in stored:
                out[image_id] = stored[image_id]
                continue
            try:  # not stored yet: from the file's header, then stored
                out[image_id] = self.image_size(image_id)
            except (ImageError, OSError):
                out[image_id] = None
        return out

    def _stored_sizes(self, image_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """``(width, height)`` of those of these images whose size is stored."""
        out: dict[int, tuple[int, int]] = {}
        for k in range(0, len(image_ids), 1000):
            part = image_ids[k : k + 1000]
            rows = self._query(
                f"SELECT id, width, height FROM images WHERE id IN ({','.join('?' * len(part))})"
                " AND width IS NOT NULL AND height IS NOT NULL",
                part,
            )
            out.update((int(r[0]), (int(r[1]), int(r[2]))) for r in rows)
        return out

    @_needs("annotator", "record an image's size")
    def set_image_size(self, image_id: int, width: int, height: int) -> None:
        """Record the image's size; sizes that are not positive whole numbers within the pixel
        limit are a :class:`ProjectError` (they would break every export)."""
        _check_image_size(width, height)
        with self.transaction():
            self._conn.execute("UPDATE images SET width = ?, height = ? WHERE id = ?", (width, height, image_id))

    def set_done(self, image_id: int, done: bool = True) -> None:
        self.set_done_many([image_id], done)

    @_needs("annotator", "mark images done")
    def set_done_many(self, image_ids: Sequence[int], done: bool = True) -> None:
        """Mark these images done (or not) in one transaction, each with its line in the edit log."""
        now, action = time.time(), "done" if done else "undone"
        with self.transaction():
            self._conn.executemany("UPDATE images SET done = ? WHERE id = ?", [(int(done), i) for i in image_ids])
            self._conn.executemany(
                "INSERT INTO edit_log(time, action, image_id, annotation_id, kind, seconds, detail, author)"
                " VALUES (?, ?, ?, NULL, NULL, NULL, '{}', ?)",
                [(now, action, i, self.author) for i in image_ids],
            )

    @_needs("annotator", "change an image's ignore region")
    def set_ignore_mask(self, image_id: int, rle: dict[str, Any] | None) -> None:
        """Pixels of the image that carry no label (e.g. CamVid's "unlabelled"); ``None`` clears."""
        from labeler.core.geometry import normalize_rle

        text = json.dumps(normalize_rle(rle)) if rle is not None else None
        with self.transaction():
            self._conn.execute("UPDATE images SET ignore_rle = ? WHERE id = ?", (text, image_id))

    # ---- presence: who has which image open (teams) ----------------------------------------

    def set_presence(self, session: str, image_id: int | None, *, ttl: float = PRESENCE_TTL) -> None:
        """Say that the window ``session`` (a name unique to it) shows ``image_id`` (``None``:
        none) for the next ``ttl`` seconds; until then the others list it (:meth:`others_present`).
        A window renews it while it is open (a heartbeat) and clears it when it closes; a crashed
        one's record simply expires. Every right may do this, a reviewer's included."""
        now = time.time()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO presence(session, image_id, author, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session) DO UPDATE SET image_id = excluded.image_id, author = excluded.author, "
                "expires = excluded.expires",
                (session, image_id, self.author, now + ttl),
            )
            self._conn.execute("DELETE FROM presence WHERE expires < ?", (now - ttl,))

    def clear_presence(self, session: str) -> None:
        """The window ``session`` closed (or left the project)."""
        with self.transaction():
            self._conn.execute("DELETE FROM presence WHERE session = ?", (session,))

    def others_present(self, session: str) -> dict[int, tuple[str, ...]]:
        """``{image id: the users showing it}`` of every window but ``session`` whose record has
        not expired."""
        rows = self._query(
            "SELECT image_id, author FROM presence WHERE session <> ? AND expires > ? AND image_id IS NOT NULL",
            (session, time.time()),
        )
        out: dict[int, set[str]] = {}
        for image_id, author in rows:
            out.setdefault(int(image_id), set()).add(str(author or "someone"))
        return {i: tuple(sorted(names)) for i, names in out.items()}

    @property
    def connection_id(self) -> int | None:
        """The PostgreSQL server process of this connection (what the change announcements name
        as their writer, so a window can skip its own); ``None`` on SQLite."""
        return self._conn.backend_pid if isinstance(self._conn, PgConnection) else None

    def ignore_mask(self, image_id: int) -> dict[str, Any] | None:
        """The image's ignore region as compressed RLE, or ``None``."""
        rows = self._query("SELECT ignore_rle FROM images WHERE id = ?", (image_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None

    # ---- categories -----------------------------------------------------------------------

    def categories(self) -> list[Category]:
        rows = self._query("SELECT * FROM categories ORDER BY id")
        return [Category(r["id"], r["name"], _color_from_text(r["color"])) for r in rows]

    def category(self, category_id: int) -> Category:
        rows = self._query("SELECT * FROM categories WHERE id = ?", (category_id,))
        if not rows:
            raise ProjectError(f"no category with id {category_id}")
        r = rows[0]
        return Category(r["id"], r["name"], _color_from_text(r["color"]))

    def category_by_name(self, name: str) -> Category | None:
        rows = self._query("SELECT * FROM categories WHERE name = ?", (name,))
        return Category(rows[0]["id"], rows[0]["name"], _color_from_text(rows[0]["color"])) if rows else None

    @_needs("annotator", "add a category")
    def add_category(self, name: str, *, color: Sequence[int] | None = None) -> Category:
        """Add a category; its id is the next free integer and never changes."""
        name = _category_name(name)
        with self.transaction():
            if self.category_by_name(name) is not None:
                raise ProjectError(f"there is already a category named {name!r}")
            count = int(self._conn.execute("SELECT COUNT(*) FROM categories").fetchone()[0])
            rgb = tuple(color) if color is not None else PALETTE[count % len(PALETTE)]
            cur = self._conn.execute("INSERT INTO categories(name, color) VALUES (?, ?)", (name, _color_to_text(rgb)))
            category_id = int(cur.lastrowid or 0)
        return self.category(category_id)

    def ensure_category(self, name: str) -> Category:
        """The category named ``name``, added if missing."""
        with self.transaction():
            found = self.category_by_name(name.strip())
            return found if found is not None else self.add_category(name)

    @_needs("annotator", "rename a category")
    def rename_category(self, category_id: int, name: str) -> Category:
        name = _category_name(name)
        self.category(category_id)  # raises for an unknown id
        with self.transaction():
            other = self.category_by_name(name)
            if other is not None and other.id != category_id:
                raise ProjectError(f"there is already a category named {name!r}")
            self._conn.execute("UPDATE categories SET name = ? WHERE id = ?", (name, category_id))
        return self.category(category_id)

    @_needs("annotator", "recolour a category")
    def recolor_category(self, category_id: int, color: Sequence[int]) -> Category:
        with self.transaction():
            self._conn.execute("UPDATE categories SET color = ? WHERE id = ?", (_color_to_text(color), category_id))
        return self.category(category_id)

    @_needs("owner", "delete a category")
    def delete_category(self, category_id: int) -> int:
        """Delete a category and every label of it (as CVAT deletes a label's shapes with it), in
        one transaction; returns how many labels went. Model versions that knew it keep their
        outputs as they were (their proposals of it are deleted with the rest)."""
        category = self.category(category_id)  # raises for an unknown id
        with self.transaction():
            gone = self._conn.execute("DELETE FROM annotations WHERE category_id = ?", (category_id,)).rowcount
            self._conn.execute("DELETE FROM categories WHERE id = ?", (category_id,))
            self._log("delete_category", detail={"category": category_id, "name": category.name, "labels": gone})
        return int(gone)

    # ---- annotations ----------------------------------------------------------------------

    def annotations(
        self,
        image_id: int | None = None,
        *,
        states: Iterable[State] | None = None,
        kinds: Iterable[Kind] | None = None,
    ) -> list[Annotation]:
        """Annotations, optionally of one image, in some states and kinds, ordered by id."""
        where: list[str] = []
        params: list[Any] = []
        if image_id is not None:
            where.append("image_id = ?")
            params.append(image_id)
        if states is not None:
            values = [State(s).value for s in states]
            where.append(f"state IN ({','.join('?' * len(values))})")
            params.extend(values)
        if kinds is not None:
            values = [Kind(k).value for k in kinds]
            where.append(f"kind IN ({','.join('?' * len(values))})")
            params.extend(values)
        sql = "SELECT * FROM annotations" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        return [_row_to_annotation(r) for r in self._query(sql, params)]

    def annotation(self, annotation_id: int) -> Annotation:
        rows = self._query("SELECT * FROM annotations WHERE id = ?", (annotation_id,))
        if not rows:
            raise ProjectError(f"no annotation with id {annotation_id}")
        return _row_to_annotation(rows[0])

    def annotation_counts(self) -> dict[int, dict[str, int]]:
        """Per image id: how many annotations it has in each state."""
        out: dict[int, dict[str, int]] = {}
        for r in self._query("SELECT image_id, state, COUNT(*) AS n FROM annotations GROUP BY image_id, state"):
            out.setdefault(r["image_id"], {})[r["state"]] = r["n"]
        return out

    def accepted_proposal_counts(self) -> dict[str, int]:
        """Per annotation kind (``'box'``, ``'polygon'``, ``'mask'``): how many proposals were
        accepted unchanged, i.e. annotations in state ``accepted`` still tagged with the model
        version that proposed them (editing a proposal clears its model version). Kinds with no
        such annotation are absent."""
        rows = self._query(
            "SELECT kind, COUNT(*) AS n FROM annotations"
            " WHERE state = 'accepted' AND model_version IS NOT NULL GROUP BY kind"
        )
        return {str(r["kind"]): int(r["n"]) for r in rows}

    def add_annotation(self, ann: Annotation, *, log: bool = True) -> Annotation:
        """Store a new annotation (or bring back a deleted one with its old ``id``)."""
        return self.add_annotations([ann], log=log)[0]

    @_needs("annotator", "add labels")
    def add_annotations(self, anns: Iterable[Annotation], *, log: bool = True) -> list[Annotation]:
        return self._insert_annotations(anns, log=log)

    def _insert_annotations(
        self, anns: Iterable[Annotation], *, log: bool, image_id: int | None = None
    ) -> list[Annotation]:
        """Insert ``anns`` (onto ``image_id`` when given, else each onto its own image), returning
        them as stored, with their ids, without reading them back."""
        from labeler.core.images import max_pixels_limit

        now = time.time()
        anns = list(anns)  # counted (the new ids), then written
        stored: list[Annotation] = []
        rows: list[tuple[Any, ...]] = []
        sizes: dict[int, tuple[int | None, int | None]] = {}
        limit = max_pixels_limit()
        sql = (
            "INSERT INTO annotations(id, image_id, category_id, kind, geometry, state, model_version,"
            " score, iscrowd, group_id, attributes, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        with self.transaction():
            issued, next_id = self._new_annotation_ids(sum(1 for a in anns if a.id is None))
            # the stored sizes of the images in one query; the others are looked for one by one
            sizes.update(self._stored_sizes(list({a.image_id for a in anns} if image_id is None else {image_id})))
            for ann in anns:
                target = ann.image_id if image_id is None else image_id
                checked = self._checked(ann, target, sizes, drop_outside=image_id is not None, max_pixels=limit)
                if checked is None:  # a model's proposal with nothing on the image: not kept
                    continue
                ann = checked
                geometry, rle = _stored_geometry(ann)
                created = ann.created or now
                attributes = json.dumps(ann.attributes) if ann.attributes else "{}"
                if ann.id is None:
                    if issued is not None:
                        new_id = next(issued)
                    else:
                        new_id, next_id = next_id, next_id + 1
                else:  # a deleted label coming back (undo): its old id, which a new one never takes
                    new_id = ann.id
                    next_id = max(next_id, new_id + 1)
                rows.append(
                    (
                        new_id,
                        target,
                        ann.category_id,
                        ann.kind.value,
                        geometry,
                        ann.state.value,
                        ann.model_version,
                        ann.score,
                        int(ann.iscrowd),
                        ann.group_id,
                        attributes,
                        created,
                        now,
                    )
                )
                stored.append(
                    _restamped(ann, id=new_id, image_id=target, rle=rle, created=created, updated=now, revision=1)
                )
            self._conn.executemany(sql, rows)
            if self.url is not None and next_id > 0:  # an old id came back: new ones stay above it
                self._conn.execute(
                    "SELECT setval('annotations_id_seq', GREATEST(?, (SELECT last_value FROM annotations_id_seq)))",
                    (next_id - 1,),
                )
            if log:
                self._conn.executemany(
                    "INSERT INTO edit_log(time, action, image_id, annotation_id, kind, seconds, detail, author)"
                    " VALUES (?, 'add', ?, ?, ?, NULL, '{}', ?)",
                    [
                        (now, a.image_id, a.id, a.kind.value, self.author)
                        for a in stored
                        if a.state is not State.PROPOSED
                    ],
                )
        return stored

    def _new_annotation_ids(self, wanted: int) -> tuple[Iterator[int] | None, int]:
        """``(issued, next_id)``: how ``wanted`` new annotations of this transaction get their ids.
        On SQLite ``issued`` is ``None`` and they take ``next_id, next_id + 1, ...``, the ids
        AUTOINCREMENT would give them, in order, so that one executemany writes them all (the write
        lock of the transaction keeps them ours). On PostgreSQL ``issued`` yields them and
        ``next_id`` is 0: other machines insert too, and the sequence hands out ids no one else
        gets, without a table lock (a lock taken after this transaction's first write deadlocked
        two writers)."""
        if self.url is None:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'annotations'").fetchone()
            top = self._conn.execute("SELECT MAX(id) FROM annotations").fetchone()[0]
            return None, max(int(row[0]) if row else 0, int(top or 0)) + 1
        if not wanted:
            return iter([]), 0
        rows = self._conn.execute("SELECT nextval('annotations_id_seq') FROM generate_series(1, ?)", (wanted,))
        return iter([int(r[0]) for r in rows]), 0

    @_needs("annotator", "add labels")
    def add_masks(
        self,
        *,
        image_ids: Sequence[int],
        category_ids: Sequence[int],
        rles: Sequence[dict[str, Any]],
        iscrowd: Sequence[bool],
        log: bool = True,
    ) -> list[int]:
        """Store new accepted human mask labels given as columns (mask ``k`` is ``rles[k]`` on
        image ``image_ids[k]``, of category ``category_ids[k]``), returning their ids: the rows
        :meth:`add_annotations` writes for the same labels as :class:`Annotation` objects, through
        the same door (each RLE whole and of its image's size, else a :class:`ProjectError` and
        nothing stored), without building an object per label (how an import stores 100,000 masks)."""
        from labeler.core.geometry import checked_mask
        from labeler.core.images import ImageError, max_pixels_limit

        count = len(rles)
        if not (len(image_ids) == len(category_ids) == len(iscrowd) == count):
            raise ProjectError("add_masks needs as many image ids, category ids and crowd flags as masks")
        now = time.time()
        limit = max_pixels_limit()
        rows: list[tuple[Any, ...]] = []
        with self.transaction():
            issued, next_id = self._new_annotation_ids(count)
            sizes: dict[int, tuple[int | None, int | None]] = dict(self._stored_sizes(list(set(image_ids))))
            for image_id, category_id, rle, crowd in zip(image_ids, category_ids, rles, iscrowd, strict=True):
                if image_id not in sizes:
                    try:
                        sizes[image_id] = self.image_size(image_id)
                    except (ImageError, OSError):  # file gone: the RLE is checked alone
                        sizes[image_id] = (None, None)
                try:
                    checked = checked_mask(rle, *sizes[image_id], max_pixels=limit)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise ProjectError(f"refused a mask label on image {image_id}: {exc}") from exc
                if issued is not None:
                    new_id = next(issued)
                else:
                    new_id, next_id = next_id, next_id + 1
                rows.append((new_id, image_id, category_id, _mask_text(checked), int(crowd), now, now))
            self._conn.executemany(  # what is the same for every row is written in the statement
                "INSERT INTO annotations(id, image_id, category_id, kind, geometry, state, model_version, score,"
                " iscrowd, group_id, attributes, created, updated)"
                " VALUES (?, ?, ?, 'mask', ?, 'accepted', NULL, NULL, ?, NULL, '{}', ?, ?)",
                rows,
            )
            if log:
                self._conn.executemany(
                    "INSERT INTO edit_log(time, action, image_id, annotation_id, kind, seconds, detail, author)"
                    " VALUES (?, 'add', ?, ?, 'mask', NULL, '{}', ?)",
                    [(now, r[1], r[0], self.author) for r in rows],
                )
        return [r[0] for r in rows]

    def _checked(
        self,
        ann: Annotation,
        image_id: int,
        sizes: dict[int, tuple[int | None, int | None]],
        *,
        drop_outside: bool = False,
        max_pixels: int | None = None,
    ) -> Annotation | None:
        """The store's door for geometry, whatever the source: finite, clipped to the image, masks
        of the image's size (:func:`~labeler.core.geometry.checked_annotation`); what no export
        could write, or what lies wholly outside the image, is a :class:`ProjectError`."""
        from labeler.core.geometry import checked_annotation
        from labeler.core.images import ImageError

        if image_id not in sizes:
            try:
                sizes[image_id] = self.image_size(image_id)
            except (ImageError, OSError):  # file gone: only finiteness and magnitude are checked
                sizes[image_id] = (None, None)
        width, height = sizes[image_id]
        try:
            checked = checked_annotation(ann, width, height, max_pixels=max_pixels)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ProjectError(f"refused a {ann.kind.value} label on image {image_id}: {exc}") from exc
        if checked is None and not drop_outside:
            raise ProjectError(
                f"refused a {ann.kind.value} label on image {image_id}: it lies wholly outside the image"
            )
        return checked

    @_needs("annotator", "edit a label")
    def update_annotation(self, ann: Annotation, *, action: str = "edit") -> Annotation:
        """Overwrite the stored annotation with id ``ann.id``."""
        if ann.id is None:
            raise ProjectError("cannot update an annotation that was never stored")
        annotation_id = ann.id
        checked = self._checked(ann, ann.image_id, {})
        assert checked is not None
        ann = checked
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE annotations SET category_id = ?, kind = ?, geometry = ?, state = ?, model_version = ?,"
                " score = ?, iscrowd = ?, group_id = ?, attributes = ?, updated = ?, revision = revision + 1"
                " WHERE id = ?" + ("" if ann.revision is None else " AND revision = ?"),
                (
                    ann.category_id,
                    ann.kind.value,
                    _stored_geometry(ann)[0],
                    ann.state.value,
                    ann.model_version,
                    ann.score,
                    int(ann.iscrowd),
                    ann.group_id,
                    json.dumps(ann.attributes),
                    time.time(),
                    ann.id,
                    *(() if ann.revision is None else (ann.revision,)),
                ),
            )
            if cur.rowcount == 0:
                if self._conn.execute("SELECT 1 FROM annotations WHERE id = ?", (ann.id,)).fetchone() is not None:
                    raise StaleAnnotationError(
                        f"annotation {ann.id} was changed by someone else since you opened it; "
                        "reload the image to see their version (yours was not saved)"
                    )
                raise ProjectError(f"no annotation with id {ann.id}")
            self._log(action, image_id=ann.image_id, annotation_id=annotation_id, kind=ann.kind.value)
        return self.annotation(annotation_id)

    def set_state(self, annotation_id: int, state: State) -> Annotation:
        """Accept or reject a proposal (or put it back to proposed)."""
        return self.set_states([self.annotation(annotation_id)], state)[0]

    @_needs("annotator", "accept or reject proposals")
    def set_states(self, anns: Sequence[Annotation], state: State, *, action: str | None = None) -> list[Annotation]:
        """Give the stored annotations ``anns`` the review state ``state`` (accept, reject, reopen),
        nothing else changed: one UPDATE and their edit-log lines (``action``, default the state's
        name), nothing read back. Returns them as stored now. An id that is no longer stored is a
        :class:`ProjectError` and nothing changes."""
        state = State(state)
        ids = [a.id for a in anns]
        if any(i is None for i in ids):
            raise ProjectError("cannot change the state of an annotation that was never stored")
        if not ids:
            return []
        now = time.time()
        with self.transaction():
            # the revisions come back with the update, which holds the rows until commit: a
            # colleague's change saved since these copies were read shows as another revision
            # (and all of this is undone), with no second statement
            now_stored = self._conn.execute(
                f"UPDATE annotations SET state = ?, updated = ?, revision = revision + 1"
                f" WHERE id IN ({','.join('?' * len(ids))}) RETURNING id, revision",
                (state.value, now, *ids),
            ).fetchall()
            if len(now_stored) != len(set(ids)):
                raise ProjectError(f"{len(set(ids)) - len(now_stored)} of these annotations are no longer stored")
            expected = {a.id: a.revision + 1 for a in anns if a.revision is not None}
            stale = sorted(int(r[0]) for r in now_stored if int(r[0]) in expected and int(r[1]) != expected[int(r[0])])
            if stale:
                raise StaleAnnotationError(
                    f"annotation {stale[0]}{f' and {len(stale) - 1} more' if len(stale) > 1 else ''} "
                    "changed by someone else since you opened the image; reload it to see their "
                    "version (nothing was accepted or rejected)"
                )
            self._conn.executemany(
                "INSERT INTO edit_log(time, action, image_id, annotation_id, kind, seconds, detail, author)"
                " VALUES (?, ?, ?, ?, ?, NULL, '{}', ?)",
                [(now, action or state.value, a.image_id, a.id, a.kind.value, self.author) for a in anns],
            )
        return [
            replace(a, state=state, updated=now, revision=None if a.revision is None else a.revision + 1) for a in anns
        ]

    @_needs("annotator", "delete a label")
    def delete_annotation(self, annotation_id: int) -> None:
        with self.transaction():
            row = self._conn.execute("SELECT image_id, kind FROM annotations WHERE id = ?", (annotation_id,)).fetchone()
            self._conn.execute("DELETE FROM annotations WHERE id = ?", (annotation_id,))
            if row is not None:
                self._log("delete", image_id=row["image_id"], annotation_id=annotation_id, kind=row["kind"])

    @_needs("annotator", "store proposals")
    def replace_proposals(
        self,
        image_id: int,
        *,
        plugin: str,
        proposals: Sequence[Annotation],
        uncertainty: float | None = None,
    ) -> list[Annotation]:
        """Swap the plugin's pending proposals on an image for new ones, in one transaction.

        Accepted, rejected and human annotations are never touched. Only proposals made by model
        versions of ``plugin`` are replaced.
        """
        for p in proposals:
            if p.state is not State.PROPOSED or p.model_version is None:
                raise ProjectError("proposals must be in state 'proposed' and name their model version")
        with self.transaction():
            self._conn.execute(
                "DELETE FROM annotations WHERE image_id = ? AND state = 'proposed' AND model_version IN"
                " (SELECT id FROM model_versions WHERE plugin = ?)",
                (image_id, plugin),
            )
            stored = self._insert_annotations(
                [replace(p, id=None) if p.id is not None else p for p in proposals], log=False, image_id=image_id
            )
            self._conn.execute("UPDATE images SET uncertainty = ? WHERE id = ?", (uncertainty, image_id))
        return stored

    # ---- model versions -------------------------------------------------------------------

    @_needs("owner", "add a model version")
    def add_model_version(self, version: ModelVersion, *, activate: bool = False) -> ModelVersion:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO model_versions(plugin, settings, categories, checkpoint, parent, metrics, data, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.plugin,
                    json.dumps(version.settings),
                    json.dumps(list(version.categories)),
                    version.checkpoint,
                    version.parent,
                    json.dumps(version.metrics),
                    json.dumps(version.data),
                    version.created or time.time(),
                ),
            )
            version_id = int(cur.lastrowid or 0)
            if activate:
                self.activate_model_version(version_id)
        return self.model_version(version_id)

    def model_versions(self, plugin: str | None = None) -> list[ModelVersion]:
        if plugin is None:
            rows = self._query("SELECT * FROM model_versions ORDER BY id")
        else:
            rows = self._query("SELECT * FROM model_versions WHERE plugin = ? ORDER BY id", (plugin,))
        return [_row_to_model_version(r) for r in rows]

    def model_version(self, version_id: int) -> ModelVersion:
        rows = self._query("SELECT * FROM model_versions WHERE id = ?", (version_id,))
        if not rows:
            raise ProjectError(f"no model version with id {version_id}")
        return _row_to_model_version(rows[0])

    def active_model_version(self, plugin: str) -> ModelVersion | None:
        rows = self._query("SELECT * FROM model_versions WHERE plugin = ? AND active = 1", (plugin,))
        return _row_to_model_version(rows[0]) if rows else None

    @_needs("owner", "activate a model version")
    def activate_model_version(self, version_id: int) -> None:
        """Make this version the one its plugin uses (the others of that plugin step down)."""
        with self.transaction():
            version = self.model_version(version_id)
            self._conn.execute("UPDATE model_versions SET active = 0 WHERE plugin = ?", (version.plugin,))
            self._conn.execute("UPDATE model_versions SET active = 1 WHERE id = ?", (version_id,))
            self._log("activate", detail={"model_version": version_id, "plugin": version.plugin})

    # ---- edit log -------------------------------------------------------------------------

    def _log(self, action: str, **entry: Unpack[LogEntry]) -> None:
        self._conn.execute(
            "INSERT INTO edit_log(time, action, image_id, annotation_id, kind, seconds, detail, author)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                action,
                entry.get("image_id"),
                entry.get("annotation_id"),
                entry.get("kind"),
                entry.get("seconds"),
                json.dumps(entry.get("detail") or {}),
                self.author,
            ),
        )

    @_needs("annotator", "write to the edit log")
    def log_edit(self, action: str, **entry: Unpack[LogEntry]) -> None:
        """Record something the user did (e.g. ``draw`` with the seconds it took)."""
        with self.transaction():
            self._log(action, **entry)

    def edit_log(self, *, action: str | None = None) -> list[dict[str, Any]]:
        if action is None:
            rows = self._query("SELECT * FROM edit_log ORDER BY id")
        else:
            rows = self._query("SELECT * FROM edit_log WHERE action = ? ORDER BY id", (action,))
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no such user in a container: edits are logged without a name
        return None


def _check_image_size(width: Any, height: Any) -> None:
    """A :class:`ProjectError` unless ``width`` x ``height`` are positive whole numbers within the
    pixel limit (other sizes would break every export)."""
    from labeler.core.images import max_pixels_limit

    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height))
        or width <= 0
        or height <= 0
        or width * height > max_pixels_limit()
    ):
        raise ProjectError(f"{width!r} x {height!r} is not a usable image size")


def _category_name(name: str) -> str:
    """A category name as stored: stripped, non-empty, at most 200 characters, no control
    characters (a newline would break ``classes.txt``, every export must be able to write it)."""
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise ProjectError("a category needs a name")
    if len(name) > 200 or any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise ProjectError(f"{name[:40]!r}: a category name is at most 200 characters, without control characters")
    return name


def list_image_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` in natural order of their paths (``img2`` before ``img10``);
    hidden files and folders are skipped.

    Only regular files count (a symlink counts when it leads to one): named pipes, devices
    (``/dev/zero`` behind a symlink too), sockets, folders named ``x.png`` and broken or looping
    symlinks are left out, so nothing later blocks opening them or reads them forever. Symlinked
    folders are not followed (no loops). Names that are not UTF-8 (which no project, export or
    other tool could name) are left out too. Only ``stat`` is used: no file is opened.
    """
    base = os.fspath(folder)
    rels = [
        f"{sub}/{name}" if sub else name
        for current, names in image_files_by_folder(base, recursive=recursive)
        for sub in [os.path.relpath(current, base).replace(os.sep, "/") if current != base else ""]
        for name in names
    ]
    rels.sort(key=natural_key)
    return [Path(base, rel) for rel in rels]


def image_files_by_folder(folder: str, *, recursive: bool = True) -> list[tuple[str, list[str]]]:
    """``(folder path, image file names in it)`` for ``folder`` and (``recursive``) every folder
    under it, as :func:`list_image_files` chooses the files; unsorted. Strings throughout: a
    ``Path`` per file costs more than the listing."""
    out: list[tuple[str, list[str]]] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        names: list[str] = []
        with os.scandir(current) as entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if recursive and _is_utf8(name):
                        stack.append(entry.path)
                elif (
                    name[name.rfind(".") :].lower() in IMAGE_SUFFIXES and _is_regular(entry) and _is_utf8(name)
                ):  # is_image_file, for a name (a name without a dot gives the whole name: no suffix)
                    names.append(name)
        if names:
            out.append((current, names))
    return out


def _is_utf8(name: str) -> bool:
    """Whether a file name decoded by the system is text (undecodable bytes come back as lone
    surrogates, which neither SQLite nor PostgreSQL nor JSON can hold)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_regular(entry: os.DirEntry[str]) -> bool:
    """Whether a folder entry is (or leads through symlinks to) a regular file; ``False`` for
    broken and looping symlinks."""
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:  # a symlink loop, or a name that vanished
        return False
