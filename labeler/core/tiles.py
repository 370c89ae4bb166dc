"""Tile pyramids for images too big to decode whole (gigapixel slides, aerial photos).

An image of more than :data:`PYRAMID_ABOVE_PIXELS` pixels (100 MP: 300 MB of RGB decoded whole,
twice that as the canvas's 32-bit pixels), or a tiled TIFF with a side over
:data:`TILED_TIFF_ABOVE_SIDE` pixels, is never decoded whole. It is read through a **pyramid**:
level ``k`` is the image at ``1/2**k`` size per side, stored as :data:`TILE` x :data:`TILE` tiles,
so any view at any zoom reads only the few tiles it shows, from the level whose pixels match the
screen's.

Coordinates: full-resolution image pixels, origin at the top-left corner of the top-left pixel.
Pixel ``(i, j)`` of level ``k`` covers full-resolution pixels ``[i * 2**k, (i + 1) * 2**k)``
(columns) by ``[j * 2**k, (j + 1) * 2**k)`` (rows); level sizes are those of the stored pages
(about ``size / 2**k``, the last row or column of a level may reach one pixel past the image).
Pixels come back as ``(h, w, 3)`` uint8 RGB, like :func:`labeler.core.images.read_image`.

Why libvips (``pyvips``, the optional ``big`` extra): it streams. Built with
``access="sequential"``, the pyramid is made in one pass over the source, a band of rows at a
time, whatever the image's size (a 40,000 x 40,000 JPEG or PNG never exists in memory); it reads
tiled TIFFs and BigTIFFs tile by tile without decoding the rest; and it writes the pyramid as one
tiled, JPEG-compressed BigTIFF whose pages it reads back, again tile by tile. Pillow and OpenCV
decode such files whole, or not at all.

The cache: one file per image under :func:`pyramid_cache_dir` (``.tiles/`` in the project's
folder, hidden from image listings), named after the image file's identity (resolved path, size
in bytes, modification time), so a changed file gets a new pyramid and the old one is removed. A
pyramid is written under a temporary name (``<name>.part-<pid>-<random>``) and renamed when
complete: a run killed while building leaves only a part file, never used, and removed by the
next build once its writer is gone. For a tiled TIFF the full resolution is read from the file itself (exact, and
no second copy on disk); the pyramid holds the levels from 1/2 down. Other formats (JPEG, PNG,
strip TIFFs, which cannot be read by regions) get their full resolution cached too.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from labeler.core.images import ImageError

if TYPE_CHECKING:
    import pyvips

#: Images with more pixels than this are shown through a pyramid of tiles.
PYRAMID_ABOVE_PIXELS = 100_000_000
#: Tiled TIFFs with a side longer than this are shown through tiles too (they are read by tiles
#: at no cost); smaller ones decode whole quickly, as before.
TILED_TIFF_ABOVE_SIDE = 4096
#: A header saying more pixels than this (100,000 x 100,000) is refused: a bomb, not an image.
MAX_PYRAMID_PIXELS = 10_000_000_000
#: Side of a tile, in pixels of its level.
TILE = 256
#: JPEG quality of the cached levels (visually lossless; what slide viewers use).
CACHE_QUALITY = 90
#: The cache's folder in the project's folder (hidden: listings skip it).
TILES_DIR = ".tiles"

ProgressFn = Callable[[int], None]
"""Called with the percentage done while a pyramid is built (in the building thread)."""


def pyvips_available() -> bool:
    """Whether libvips can be used (``pip install 'labeler[big]'`` installs it)."""
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _vips() -> Any:
    try:
        import pyvips
    except (ImportError, OSError) as exc:
        raise ImageError(
            "this image is too big to decode whole and needs libvips to be shown by tiles (pip install 'labeler[big]')"
        ) from exc
    return pyvips


def pyramid_cache_dir(project_root: str | os.PathLike[str]) -> Path:
    """Where the pyramids of a project's images are kept: ``<project>/.tiles``. Deleting the
    folder is safe (pyramids are rebuilt when next needed)."""
    return Path(project_root) / TILES_DIR


@dataclass(frozen=True)
class SourceInfo:
    """What the header of an image file says: ``width`` x ``height`` as stored, whether it is a
    tiled TIFF, libvips' loader name (``"jpegload"``, ``"tiffload"``, ...), the EXIF orientation."""

    width: int
    height: int
    tiled: bool
    loader: str
    orientation: int

    @property
    def upright_size(self) -> tuple[int, int]:
        """``(width, height)`` after the orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


def _vips_error(path: str | os.PathLike[str], exc: Exception) -> ImageError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[-1] if lines else type(exc).__name__
    return ImageError(f"{os.fspath(path)}: not a readable image ({detail})")


def probe(path: str | os.PathLike[str]) -> SourceInfo:
    """The header of ``path`` through libvips (no pixel is decoded); :class:`ImageError` when it
    is no image libvips reads, or pyvips is not installed."""
    vips = _vips()
    try:
        image = vips.Image.new_from_file(os.fspath(path), access="sequential", revalidate=True)
        fields = set(image.get_fields())
        tiled = "tile-width" in fields and str(image.get("vips-loader")) == "tiffload"
        orientation = int(image.get("orientation")) if "orientation" in fields else 1
        loader = str(image.get("vips-loader")) if "vips-loader" in fields else ""
        return SourceInfo(
            int(image.width), int(image.height), tiled, loader, orientation if 1 <= orientation <= 8 else 1
        )
    except vips.Error as exc:
        raise _vips_error(path, exc) from exc


def needs_pyramid(width: int, height: int, *, tiled: bool = False, above_pixels: int | None = None) -> bool:
    """Whether an image of ``width`` x ``height`` (a tiled TIFF with ``tiled``) is shown by tiles:
    over ``above_pixels`` (default :data:`PYRAMID_ABOVE_PIXELS`), or a tiled TIFF with a side over
    :data:`TILED_TIFF_ABOVE_SIDE`."""
    limit = PYRAMID_ABOVE_PIXELS if above_pixels is None else above_pixels
    return width * height > limit or (tiled and max(width, height) > TILED_TIFF_ABOVE_SIDE)


def pyramid_info(path: str | os.PathLike[str], *, above_pixels: int | None = None) -> SourceInfo | None:
    """The header of ``path`` if the image is to be shown by tiles (:func:`needs_pyramid`), else
    ``None`` (also when pyvips is not installed: such images then decode whole, within the pixel
    limit, as before). Ordinary images cost one header read by Pillow; libvips looks only at the
    big ones and at TIFFs. :class:`ImageError` for files neither can read."""
    from labeler.core.images import read_header

    width, height, _orientation, image_format, _alpha = read_header(path)
    limit = PYRAMID_ABOVE_PIXELS if above_pixels is None else above_pixels
    if image_format != "TIFF" and width * height <= limit:
        return None
    if image_format == "TIFF" and width * height <= limit and max(width, height) <= TILED_TIFF_ABOVE_SIDE:
        return None
    if not pyvips_available():
        return None
    info = probe(path)
    return info if needs_pyramid(info.width, info.height, tiled=info.tiled, above_pixels=limit) else None


def cache_name(path: str | os.PathLike[str]) -> str:
    """The cache file's name for the image at ``path``: ``<path hash>-<identity hash>.tif``,
    where the identity is the resolved path, the size in bytes and the modification time (ns)."""
    resolved = os.path.realpath(os.fspath(path))
    st = os.stat(resolved)
    where = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    identity = hashlib.sha256(f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return f"{where}-{identity.hexdigest()[:16]}.tif"


@dataclass(frozen=True)
class Level:
    """One level of a pyramid: ``index`` ``k``, ``scale = 2**k`` full-resolution pixels per level
    pixel, and its size in level pixels."""

    index: int
    scale: int
    width: int
    height: int

    def grid(self, tile: int = TILE) -> tuple[int, int]:
        """``(columns, rows)`` of tiles."""
        return -(-self.width // tile), -(-self.height // tile)


def _streamed_source(path: str | os.PathLike[str]) -> Any:
    """A libvips source reading ``path`` through Python's buffered file reads.

    libvips maps a file it opens itself into memory: the pages it has read stay in the process's
    resident set until the image is closed, so streaming a 750 MB JPEG counted 750 MB of RSS (page
    cache, but counted). Read through this source, the resident set stays a few MB above what the
    decoder holds. The file is closed when libvips drops the source."""
    vips = _vips()
    handle = open(os.fspath(path), "rb")  # noqa: SIM115 - lives as long as the source, closed with it
    source = vips.SourceCustom()
    source.on_read(handle.read)
    source.on_seek(lambda offset, whence: handle.seek(offset, whence))
    source.labeler_file = handle  # the callbacks' file, kept with the source (and closed by GC)
    return source


def level_for_zoom(levels: tuple[Level, ...], zoom: float, *, max_magnification: float = 1.25) -> int:
    """The coarsest of ``levels`` whose pixels, at ``zoom`` screen pixels per full-resolution
    pixel, are magnified at most ``max_magnification`` times (level 0 when zoomed in further)."""
    best = 0
    for lv in levels:
        if zoom * lv.scale <= max_magnification:
            best = lv.index
    return best


def tiles_in_rect(
    level: Level, x0: float, y0: float, x1: float, y1: float, *, tile: int = TILE
) -> list[tuple[int, int]]:
    """``(col, row)`` of the tiles of ``level`` that meet the full-resolution rectangle
    ``[x0, x1) x [y0, y1)``, those nearest its centre first."""
    span = tile * level.scale  # full-resolution pixels per tile
    cols, rows = level.grid(tile)
    c0, c1 = max(0, int(x0 // span)), min(cols, int(-(-x1 // span)))
    r0, r1 = max(0, int(y0 // span)), min(rows, int(-(-y1 // span)))
    cx, cy = (x0 + x1) / 2 / span - 0.5, (y0 + y1) / 2 / span - 0.5
    found = [(c, r) for r in range(r0, r1) for c in range(c0, c1)]
    found.sort(key=lambda cr: (cr[0] - cx) ** 2 + (cr[1] - cy) ** 2)
    return found


def _as_rgb(image: Any) -> Any:
    """Any libvips image as 3-band uchar sRGB (alpha composited on white, as read_image does)."""
    if image.hasalpha():
        image = image.flatten(background=[255.0] * (image.bands - 1))
    if image.format != "uchar":
        image = image.colourspace("srgb" if image.bands >= 3 else "b-w").cast("uchar")
    if image.bands == 1:
        image = image.bandjoin([image, image])
    elif image.bands == 2:
        image = image.extract_band(0).bandjoin([image.extract_band(0)] * 2)
    elif image.bands > 3:
        image = image.extract_band(0, n=3)
    return image


def _close_all(files: list[IO[bytes]]) -> None:
    for handle in files:
        handle.close()


class TilePyramid:
    """An image opened through its pyramid: :meth:`read_region` and :meth:`read_tile` read the
    pixels of any part of any level, decoding only the tiles it covers. Safe to read from several
    threads at once (libvips images are immutable; each read makes its own region)."""

    def __init__(self, source: Path, cache: Path, levels: tuple[Level, ...], *, source_level0: bool) -> None:
        self.source = source
        self.cache = cache
        self.levels = levels
        self.size = (levels[0].width, levels[0].height)
        self._source_level0 = source_level0
        self._pages: dict[int, Any] = {}
        self._streams: list[Any] = []
        self._files: list[IO[bytes]] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._files)  # when the last reader lets go of it

    def __repr__(self) -> str:
        return f"TilePyramid({self.source.name!r}, {self.size[0]} x {self.size[1]}, {len(self.levels)} levels)"

    def _page(self, index: int) -> Any:
        with self._lock:
            page = self._pages.get(index)
        if page is not None:
            return page
        vips = _vips()
        from_source = index == 0 and self._source_level0
        path = self.source if from_source else self.cache
        try:
            # Through Python's file reads (see _streamed_source): a long session panning over a
            # 40,000 x 40,000 image would otherwise keep every page of the files it read resident.
            stream = _streamed_source(path)
        except OSError as exc:
            raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        try:
            if from_source:
                page = _as_rgb(vips.Image.new_from_source(stream, "", access="random", fail_on="truncated"))
            else:
                offset = 1 if self._source_level0 else 0
                page = vips.Image.new_from_source(stream, "", page=index - offset, access="random", fail_on="truncated")
        except vips.Error as exc:
            stream.labeler_file.close()
            raise _vips_error(path, exc) from exc
        with self._lock:
            if index not in self._pages:
                self._pages[index] = page
                self._streams.append(stream)  # as long as the page: libvips reads through it
                self._files.append(stream.labeler_file)
            else:
                stream.labeler_file.close()
            return self._pages[index]

    def level(self, index: int) -> Level:
        if not 0 <= index < len(self.levels):
            raise ValueError(f"level {index} is not in 0..{len(self.levels) - 1}")
        return self.levels[index]

    def level_for(self, max_side: int) -> int:
        """The finest level whose longest side is at most ``max_side`` (the coarsest if none is)."""
        for lv in self.levels:
            if max(lv.width, lv.height) <= max_side:
                return lv.index
        return self.levels[-1].index

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Pixels ``[x, x + width) x [y, y + height)`` of ``level``, in that level's pixels, as
        ``(height, width, 3)`` uint8 RGB. The rectangle must lie within the level."""
        lv = self.level(level)
        if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > lv.width or y + height > lv.height:
            raise ValueError(f"region {x},{y} {width}x{height} is not within level {level} ({lv.width}x{lv.height})")
        vips = _vips()
        page = self._page(level)
        try:
            pixels: np.ndarray = page.crop(x, y, width, height).numpy()
        except vips.Error as exc:
            raise _vips_error(self.source, exc) from exc
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        return np.ascontiguousarray(pixels.reshape(height, width, -1)[..., :3])

    def tile_rect(self, level: int, col: int, row: int, tile: int = TILE) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of tile ``(col, row)`` of ``level`` in level pixels (edge tiles are smaller)."""
        lv = self.level(level)
        x, y = col * tile, row * tile
        return x, y, min(tile, lv.width - x), min(tile, lv.height - y)

    def read_tile(self, level: int, col: int, row: int, tile: int = TILE) -> np.ndarray:
        """Tile ``(col, row)`` of ``level`` (see :meth:`tile_rect`) as ``(h, w, 3)`` uint8 RGB."""
        return self.read_region(level, *self.tile_rect(level, col, row, tile))

    def read_level(self, level: int) -> np.ndarray:
        """The whole of ``level`` (for the small overview levels only)."""
        lv = self.level(level)
        return self.read_region(level, 0, 0, lv.width, lv.height)


def open_pyramid(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> TilePyramid:
    """The pyramid of the image at ``path``, from ``cache_dir`` or built there first.

    Building streams the source once (minutes for a 40,000 x 40,000 image, a few hundred MB of
    memory); ``progress`` hears the percentage done, and setting ``cancel`` stops the build
    (:class:`ImageError`, nothing is left in the cache). A cached pyramid that cannot be read is
    rebuilt once. Raises :class:`ImageError` for files that are missing, corrupt or over
    :data:`MAX_PYRAMID_PIXELS`.
    """
    source = Path(os.path.realpath(os.fspath(path)))
    try:
        name = cache_name(source)
    except OSError as exc:
        raise ImageError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    info = probe(source)
    if info.width * info.height > MAX_PYRAMID_PIXELS:
        raise ImageError(
            f"{source}: {info.width} x {info.height} pixels is over the limit of {MAX_PYRAMID_PIXELS:,} for tiled images"
        )
    source_level0 = info.tiled and info.orientation == 1
    folder = Path(cache_dir)
    target = folder / name
    for attempt in (0, 1):
        if not target.is_file():
            build_pyramid(source, target, info=info, progress=progress, cancel=cancel)
        try:
            return _opened(source, target, info, source_level0=source_level0)
        except ImageError:
            if attempt == 1:
                raise
            target.unlink(missing_ok=True)  # unreadable (a disk error, a hand edit): build it again
    raise AssertionError("unreachable")


def _opened(source: Path, target: Path, info: SourceInfo, *, source_level0: bool) -> TilePyramid:
    vips = _vips()
    try:
        first = vips.Image.new_from_file(os.fspath(target), access="random", fail_on="truncated", revalidate=True)
        pages = int(first.get("n-pages")) if "n-pages" in first.get_fields() else 1
        sizes = [(int(first.width), int(first.height))]
        for k in range(1, pages):
            page = vips.Image.new_from_file(os.fspath(target), page=k, access="random", revalidate=True)
            sizes.append((int(page.width), int(page.height)))
    except vips.Error as exc:
        raise _vips_error(target, exc) from exc
    if source_level0:
        sizes = [info.upright_size, *sizes]
    if sizes[0] != info.upright_size or any(b[0] > a[0] or b[1] > a[1] for a, b in itertools.pairwise(sizes)):
        raise ImageError(f"{target}: the cached pyramid does not match {source.name}")
    levels = tuple(Level(k, 2**k, w, h) for k, (w, h) in enumerate(sizes))
    return TilePyramid(source, target, levels, source_level0=source_level0)


def _writer_alive(part: Path) -> bool:
    """Whether the process named in a part file's suffix (``.part-<pid>-<random>``) still runs."""
    try:
        pid = int(part.name.split(".part-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_folder(folder: Path, target: Path) -> None:
    """Remove older pyramids of the same image file and part files whose writer is gone."""
    where = target.name.split("-", 1)[0]
    for entry in folder.glob(f"{where}-*"):
        if entry == target:
            continue
        if ".part-" in entry.name and _writer_alive(entry):
            continue
        entry.unlink(missing_ok=True)


class _BuildWatch:
    """The ``eval`` handler of a build: reports progress, sets libvips' kill flag on cancel.

    libvips may keep the built image in its operation cache after the build, signal handlers and
    all, so the handler (and pyvips' handle to it, :data:`_WATCHED`) must outlive the Python image
    (a dead handle crashes the process); once the build is over it is switched off."""

    def __init__(self, progress: ProgressFn | None, cancel: threading.Event | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self.active = True

    def __call__(self, image: pyvips.Image, state: Any) -> None:
        if not self.active:
            return
        if self.cancel is not None and self.cancel.is_set():
            image.set_kill(True)
        if self.progress is not None:
            self.progress(int(state.percent))


_WATCHED: list[object] = []


def build_pyramid(
    source: Path,
    target: Path,
    *,
    info: SourceInfo,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> None:
    """Write the pyramid of ``source`` to ``target`` (see the module's docstring): streamed from the
    source, written to ``<target>.part-<pid>-<random>`` and renamed when complete."""
    vips = _vips()
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_folder(target.parent, target)
    watch = _BuildWatch(progress, cancel)
    stream: Any = None
    # the process id tells a dead writer's part from a live one; the random part keeps two builds
    # of one image in one process (the user came back to it while the first was being stopped) apart
    part = target.with_name(f"{target.name}.part-{os.getpid()}-{secrets.token_hex(4)}")
    source_level0 = info.tiled and info.orientation == 1
    try:
        # Sequential: libvips reads the source once, top to bottom, a few rows at a time (see
        # _streamed_source). An image that must be turned (EXIF orientation) is read at random
        # instead (rare, and slower: libvips decodes it to a temporary file first).
        if info.orientation == 1:  # read once, top to bottom, through Python's file reads
            stream = _streamed_source(source)  # kept (below) until libvips is done with it
            image = vips.Image.new_from_source(stream, "", access="sequential", fail_on="truncated")
        else:
            image = vips.Image.new_from_file(
                os.fspath(source),
                access="random",
                fail_on="truncated",
                revalidate=True,  # a fresh image, never libvips' cached one with an earlier build's signals
            ).autorot()
        image = _as_rgb(image)
        if source_level0:
            image = image.shrink(2, 2)  # level 0 is read from the tiled source itself
        if progress is not None or cancel is not None:
            image.set_progress(True)
            image.signal_connect("eval", watch)
            _WATCHED.append(getattr(image, "_handles", None))  # see _BuildWatch
        image.tiffsave(
            os.fspath(part),
            tile=True,
            tile_width=TILE,
            tile_height=TILE,
            pyramid=True,
            compression="jpeg",
            Q=CACHE_QUALITY,
            bigtiff=True,
            strip=True,
        )
        if cancel is not None and cancel.is_set():
            raise ImageError(f"{source}: building the tiles was cancelled")
        os.replace(part, target)
        if progress is not None:
            progress(100)
    except vips.Error as exc:
        if cancel is not None and cancel.is_set():
            raise ImageError(f"{source}: building the tiles was cancelled") from exc
        raise _vips_error(source, exc) from exc
    except OSError as exc:
        raise ImageError(f"{target.parent}: cannot write the tiles of {source.name} ({exc.strerror or exc})") from exc
    finally:
        watch.active = False
        if stream is not None:  # only now: libvips reads through it until the last tile is written
            stream.labeler_file.close()
        part.unlink(missing_ok=True)


def thumbnail(path: str | os.PathLike[str], side: int) -> np.ndarray:
    """The image at ``path`` shrunk to at most ``side`` pixels a side, as ``(h, w, 3)`` uint8 RGB,
    by libvips while streaming (shrink-on-load for JPEG): a few MB of memory whatever the image's
    size, where a whole decode of a 150 MP TIFF takes 450 MB. :class:`ImageError` if unreadable."""
    vips = _vips()
    try:
        stream = _streamed_source(path)  # must outlive every read libvips makes of it
    except OSError as exc:
        raise ImageError(f"{os.fspath(path)}: cannot read ({exc.strerror or exc})") from exc
    try:
        image = vips.Image.thumbnail_source(stream, side, size="down", fail_on="truncated")
        pixels: np.ndarray = _as_rgb(image).numpy()
    except vips.Error as exc:
        raise _vips_error(path, exc) from exc
    finally:
        stream.labeler_file.close()
    return np.ascontiguousarray(pixels.reshape(pixels.shape[0], pixels.shape[1], -1)[..., :3])


def clear_cache(cache_dir: str | os.PathLike[str]) -> int:
    """Delete every pyramid in ``cache_dir`` not being written now; the number of files removed."""
    folder = Path(cache_dir)
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.is_file() and not (".part-" in entry.name and _writer_alive(entry)):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


__all__ = [
    "Level",
    "SourceInfo",
    "TilePyramid",
    "build_pyramid",
    "cache_name",
    "clear_cache",
    "level_for_zoom",
    "needs_pyramid",
    "open_pyramid",
    "probe",
    "pyramid_cache_dir",
    "pyramid_info",
    "pyvips_available",
    "thumbnail",
    "tiles_in_rect",
]
