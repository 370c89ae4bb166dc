"""What every format shares: reports, finding images, categories, atomic output.

Conventions (those of :mod:`labeler.core.annotation`): pixel coordinates with the origin at the
top-left corner of the top-left pixel; boxes ``(x, y, w, h)``; masks as compressed COCO RLE.

An import runs inside one :meth:`Project.transaction`, so an error (or an exception raised by the
``progress`` callback, which is how a caller cancels) leaves the project exactly as it was. An
export builds its output in a temporary file or folder beside the target and moves it into place
only when all of it is written.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from labeler.core.annotation import Annotation, ImageRecord, Kind, State
from labeler.core.files import is_regular_file
from labeler.core.geometry import checked_annotation, normalize_rle
from labeler.core.images import ImageError, max_pixels_limit, read_image_size
from labeler.core.store import Project, image_files_by_folder, list_image_files
from labeler.formats.errors import FormatError

Progress = Callable[[int, int], None]
BACKGROUND_NAMES = frozenset({"_background_", "__background__", "background"})
"""Class names that mean "no object" (labelme's COCO and VOC exports call value/id 0 this)."""
"""``progress(done, total)``; raising from it cancels (an import then rolls back)."""


@dataclass(frozen=True)
class ImportReport:
    """What an import did. ``skipped`` maps a reason to how many things it skipped (read only)."""

    format: str
    source: str
    images: int
    images_added: int
    annotations: int
    done: int
    ignore_masks: int = 0
    categories_added: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    images_matched: int = 0

    def summary(self) -> str:
        """One line for the command line and the GUI's status bar."""
        matched = f"{self.images_matched} matched in the project, " if self.images_matched else ""
        text = (
            f"{self.images} images ({matched}{self.images_added} new, {self.done} marked done), "
            f"{self.annotations} annotations imported"
        )
        if self.ignore_masks:
            text += f", {self.ignore_masks} ignore masks"
        if self.categories_added:
            text += f", {len(self.categories_added)} new categories"
        return text + _skipped_text(self.skipped)


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: ``out`` is the file or folder, ``files`` how many files it holds."""

    format: str
    out: str
    images: int
    annotations: int
    files: int
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.images} images, {self.annotations} annotations exported to {self.out}" + _skipped_text(
            self.skipped
        )


def _skipped_text(skipped: dict[str, int]) -> str:
    total = sum(skipped.values())
    if not total:
        return ""
    reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
    return f", {total} skipped ({reasons})"


class Tally:
    """Counts kept while an import or export runs; turned into a report at the end."""

    def __init__(self) -> None:
        self.images: set[int] = set()
        self.added: set[int] = set()
        self.matched: set[int] = set()
        self.annotations = 0
        self.done = 0
        self.ignore_masks = 0
        self.categories_added: list[str] = []
        self.skipped: Counter[str] = Counter()

    def skip(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] += n

    def import_report(self, fmt: str, source: Path) -> ImportReport:
        return ImportReport(
            format=fmt,
            source=str(source),
            images=len(self.images),
            images_added=len(self.added),
            images_matched=len(self.matched - self.added),
            annotations=self.annotations,
            done=self.done,
            ignore_masks=self.ignore_masks,
            categories_added=tuple(self.categories_added),
            skipped=dict(self.skipped),
        )

    def export_report(self, fmt: str, out: Path, *, images: int, files: int) -> ExportReport:
        return ExportReport(
            format=fmt,
            out=str(out),
            images=images,
            annotations=self.annotations,
            files=files,
            skipped=dict(self.skipped),
        )


# ---- reading input ----------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector paused for a bulk import, then restored as it was.

    Reading a big label file makes a million small objects that live until the import ends, and
    each full collection walks all of them for nothing (about a second of a 20,000-image COCO
    import, ``benchmarks/README.md``); what the import drops is freed by reference counting all
    the same. The collector is process-wide: a pause of the length of one import is harmless."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_json(path: Path) -> Any:
    """Parse a JSON file; broken or unreadable input is a :class:`FormatError` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise FormatError(f"{path}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError as exc:
        raise FormatError(f"{path}: JSON nested too deeply to read") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text") from exc
    except (OSError, ValueError) as exc:  # ValueError: e.g. an integer of more than 4300 digits
        raise FormatError(f"{path}: cannot read ({type(exc).__name__})") from exc


def inside(
    path: str | Path,
    roots: Sequence[Path],
    *,
    resolved: dict[Path, str] | None = None,
    real: str | None = None,
) -> bool:
    """True if ``path``, links resolved, lies inside one of ``roots`` (links resolved too).

    ``resolved`` caches the roots' resolved forms over many calls with the same roots; ``real`` is
    ``path`` resolved, where the caller has it.
    """
    if real is None:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            return False
    cache = resolved if resolved is not None else {}
    for root in roots:
        try:
            if root not in cache:
                cache[root] = os.path.realpath(root)
            real_root = cache[root]
        except (OSError, ValueError):
            continue
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return True
    return False


def strict_int(value: Any, *, low: int = 0, high: int = 1 << 31) -> int | None:
    """``value`` as an int in ``[low, high)`` if it is one (a JSON integer, or ASCII digits), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 12):
            return None
        value = int(text)
    if not isinstance(value, int) or not (low <= value < high):
        return None
    return value


def files_under(source: Path, suffixes: Iterable[str]) -> list[Path]:
    """``source`` itself if it is a file, else the files under it with these suffixes, sorted."""
    wanted = {s.lower() for s in suffixes}
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FormatError(f"{source}: no such file or folder")
    found = [
        Path(root) / name
        for root, dirs, names in os.walk(source)
        for name in names
        if Path(name).suffix.lower() in wanted and not name.startswith(".")
    ]
    return sorted(found)


def key_of(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without its suffix, POSIX style: how label files pair to images."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    return PurePosixPath(rel.with_suffix("").as_posix()).as_posix()


class ImageFinder:
    """Finds the image file an annotation file means, and adds it to the project if it is new.

    A name is tried, in order: as written (relative to the annotation file's folder, or absolute);
    relative to ``images_dir``; by file name anywhere under ``images_dir``; beside the annotation
    file; and last among the project's images by file name (when exactly one matches).
    """

    def __init__(
        self,
        project: Project,
        *,
        images_dir: Path | None,
        tally: Tally,
        add_images: bool = True,
        match_first: bool = False,
        add_later: bool = False,
    ) -> None:
        self.project = project
        self.add_images = add_images
        self.match_first = match_first  # the project's images before files on disk (labelme)
        # with add_later, new images wait here (absolute path, stored path) under a stand-in id
        # (-1, -2, ...) until add_held writes them all in one statement
        self._held: list[tuple[str, str]] | None = [] if add_later else None
        self.images_dir = images_dir
        self.tally = tally
        self._by_name: dict[str, list[Path]] | None = None
        self._by_stem: dict[str, list[Path]] | None = None
        self._ids: dict[str, int] = {}  # absolute path -> id of the images this import found
        # the project's images, read once: stored path -> id, file name and stem -> stored paths
        self._paths: dict[str, int] | None = None
        self._names: dict[str, list[str]] = defaultdict(list)
        self._stems: dict[str, list[str]] = defaultdict(list)
        self._folders: dict[str, str] = {}  # folder -> its relative form (Project.relative_path)
        self._real_roots: dict[Path, str] = {}
        self._real_folders: dict[str, str] = {}
        self._header_sizes: dict[str, tuple[int, int]] = {}  # absolute path -> (w, h) read by _usable
        self._stem_hits: dict[str, dict[str, list[Path]]] = {}  # folder -> see _folder_stems
        if images_dir is not None and not images_dir.is_dir():
            raise FormatError(f"{images_dir}: the --images folder does not exist")

    # -- by name, as COCO, labelme and VOC name images ---------------------------------------

    def find(self, name: str, *, bases: Sequence[Path] = ()) -> int | None:
        """Project image id for the image ``name`` (a path as the file wrote it), or ``None``."""
        text = name.replace("\\", "/").strip()
        if not text:
            return None
        if not self.add_images or self.match_first:
            found = self._find_in_project(text, bases, count=not self.add_images)
            if found is not None or not self.add_images:
                return found
        written = Path(text)
        plain, as_written, absolute = written.name, str(written), written.is_absolute()
        folders = [os.fspath(base) for base in bases]  # paths as text: pathlib costs more than the lookups
        candidates = [as_written] if absolute else [os.path.join(base, as_written) for base in folders]
        if self.images_dir is not None:
            images_dir = os.fspath(self.images_dir)
            if not absolute:
                candidates.append(os.path.join(images_dir, as_written))
            candidates.append(os.path.join(images_dir, plain))
        candidates += [os.path.join(base, plain) for base in folders]
        for path in candidates:
            if is_regular_file(path):
                if self._usable(path, bases):
                    return self._add(path)
                break
        if self.images_dir is not None:
            hit = self._pick(self._index()[0].get(plain, []), written)
            if hit is not None and self._usable(hit, bases):
                return self._add(hit)
        named = self._project_named(plain)
        if len(named) == 1:
            return self._project_paths()[named[0]]
        return None

    # -- the project's own images, indexed once per import -----------------------------------

    def _project_paths(self) -> dict[str, int]:
        """Stored path -> id of every project image (one query the first time, then kept up to
        date by :meth:`_add`), so that finding 20,000 names costs no query, nor a table scan, each."""
        if self._paths is None:
            self._paths = {}
            for rel, image_id in sorted(self.project.image_ids_by_path().items(), key=lambda kv: kv[1]):
                self._index_project_image(rel, image_id)
        return self._paths

    def _index_project_image(self, rel: str, image_id: int) -> None:
        assert self._paths is not None
        self._paths[rel] = image_id
        name = rel.rsplit("/", 1)[-1]
        dot = name.rfind(".")
        self._names[name].append(rel)
        self._stems[name[:dot] if 0 < dot < len(name) - 1 else name].append(rel)  # PurePosixPath.stem

    def _project_id(self, path: str | Path) -> int | None:
        """Id of the project image stored for this file path (as :meth:`Project.find_image`)."""
        try:
            rel = self.project.relative_path(path, _folders=self._folders)
        except (OSError, ValueError):
            return None
        return self._project_paths().get(rel)

    def _project_named(self, name: str) -> list[str]:
        """Stored paths of the project images whose file name is ``name``, oldest first."""
        self._project_paths()
        return self._names.get(name, [])

    def _find_in_project(self, text: str, bases: Sequence[Path], *, count: bool = True) -> int | None:
        """The project image the name means, by relative path, then by file name; ``None`` (and
        counted) when the project holds none, or several equally good."""
        written = Path(text)
        as_written = str(written)
        roots = list(bases) + ([self.images_dir] if self.images_dir is not None else [])
        if written.name != ".." and not self._project_named(written.name):
            roots = []  # no project image has this file name: no path of it can be one of them
        for base in roots:
            found = self._project_id(as_written if written.is_absolute() else os.path.join(base, as_written))
            if found is not None:
                return self._matched(found)
        records = self._project_named(written.name)
        if len(records) > 1:  # the one whose folders best match the written path
            by_path = {Path(r): r for r in records}
            best = self._pick(list(by_path), written)
            records = [by_path[best]] if best is not None else records
        if len(records) == 1:
            return self._matched(self._project_paths()[records[0]])
        if count:
            self.tally.skip(
                "image not in the project (ambiguous name)"
                if records
                else "image not in the project (import with add images to add it)"
            )
        return None

    def _matched(self, image_id: int) -> int:
        self.tally.matched.add(image_id)
        return image_id

    # -- by stem, as YOLO and label masks pair files -----------------------------------------

    def find_stem(self, key: str, *, bases: Sequence[Path] = ()) -> int | None:
        """Project image id for the image whose path without suffix ends with ``key``, or ``None``."""
        key_path = PurePosixPath(key)
        stem = key_path.name
        roots = list(bases) + ([self.images_dir] if self.images_dir is not None else [])
        for root in roots:
            hits = self._folder_stems(root / key_path.parent).get(stem)
            if hits and self._usable(hits[0], bases):
                return self._add(hits[0])
        if self.images_dir is not None:
            hit = self._pick(self._index()[1].get(stem, []), Path(key))
            if hit is not None and self._usable(hit, bases):
                return self._add(hit)
        paths = self._project_paths()
        records = self._stems.get(stem, [])
        if len(records) > 1:
            records = [r for r in records if PurePosixPath(r).with_suffix("").as_posix().endswith(key)]
        if len(records) == 1:
            return paths[records[0]]
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _folder_stems(self, folder: Path) -> dict[str, list[Path]]:
        """The image files right in ``folder`` (none if it is not one) by stem (the name without
        its last suffix: ``two`` is ``two.png``, never ``two.dots.png``), sorted by name, from one
        listing per folder and import (a glob per label file made a 20,000-file import quadratic)."""
        key = os.fspath(folder)
        found = self._stem_hits.get(key)
        if found is None:
            found = defaultdict(list)
            if os.path.isdir(key):
                for current, names in image_files_by_folder(key, recursive=False):
                    for name in sorted(names):
                        found[os.path.splitext(name)[0]].append(Path(current, name))
            self._stem_hits[key] = found
        return found

    def _index(self) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
        if self._by_name is None or self._by_stem is None:
            assert self.images_dir is not None
            self._by_name, self._by_stem = defaultdict(list), defaultdict(list)
            for path in list_image_files(self.images_dir):
                self._by_name[path.name].append(path)
                self._by_stem[path.stem].append(path)
        return self._by_name, self._by_stem

    @staticmethod
    def _pick(paths: list[Path], written: Path) -> Path | None:
        """The one path whose trailing parts best match how the file wrote the name."""
        if len(paths) <= 1:
            return paths[0] if paths else None
        want = [p for p in written.with_suffix("").parts if p not in ("", ".", "..")][::-1]

        def score(path: Path) -> int:
            have = path.with_suffix("").parts[::-1]
            n = 0
            while n < min(len(want), len(have)) and want[n] == have[n]:
                n += 1
            return n

        ranked = sorted(paths, key=score, reverse=True)
        return ranked[0] if score(ranked[0]) > score(ranked[1]) else None

    def _usable(self, path: str | Path, bases: Sequence[Path]) -> bool:
        """An image file may join the project only if it lies inside the folders the user gave
        (the project's, ``images_dir``, the label source's), is a regular file and has an image
        header within the pixel limit. What fails is counted in the tally, never echoed."""
        if self._project_id(path) is not None:
            return True
        roots = [self.project.root, *bases] + ([self.images_dir] if self.images_dir is not None else [])
        if not inside(path, roots, resolved=self._real_roots, real=self._realpath(path)):
            self.tally.skip("image path outside the project, the labels' and the images folder")
            return False
        if not is_regular_file(path):
            self.tally.skip("image path that is not a regular file")
            return False
        try:
            width, height = read_image_size(path)
            if width * height > max_pixels_limit() or width <= 0 or height <= 0:
                raise ImageError("too large")
        except (ImageError, OSError, ValueError):
            self.tally.skip("file that is not a readable image")
            return False
        self._header_sizes[os.path.abspath(path)] = (width, height)
        return True

    def _realpath(self, path: str | Path) -> str | None:
        """``os.path.realpath(path)``, resolving each folder once per import (a file that is not
        itself a symlink resolves to its folder's real path and its name); ``None`` if it cannot."""
        try:
            folder, name = os.path.split(os.path.abspath(path))
            if not name or name in (".", "..") or os.path.islink(path):
                return os.path.realpath(path)
            if folder not in self._real_folders:
                self._real_folders[folder] = os.path.realpath(folder)
            return os.path.join(self._real_folders[folder], name)
        except (OSError, ValueError):
            return None

    def _add(self, path: str | Path) -> int:
        path = os.path.abspath(path)
        if path not in self._ids:
            rel = self.project.relative_path(path, _folders=self._folders)
            known = self._project_paths().get(rel)
            if known is not None:
                image_id = known
            elif self._held is not None:  # written by add_held; a stand-in id until then
                self._held.append((path, rel))
                image_id = -len(self._held)
            else:  # with the size _usable read from its header: the store need not open the file again
                image_id = self.project.add_images(
                    [path], sizes=[self._header_sizes.get(path)], _folders=self._folders
                )[0]
            self._ids[path] = image_id
            if known is None:
                self.tally.added.add(image_id)
                self._index_project_image(rel, image_id)
        return self._ids[path]

    def add_held(self, found: Sequence[int | None]) -> list[int | None]:
        """With ``add_later``: add the images :meth:`find` found since the last call in one write
        (each with the size its header gave), and return ``found`` (ids as :meth:`find` returned
        them) with their stand-in ids replaced by their project ids. The images get the ids, in
        the same order, that adding each as it was found gives them."""
        if not self._held:
            return list(found)
        held, self._held = self._held, []
        sizes = [self._header_sizes.get(path) for path, _ in held]
        new = self.project.add_images([path for path, _ in held], sizes=sizes, _folders=self._folders)
        real = {-1 - k: image_id for k, image_id in enumerate(new)}
        assert self._paths is not None  # _add indexed every held image
        for (path, rel), image_id in zip(held, new, strict=True):
            self._ids[path] = image_id
            self._paths[rel] = image_id
        added, matched = self.tally.added, self.tally.matched  # every held image is in added
        added.difference_update(real)
        added.update(real.values())
        for stand_in, image_id in real.items():  # matched: named again after it was found
            if stand_in in matched:
                matched.discard(stand_in)
                matched.add(image_id)
        return [real.get(i, i) if i is not None else None for i in found]

    def size(self, image_id: int) -> tuple[int, int] | None:
        """``(width, height)`` of the image (from its header the first time), ``None`` if unreadable."""
        try:
            return self.project.image_size(image_id)
        except (ImageError, OSError):
            return None


class CategoryMap:
    """Category names to project ids, adding missing categories (and noting them in the tally)."""

    def __init__(self, project: Project, tally: Tally) -> None:
        self.project = project
        self.tally = tally
        self._ids = {c.name: c.id for c in project.categories()}

    def id(self, name: str) -> int:
        name = name.strip()
        if name not in self._ids:
            if not name:
                raise FormatError("a label has an empty class name")
            self._ids[name] = self.project.add_category(name).id
            self.tally.categories_added.append(name)
        return self._ids[name]


def geometry_key(ann: Annotation) -> tuple[Any, ...]:
    """A hashable identity of an annotation's image, class and shape (to skip exact duplicates)."""
    geo: Any
    if ann.kind is Kind.BOX:
        assert ann.box_xywh is not None
        geo = tuple(round(v, 3) for v in ann.box_xywh)
    elif ann.kind is Kind.POLYGON:
        assert ann.polygons is not None
        geo = tuple(tuple(np.round(p, 3).ravel().tolist()) for p in ann.polygons)
    else:
        assert ann.rle is not None
        return mask_key(ann.image_id, ann.category_id, ann.rle)
    return (ann.image_id, ann.category_id, ann.kind.value, geo)


def mask_key(image_id: int, category_id: int, rle: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`geometry_key` of a mask label given by its parts."""
    if not isinstance(rle["counts"], str):
        rle = normalize_rle(rle)
    size = rle["size"]
    return (image_id, category_id, "mask", int(size[0]), int(size[1]), rle["counts"])


_UNWRITABLE = "label with geometry no export can write (non-finite, huge, or a mask of another size)"


class PendingMask(NamedTuple):
    """An accepted human mask label waiting in a :class:`Writer`: its image, class, RLE as checked
    (compressed, ``str`` counts) and crowd flag."""

    image_id: int
    category_id: int
    rle: dict[str, Any]
    iscrowd: bool


class Writer:
    """Writes an import's annotations in batches and marks its images done at the end.

    Annotations identical to an accepted one already in the project are skipped, so running the
    same import twice adds nothing the second time.
    """

    def __init__(self, project: Project, tally: Tally, *, mark_done: bool) -> None:
        self.project = project
        self.tally = tally
        self.mark_done = mark_done
        self.pending: list[Annotation | PendingMask] = []
        self.labelled: set[int] = set()
        self._seen = {geometry_key(a) for a in project.annotations(states=[State.ACCEPTED])}
        self._sizes: dict[int, tuple[int | None, int | None]] = {}
        self._max_pixels = max_pixels_limit()

    def know_sizes(self, sizes: Mapping[int, tuple[int, int] | None]) -> None:
        """``(width, height)`` of images as :meth:`Project.image_sizes` gave them (``None``:
        unreadable), so that :meth:`add` need not ask the store for each."""
        for image_id, size in sizes.items():
            self._sizes[image_id] = (None, None) if size is None else size

    def _size(self, image_id: int) -> tuple[int | None, int | None]:
        if image_id not in self._sizes:
            try:
                self._sizes[image_id] = self.project.image_size(image_id)
            except (ImageError, OSError):
                self._sizes[image_id] = (None, None)
        return self._sizes[image_id]

    def add(self, ann: Annotation) -> None:
        """Queue ``ann``, clipped to its image; what no export could write, or what lies wholly
        outside the image, is skipped and counted (the store would refuse it)."""
        try:
            checked = checked_annotation(ann, *self._size(ann.image_id), max_pixels=self._max_pixels)
        except (ValueError, TypeError, OverflowError):
            self.tally.skip(_UNWRITABLE)
            return
        if checked is None:
            self.tally.skip("label wholly outside its image")
            return
        self._queue(checked, geometry_key(checked))

    def add_mask(self, *, image_id: int, category_id: int, rle: dict[str, Any], iscrowd: bool) -> None:
        """:meth:`add` for an accepted human mask label given by its parts, ``rle`` as
        :func:`~labeler.core.geometry.check_rle` or :func:`~labeler.core.rle_batch.check_rles`
        returned it (whole, compressed, ``str`` counts): skipped and counted as :meth:`add` does
        when it is not of its image's size or is already in the project; stored by
        :meth:`Project.add_masks` (whose door checks it again) without an :class:`Annotation`."""
        width, height = self._size(image_id)
        size = rle["size"]
        if width is not None and (size[0] != height or size[1] != width):
            self.tally.skip(_UNWRITABLE)
            return
        self._queue(PendingMask(image_id, category_id, rle, bool(iscrowd)), mask_key(image_id, category_id, rle))

    def _queue(self, label: Annotation | PendingMask, key: tuple[Any, ...]) -> None:
        if key in self._seen:
            self.tally.skip("already in the project")
            return
        self._seen.add(key)
        self.pending.append(label)
        if len(self.pending) >= 2000:  # written as the import goes, so progress tells the truth
            self.flush()

    def image(self, image_id: int) -> None:
        """The source labels this image (it may hold no object: then it is a confirmed negative)."""
        self.tally.images.add(image_id)
        self.labelled.add(image_id)

    def flush(self) -> None:
        """Store what is queued, in the order it came (so the labels get their ids in that order):
        each run of masks given by parts in one :meth:`Project.add_masks`, each run of the others
        in one :meth:`Project.add_annotations`."""
        start = 0
        while start < len(self.pending):
            masks = isinstance(self.pending[start], PendingMask)
            stop = start + 1
            while stop < len(self.pending) and isinstance(self.pending[stop], PendingMask) == masks:
                stop += 1
            run = self.pending[start:stop]
            if masks:
                parts = [m for m in run if isinstance(m, PendingMask)]
                self.project.add_masks(
                    image_ids=[m.image_id for m in parts],
                    category_ids=[m.category_id for m in parts],
                    rles=[m.rle for m in parts],
                    iscrowd=[m.iscrowd for m in parts],
                    log=False,
                )
            else:
                self.project.add_annotations([a for a in run if isinstance(a, Annotation)], log=False)
            self.tally.annotations += len(run)
            start = stop
        self.pending = []

    def finish(self, fmt: str, source: Path) -> None:
        self.flush()
        if self.mark_done:
            done_before = {r.id for r in self.project.images(done=True)}
            self.project.set_done_many(sorted(self.labelled - done_before), True)
            self.tally.done = len(self.labelled - done_before)
        self.project.log_edit(
            "import",
            detail={
                "format": fmt,
                "source": str(source),
                "images": len(self.tally.images),
                "annotations": self.tally.annotations,
            },
        )


# ---- writing output ---------------------------------------------------------------------------


def _umask() -> int:
    """The process's file-creation mask (read without changing it where Linux allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_normal_mode(tmp: Path, target: Path, *, folder: bool) -> None:
    """Give ``tmp`` the mode a plain ``open``/``mkdir`` would have (or ``target``'s, if it exists).

    ``mkstemp``/``mkdtemp`` create owner-only (0600/0700) entries; an export must not be.
    """
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = (0o777 if folder else 0o666) & ~_umask()
    os.chmod(tmp, mode)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The file gets the user's normal mode (``0666 & ~umask``), or the mode of the file it replaces.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError(f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _give_normal_mode(Path(tmp), path, folder=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success its files move into ``out``.

    If ``out`` does not exist the folder is renamed into place in one step; otherwise each file
    replaces its namesake in ``out`` (other files there are left alone).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FormatError(f"{out} is a file; give a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if not out.exists():
            _give_normal_mode(tmp, out, folder=True)
            os.rename(tmp, out)
            return
        for root, _dirs, names in os.walk(tmp):
            for name in names:
                src = Path(root) / name
                dst = out / src.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_selection(
    project: Project, *, include_proposals: bool, kinds: Iterable[Kind] | None = None
) -> tuple[list[ImageRecord], dict[int, list[Annotation]]]:
    """The images to export (done ones and any that carry an exported label, by id) and their labels.

    Accepted labels always; proposals too with ``include_proposals``; rejected ones never.
    """
    states = [State.ACCEPTED] + ([State.PROPOSED] if include_proposals else [])
    by_image: dict[int, list[Annotation]] = defaultdict(list)
    for ann in project.annotations(states=states, kinds=kinds):
        by_image[ann.image_id].append(ann)
    images = [r for r in project.images() if r.done or r.id in by_image]
    return images, by_image


def image_sizes(
    project: Project, images: Sequence[ImageRecord], by_image: dict[int, list[Annotation]], tally: Tally
) -> dict[int, tuple[int, int]]:
    """``(width, height)`` per image id: stored, else from a mask's RLE, else from the file header.

    Images whose size cannot be known (file gone, no mask) are left out and counted as skipped.
    """
    sizes: dict[int, tuple[int, int]] = {}
    for record in images:
        if record.width is not None and record.height is not None:
            sizes[record.id] = (record.width, record.height)
            continue
        rle = next((a.rle for a in by_image.get(record.id, []) if a.rle is not None), None)
        if rle is not None:
            sizes[record.id] = (int(rle["size"][1]), int(rle["size"][0]))
            continue
        try:
            sizes[record.id] = read_image_size(project.root / record.path)
        except ImageError:
            tally.skip("image file missing (size unknown)")
    return sizes


FileImporter = Callable[[Project, Path, "ImageFinder", "CategoryMap", "Writer", "Tally"], None]


def import_per_file(
    project: Project,
    source: Path,
    *,
    format_name: str,
    suffix: str,
    import_file: FileImporter,
    images_dir: Path | None,
    mark_done: bool,
    progress: Progress | None,
    add_images: bool = True,
    match_first: bool = False,
    files: Sequence[Path] | None = None,
    tally: Tally | None = None,
    categories: Sequence[str] = (),
) -> ImportReport:
    """Import ``source`` (one annotation file, or every ``suffix`` file under a folder, or the
    ``files`` given) with ``import_file`` per file, in one transaction: all or nothing.

    ``tally`` may carry what was skipped already while finding the files; ``categories`` are made
    first, in this order, whether labels use them or not."""
    source = Path(source)
    if files is None:
        files = files_under(source, [suffix])
    tally = tally if tally is not None else Tally()
    with project.transaction():
        finder = ImageFinder(
            project, images_dir=images_dir, tally=tally, add_images=add_images, match_first=match_first
        )
        cats = CategoryMap(project, tally)
        for name in categories:
            cats.id(name)
        writer = Writer(project, tally, mark_done=mark_done)
        for n, path in enumerate(files):
            import_file(project, path, finder, cats, writer, tally)
            if progress is not None:
                progress(n + 1, len(files))
        writer.finish(format_name, source)
    return tally.import_report(format_name, source)


@dataclass(frozen=True)
class ExportPlan:
    """What a per-image export writes: the images (done, or carrying an exported label, whose size
    is known), their labels by image id, ``(width, height)`` per image id, and file keys."""

    images: list[ImageRecord]
    by_image: dict[int, list[Annotation]]
    sizes: dict[int, tuple[int, int]]
    keys: dict[int, str]


def plan_export(
    project: Project, *, include_proposals: bool, tally: Tally, unwritten: Mapping[Kind, str] | None = None
) -> ExportPlan:
    """:func:`export_selection`, :func:`image_sizes` and :func:`export_keys` in one step, for the
    formats that write one file per image (images of unknown size are skipped and counted).

    Labels of a kind in ``unwritten`` (which the format cannot hold) are left out and counted as
    skipped with its reason; an image that is not done and keeps no other label is then left out."""
    images, by_image = export_selection(project, include_proposals=include_proposals)
    if unwritten:
        for kind, reason in unwritten.items():
            tally.skip(reason, sum(1 for anns in by_image.values() for a in anns if a.kind is kind))
        by_image = {i: [a for a in anns if a.kind not in unwritten] for i, anns in by_image.items()}
        images = [r for r in images if r.done or by_image.get(r.id)]
    sizes = image_sizes(project, images, by_image, tally)
    images = [r for r in images if r.id in sizes]
    return ExportPlan(images=images, by_image=by_image, sizes=sizes, keys=export_keys(images))


@dataclass(frozen=True)
class ExportImage:
    """One image of a per-image export: its record, its exported labels, its size and file key."""

    record: ImageRecord
    annotations: list[Annotation]
    width: int
    height: int
    key: str


ImageExporter = Callable[[ExportImage, Path, Tally], None]


def export_per_image(
    project: Project,
    out: Path,
    *,
    format_name: str,
    suffix: str,
    export_image: ImageExporter,
    include_proposals: bool,
    progress: Progress | None,
    folder: str = "",
    files: Mapping[str, str] | None = None,
    unwritten: Mapping[Kind, str] | None = None,
) -> ExportReport:
    """Write one file per image into the folder ``out`` (built aside, then moved in):
    ``export_image`` writes ``folder/<key><suffix>`` (its folder made), after the text ``files``
    (name to content) that the format keeps beside them. See :func:`plan_export` for what is written."""
    tally = Tally()
    plan = plan_export(project, include_proposals=include_proposals, tally=tally, unwritten=unwritten)
    files = files or {}
    with atomic_folder(out) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for n, record in enumerate(plan.images):
            width, height = plan.sizes[record.id]
            key = plan.keys[record.id]
            path = tmp / folder / (key + suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            export_image(ExportImage(record, plan.by_image.get(record.id, []), width, height, key), path, tally)
            if progress is not None:
                progress(n + 1, len(plan.images))
    return tally.export_report(format_name, out, images=len(plan.images), files=len(plan.images) + len(files))


def export_keys(images: Sequence[ImageRecord]) -> dict[int, str]:
    """Per image id, its path without suffix relative to the images' common folder (POSIX).

    One label file per image is named after this key (``labels/<key>.txt``), which mirrors the
    folder layout and so keeps images of the same name in different folders apart.
    """
    if not images:
        return {}
    paths = [PurePosixPath(r.path) for r in images]
    common = list(paths[0].parent.parts)
    for p in paths[1:]:
        parts = p.parent.parts
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    keys = {}
    for record, path in zip(images, paths, strict=True):
        rel = PurePosixPath(*path.parts[len(common) :])
        keys[record.id] = rel.with_suffix("").as_posix()
    return keys


def box_polygon(box: Sequence[float]) -> list[float]:
    """The box ``(x, y, w, h)`` as a flat clockwise polygon ``[x0, y0, x1, y0, x1, y1, x0, y1]``."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def number(value: float) -> float | int:
    """A coordinate for text output: integral values as ``int``, others rounded to 1e-6 pixel."""
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value
