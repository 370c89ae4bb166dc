"""Every image of a project as columns: what the image list of a million images stands on.

No Qt here. An :class:`ImageIndex` holds, for every image, its id, its path (one buffer of UTF-8
bytes and an array of ends, not a Python string per image) and its :class:`ImageState` as one
byte, in the natural order of the paths (``img2`` before ``img10``, :mod:`labeler.core.natural`).
Filtering by state or by name, "next not done" and the counts per state are array operations;
counts change with each state change (never recounted by reading every row).

The natural order costs a Python sort key per path (seconds for a million), so it is kept beside
the project in ``.labeler/image-order.npz`` under a hash of the ids and paths it was made for; a
stale or damaged file is recomputed, an unwritable folder only costs the sort next time.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from labeler.core.image_state import ImageState
from labeler.core.natural import natural_key
from labeler.core.store import ImageColumns, Project

STATES: tuple[ImageState, ...] = tuple(ImageState)
"""The state codes the index stores: ``STATES[code]``."""
_CODE = {s: n for n, s in enumerate(STATES)}
_DONE = _CODE[ImageState.DONE]
CACHE_DIR = ".labeler"
ORDER_FILE = "image-order.npz"


def state_code(state: ImageState) -> int:
    return _CODE[state]


class ImageIndex:
    """The images of a project in natural order of their paths, with their states.

    Positions (``0 .. len - 1``) are places in that order; ids are the store's image ids.
    """

    def __init__(self, *, columns: ImageColumns, order: np.ndarray, states: np.ndarray) -> None:
        self._ids = columns.ids  # id order (ascending): the arrays below are indexed like it
        self._blob = columns.paths
        self._ends = columns.ends
        self._starts = np.concatenate([np.zeros(1, dtype=np.int64), self._ends[:-1]]) if len(self._ends) else self._ends
        self._names: np.ndarray | None = None  # where each file name begins, made at the first name filter
        self._lower: bytes | None = None  # the lower-cased paths, made at the first name filter
        self._states = states.astype(np.int8)
        self._order = order.astype(np.int64)  # position -> index into the id-ordered arrays
        self._rank = np.empty_like(self._order)  # index -> position
        self._rank[self._order] = np.arange(len(self._order), dtype=np.int64)
        self._counts = np.bincount(self._states, minlength=len(STATES)).astype(np.int64)

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def load(cls, project: Project, *, cache: bool = True) -> ImageIndex:
        """Read the project's images (two aggregate queries) and their order (from the cache beside
        the project when it is for these very images, else sorted, and kept there with ``cache``)."""
        columns = project.image_columns()
        proposals, accepted = project.labelled_image_ids()
        states = np.full(len(columns.ids), _CODE[ImageState.UNLABELLED], dtype=np.int8)
        states[_members(columns.ids, accepted)] = _CODE[ImageState.LABELLED]
        states[_members(columns.ids, proposals)] = _CODE[ImageState.PROPOSALS]
        states[columns.done] = _DONE
        order = natural_order(project, columns, cache=cache)
        return cls(columns=columns, order=order, states=states)

    @classmethod
    def empty(cls) -> ImageIndex:
        none = np.zeros(0, dtype=np.int64)
        return cls(
            columns=ImageColumns(ids=none, paths=b"", ends=none, done=np.zeros(0, dtype=bool)),
            order=none,
            states=np.zeros(0, dtype=np.int8),
        )

    # ---- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def id_at(self, position: int) -> int:
        return int(self._ids[self._order[position]])

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        ids: np.ndarray = self._ids[self._order[positions]]
        return ids

    def path_at(self, position: int) -> str:
        k = self._order[position]
        return self._blob[int(self._starts[k]) : int(self._ends[k])].decode("utf-8", "replace")

    def name_at(self, position: int) -> str:
        """The file name (the path after its last ``/``)."""
        k = self._order[position]
        start, end = int(self._starts[k]), int(self._ends[k])
        return self._blob[max(start, self._blob.rfind(b"/", start, end) + 1) : end].decode("utf-8", "replace")

    def state_at(self, position: int) -> ImageState:
        state: ImageState = STATES[int(self._states[self._order[position]])]
        return state

    def position_of(self, image_id: int) -> int | None:
        k = int(np.searchsorted(self._ids, image_id))
        if k >= len(self._ids) or int(self._ids[k]) != image_id:
            return None
        return int(self._rank[k])

    def state_of(self, image_id: int) -> ImageState | None:
        position = self.position_of(image_id)
        return None if position is None else self.state_at(position)

    def counts(self) -> dict[ImageState, int]:
        return {s: int(self._counts[n]) for n, s in enumerate(STATES)}

    # ---- changing ------------------------------------------------------------------------

    def set_state(self, image_id: int, state: ImageState) -> bool:
        """Record an image's new state (the counts follow); False if unknown or unchanged."""
        k = int(np.searchsorted(self._ids, image_id))
        if k >= len(self._ids) or int(self._ids[k]) != image_id:
            return False
        old, new = int(self._states[k]), _CODE[state]
        if old == new:
            return False
        self._states[k] = new
        self._counts[old] -= 1
        self._counts[new] += 1
        return True

    # ---- queries -------------------------------------------------------------------------

    def filter(self, *, states: frozenset[ImageState] | None = None, text: str = "") -> np.ndarray:
        """Positions (ascending) of the images in ``states`` (None: all) whose file name contains
        ``text`` (case-insensitive)."""
        keep = np.ones(len(self._ids), dtype=bool)
        if states is not None:
            keep &= np.isin(self._states, [_CODE[s] for s in states])
        needle = text.strip().lower()
        if needle:
            keep &= self._name_contains(needle)
        return np.sort(self._rank[np.flatnonzero(keep)])

    def _name_contains(self, needle: str) -> np.ndarray:
        """Per image (id order): whether its lower-cased file name contains ``needle``."""
        n = len(self._ids)
        if self._names is None:
            self._names = _name_starts(self._blob, self._starts, self._ends)
        names = self._names
        if not needle.isascii():  # bytes.lower() folds ASCII only: compare decoded names
            return np.fromiter(
                (
                    needle in self._blob[int(a) : int(b)].decode("utf-8", "replace").lower()
                    for a, b in zip(names, self._ends, strict=True)
                ),
                dtype=bool,
                count=n,
            )
        if self._lower is None:
            self._lower = self._blob.lower()
        buf = np.frombuffer(self._lower, dtype=np.uint8)
        pattern = needle.encode("ascii")
        width = len(pattern)
        hit = np.zeros(n, dtype=bool)
        if width > len(buf):
            return hit
        starts = np.flatnonzero(buf[: len(buf) - width + 1] == pattern[0])
        for k in range(1, width):
            starts = starts[buf[starts + k] == pattern[k]]
        rows = np.searchsorted(self._ends, starts, side="right")  # the path each match begins in
        inside = (starts >= names[rows]) & (starts + width <= self._ends[rows])
        hit[rows[inside]] = True
        return hit

    def next_not_done(self, after: int | None) -> int | None:
        """The id of the first image in list order after image ``after`` that is not done
        (wrapping round; never ``after`` itself); None when every other image is done."""
        if not len(self._ids):
            return None
        here = self.position_of(after) if after is not None else None
        start = 0 if here is None else here + 1
        not_done = self._states[self._order] != _DONE  # positions
        for lo, hi in ((start, len(not_done)), (0, start)):
            hits = np.flatnonzero(not_done[lo:hi])
            for h in hits[:2]:
                image_id = self.id_at(lo + int(h))
                if image_id != after:
                    return image_id
        return None


def _members(ids: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Indices into sorted ``ids`` of the values of ``subset`` that are there."""
    if not len(ids) or not len(subset):
        return np.zeros(0, dtype=np.int64)
    k = np.clip(np.searchsorted(ids, subset), 0, len(ids) - 1)
    found: np.ndarray = k[ids[k] == subset]
    return found


def _name_starts(blob: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where each path's file name begins: after its last ``/`` (its start when it has none)."""
    found = np.fromiter((blob.rfind(b"/", 0, e) for e in ends.tolist()), dtype=np.int64, count=len(ends))
    begins: np.ndarray = np.maximum(found + 1, starts)
    return begins


# ---- the natural order and its cache --------------------------------------------------------


def _fingerprint(columns: ImageColumns) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(columns.ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(columns.ends, dtype="<i8").tobytes())
    digest.update(columns.paths)
    return digest.hexdigest()


def order_file(project: Project) -> Path:
    return project.root / CACHE_DIR / ORDER_FILE


def natural_order(project: Project, columns: ImageColumns, *, cache: bool = True) -> np.ndarray:
    """Indices into ``columns`` in the natural order of their paths (from the cache when it holds
    the order of exactly these ids and paths; else sorted, and kept when ``cache``)."""
    fingerprint = _fingerprint(columns)
    cached = _read_order(order_file(project), fingerprint, len(columns.ids))
    if cached is not None:
        return cached
    starts = np.concatenate([np.zeros(1, dtype=np.int64), columns.ends[:-1]]) if len(columns.ends) else columns.ends
    blob = columns.paths
    keys = [
        natural_key(blob[int(a) : int(b)].decode("utf-8", "replace")) for a, b in zip(starts, columns.ends, strict=True)
    ]
    order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
    if cache:
        _write_order(order_file(project), fingerprint, order)
    return order


def remember_id_order(project: Project) -> None:
    """Keep in the cache that the images' id order is their natural order: true right after
    :meth:`Project.add_folder` filled an empty project (it adds the files in natural order), so a
    project of a million images opens without sorting them once."""
    columns = project.image_columns()
    _write_order(order_file(project), _fingerprint(columns), np.arange(len(columns.ids), dtype=np.int64))


def _read_order(path: Path, fingerprint: str, count: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            order = np.asarray(data["order"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError):  # absent, damaged or not ours: sort again
        return None
    if order.shape != (count,) or (count and (order.min() < 0 or order.max() >= count)):
        return None
    if count and np.bincount(order, minlength=count).max() != 1:
        return None
    return order


def _write_order(path: Path, fingerprint: str, order: np.ndarray) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".order-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, fingerprint=np.array(fingerprint), order=order)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:  # a read-only project: the order is sorted again next time
        pass
