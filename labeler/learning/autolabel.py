"""Auto-labelling: a model version's proposals written into the project.

For the GUI (in a worker thread)::

    loaded = load_model(project, "segmenter")  # the active version
    for step in iter_auto_label(project, loaded, [image_id]):
        ...  # AutoLabelProgress after each image

and for "auto-label all" it runs ``labeler auto-label PROJECT --plugin NAME --undone --progress json``
as a child process. Stopping the generator (``close()``, or leaving the loop) is the cancel: what
was predicted so far is written, nothing else changes.

Speed: images go in runs of consecutive images to a few streams (threads, one per core), each
carrying its run through decoding, the network (small inputs batched; on the CPU the streams
share torch's threads) and proposals, so one stream's network runs while another decodes; this
thread reports in order and writes in batches (one transaction per ``write_every`` images or two
seconds).

Proposals replace the same plugin's pending proposals on each image (accepted, rejected and human
annotations are never touched; see ``Project.replace_proposals``), leave out those that repeat an
accepted or rejected label (:mod:`labeler.core.duplicates`), carry the version id and the
score, and the image's uncertainty is stored for "next most uncertain".

One image never costs more than a stated budget: an image read through a tile pyramid (over
100 MP, or a tiled TIFF with a side over 4096) is predicted by a detection or segmentation plugin
by overlapping full-resolution tiles, stitched (:mod:`labeler.learning.tiled`; progress per batch
of tiles in :attr:`AutoLabelProgress.tiles`, cancel between batches); another image over
:data:`labeler.learning.bigimages.PREDICT_PIXELS` (and any image for the localizer) is decoded
small and predicted at a reduced size, its proposals scaled back; an image that cannot be read (a
corrupt tile), is not a regular file (a pipe, a device) or runs out of memory is skipped and
reported while the run goes on, its earlier proposals kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from labeler.core.annotation import Annotation, State
from labeler.core.duplicates import EXISTING_STATES, drop_duplicates
from labeler.learning.api import PluginError, Prediction, decode_side
from labeler.learning.checkpoints import LoadedModel, load_selection, load_version
from labeler.learning.plugins import plugin_call
from labeler.learning.predict import forward, network_input, outputs_to_prediction

if TYPE_CHECKING:
    from pathlib import Path

    from labeler.core.store import Project

Scope = Literal["undone", "all"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) into ``(K, N)``."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard takes K/N with whole numbers, e.g. 1/4, not {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N (shards count from 1), not {text!r}")
    return k, n


def in_shard(image_id: int, shard: tuple[int, int] | None) -> bool:
    """Whether an image belongs to shard ``(K, N)``: by id, ``id % N == K - 1``, so the split does not
    depend on when each shard's process lists the images."""
    return shard is None or image_id % shard[1] == shard[0] - 1


def select_images(project: Project, *, scope: Scope = "undone", shard: tuple[int, int] | None = None) -> list[int]:
    """Ids of the images to auto-label: not done ones (``undone``) or all, within ``shard``."""
    records = project.images(done=False) if scope == "undone" else project.images()
    return [r.id for r in records if in_shard(r.id, shard)]


def load_model(
    project: Project,
    plugin_name: str,
    *,
    version_id: int | None = None,
    device: str = "cpu",
    selection: bool = False,
) -> LoadedModel:
    """The plugin's active version (or ``version_id``), loaded: its final weights, or with
    ``selection`` the weights it was judged by (:func:`~labeler.learning.checkpoints.load_selection`).
    Errors say what to do."""
    from labeler.core.store import ProjectError
    from labeler.learning.plugins import get_plugin

    plugin = get_plugin(plugin_name)
    if version_id is None:
        version = project.active_model_version(plugin_name)
        if version is None:
            raise ProjectError(
                f"plugin {plugin_name!r} has no trained model in this project yet; run 'labeler train' first"
            )
    else:
        version = project.model_version(version_id)
    return (load_selection if selection else load_version)(project, version, plugin, device=device)


@dataclass(frozen=True)
class AutoLabelProgress:
    """After each image: how far (``done`` of ``total``), that image's result, and the pace."""

    done: int
    total: int
    image_id: int
    proposals: int
    uncertainty: float | None
    elapsed: float
    images_per_second: float
    error: str | None = None
    tiles: tuple[int, int] | None = None
    """While an image is predicted by tiles (:mod:`labeler.learning.tiled`): ``(tiles done, tiles
    in all)``. Such a step reports no finished image (``done`` counts the images before it;
    ``proposals`` is 0); the step after the last tile reports the image."""


@dataclass(frozen=True)
class AutoLabelResult:
    """A whole run: images labelled, proposals written, seconds, and images that failed (id -> why)."""

    version_id: int
    images: int
    proposals: int
    seconds: float
    cancelled: bool
    failed: dict[int, str] = field(default_factory=dict)


def _to_annotations(prediction: Prediction, image_id: int, version_id: int) -> list[Annotation]:
    return [
        Annotation(
            image_id=image_id,
            category_id=p.category_id,
            kind=p.kind,
            box_xywh=p.box_xywh,
            rle=p.rle,
            polygons=p.polygons,
            state=State.PROPOSED,
            model_version=version_id,
            score=float(p.score),
        )
        for p in prediction.proposals
    ]


BATCH_SIZE = 16
"""Most images that auto-labelling sends through the network at once (see :func:`_batches`)."""
BATCH_ELEMENTS = 4_000_000
"""Most input numbers (all images of a batch together) that auto-labelling sends through the
network at once on a GPU; larger images go one by one."""
CPU_BATCH_IMAGE_ELEMENTS = 1 << 16
"""On the CPU, only inputs of at most this many numbers each are batched (up to ``batch_size``):
batching pays there only for small inputs, whose batch's activations still fit the caches (the
figures are in ``benchmarks/README.md``)."""
CHUNK_SECONDS = 0.5
"""Auto-labelling hands each stream runs of images sized to take it about this long, so progress
and cancel stay prompt whatever the image size."""
CHUNK_ELEMENTS = 1 << 25
"""Most network-input numbers that the runs being worked on hold together (128 MB of float32), so
memory stays bounded (a run is never shorter than one image)."""
MAX_WORKERS = 8
"""Default number of streams: one per core, up to this many (more would hold more images in
memory at once for little gain)."""
TILE_PROGRESS_SECONDS = 0.5
"""While an image is predicted by tiles, its progress is reported this often."""


def _split_outputs(outputs: Any, n: int) -> list[Any] | None:
    """A batch's outputs as ``n`` batch-of-one outputs (tensors, or dicts / tuples / lists of them,
    each with a leading batch dimension of ``n``); ``None`` if they do not have that shape."""
    import torch

    if isinstance(outputs, torch.Tensor):
        if outputs.ndim == 0 or outputs.shape[0] != n:
            return None
        return [outputs[i : i + 1] for i in range(n)]
    if isinstance(outputs, dict):
        parts = {k: _split_outputs(v, n) for k, v in outputs.items()}
        split = {k: v for k, v in parts.items() if v is not None}
        if len(split) != len(parts):
            return None
        return [{k: v[i] for k, v in split.items()} for i in range(n)]
    if isinstance(outputs, (tuple, list)):
        items = [_split_outputs(v, n) for v in outputs]
        kept = [v for v in items if v is not None]
        if len(kept) != len(items):
            return None
        return [type(outputs)(v[i] for v in kept) for i in range(n)]
    return None


def _forward_group(loaded: LoadedModel, group: Sequence[_Loaded]) -> list[Any]:
    """Network outputs for each image of ``group`` (``None`` for unreadable ones): one forward pass
    for the whole group when the outputs split per image, else one per image."""
    import torch

    if group[0].x is None:
        return [None] * len(group)
    if len(group) > 1:
        batch = torch.cat([g.x for g in group]).to(loaded.device)
        split = _split_outputs(forward(loaded.plugin, loaded.model, batch), len(group))
        if split is not None:
            return split
    return [forward(loaded.plugin, loaded.model, g.x.to(loaded.device)) for g in group]


@dataclass
class _Loaded:
    """One image made ready in the worker thread: its full ``(h, w)``, the ``(h, w)`` it is
    predicted at (smaller for an image over the memory budget, see :mod:`labeler.learning.bigimages`)
    and network input, or why not."""

    shape: tuple[int, int] | None = None
    x: Any = None
    error: str | None = None
    plugin_error: BaseException | None = None
    work: tuple[int, int] | None = None
    prediction: Prediction | None = None
    """Already made, for an image predicted by tiles (it has no ``x``)."""


@dataclass
class _Tiling:
    """What the streams need to predict huge images by tiles (:mod:`labeler.learning.tiled`): the
    pyramid cache, the tile side (from the project, once), the run's cancel, and the tiles done of
    the images being tiled (by position in the run), for the progress reports."""

    project: Project
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: dict[int, tuple[int, int]] = field(default_factory=dict)
    _side: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def side(self, task: str) -> int:
        from labeler.learning.tiled import tile_side

        with self._lock:
            if self._side is None:
                self._side = tile_side(self.project, task)
            return self._side

    def predict(self, loaded: LoadedModel, path: Path, info: Any, position: int) -> Prediction:
        from labeler.core.tiles import pyramid_cache_dir
        from labeler.learning.tiled import predict_tiled

        def progress(done: int, total: int) -> None:
            self.progress[position] = (done, total)

        try:
            return predict_tiled(
                loaded,
                path,
                info,
                cache_dir=pyramid_cache_dir(self.project.root),
                side=self.side(loaded.plugin.task),
                cancel=self.cancel,
                progress=progress,
            )
        finally:
            self.progress.pop(position, None)


def _decode(path: Path, side: int | None) -> tuple[Any, tuple[int, int], tuple[int, int]]:
    """``(pixels, full (h, w), (h, w) to predict at)``: the image decoded as small as the plugin
    (``side``) and the memory budget allow; an image over :data:`~labeler.learning.bigimages.PREDICT_PIXELS`
    comes resized to fit it."""
    import cv2

    from labeler.core.images import read_image, read_image_at_least, read_image_size
    from labeler.learning.bigimages import work_shape

    width, height = read_image_size(path)  # the header only (a pipe or device is refused here)
    work = work_shape(height, width)
    if work == (height, width):
        if side is None:
            image = read_image(path)
            return image, (int(image.shape[0]), int(image.shape[1])), (int(image.shape[0]), int(image.shape[1]))
        image, shape = read_image_at_least(path, side)
        return image, shape, shape
    # over the budget: decode small (JPEG in the decoder), then fit the budget exactly
    image, shape = read_image_at_least(path, max(side or 1, min(work)))
    if image.shape[0] * image.shape[1] > work[0] * work[1]:
        image = cv2.resize(image, (work[1], work[0]), interpolation=cv2.INTER_AREA)
    work = (int(image.shape[0]), int(image.shape[1])) if side is None else work
    return image, shape, work


def _load(
    path: Path, loaded: LoadedModel, side: int | None, tiling: _Tiling | None = None, position: int = 0
) -> _Loaded:
    """Decode an image (as small as ``side`` and the memory budget allow, see :func:`_decode`) and
    make its network input (on the CPU); or, for an image that ``tiling`` predicts by tiles, its
    whole prediction. An unreadable image (a corrupt tile), or one that does not fit in memory,
    is an ``error`` (reported, skipped); a plugin failing in ``inputs`` is a ``plugin_error``
    (raised)."""
    from labeler.learning.tiled import TilingCancelled, tiled_info

    if tiling is not None:
        try:
            info = tiled_info(path, loaded.plugin.task)
            if info is not None:
                width, height = info.upright_size
                prediction = tiling.predict(loaded, path, info, position)
                return _Loaded(shape=(height, width), work=(height, width), prediction=prediction)
        except PluginError as exc:
            return _Loaded(plugin_error=exc)
        except TilingCancelled as exc:
            return _Loaded(error=str(exc))
        except MemoryError:
            return _Loaded(error="the image does not fit in memory")
        except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the run
            return _Loaded(error=f"{type(exc).__name__}: {exc}")
    try:
        image, shape, work = _decode(path, side)
    except MemoryError:
        return _Loaded(error="the image does not fit in memory")
    except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the run
        return _Loaded(error=f"{type(exc).__name__}: {exc}")
    try:
        x = network_input(loaded.plugin, image, settings=loaded.settings, device="cpu")
    except MemoryError:
        return _Loaded(error="the image does not fit in memory")
    except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
        return _Loaded(plugin_error=exc)
    return _Loaded(shape=shape, x=x, work=work)


def _predict(loaded: LoadedModel, ready: _Loaded, outputs: Any) -> Prediction | None:
    """The checked proposals for one image's network outputs (``None`` for an unreadable image);
    an image predicted at a reduced size has its proposals scaled to its own size."""
    from labeler.learning.bigimages import scale_prediction
    from labeler.learning.predict import check_prediction

    if ready.shape is None:
        return None
    if ready.prediction is not None:
        return ready.prediction
    work = ready.work or ready.shape
    prediction = outputs_to_prediction(
        loaded.plugin, outputs, image_shape=work, classes=loaded.classes, settings=loaded.settings
    )
    if work == ready.shape:
        return prediction
    scaled = scale_prediction(prediction, source=work, target=ready.shape)
    return check_prediction(loaded.plugin, scaled, image_shape=ready.shape, classes=loaded.classes)


def _batches(ready: Sequence[_Loaded], *, batch_size: int, on_gpu: bool) -> Iterator[list[_Loaded]]:
    """``ready`` in order, cut into groups that go through the network together: consecutive
    inputs of one shape, up to ``batch_size`` images and, on a GPU, :data:`BATCH_ELEMENTS` numbers
    in all; on the CPU only inputs of at most :data:`CPU_BATCH_IMAGE_ELEMENTS` numbers each are
    grouped. Unreadable images go alone."""
    group: list[_Loaded] = []
    elements = 0
    for item in ready:
        size = item.x.numel() if item.x is not None else 0
        fits = (
            group
            and item.x is not None
            and group[0].x is not None
            and item.x.shape == group[0].x.shape
            and len(group) < batch_size
            and (elements + size <= BATCH_ELEMENTS if on_gpu else size <= CPU_BATCH_IMAGE_ELEMENTS)
        )
        if group and not fits:
            yield group
            group, elements = [], 0
        group.append(item)
        elements += size
    if group:
        yield group


@dataclass
class _Task:
    """What a stream made of a run of consecutive images: each image's load (network input dropped
    once used) and proposals, the plugin failure that cut it short (after the images before it), and
    its pace."""

    ready: list[_Loaded]
    predictions: list[Prediction | None]
    failure: BaseException | None
    seconds: float
    input_elements: int


def _run_task(
    loaded: LoadedModel,
    paths: Sequence[Path],
    side: int | None,
    *,
    batch_size: int,
    on_gpu: bool,
    tiling: _Tiling | None = None,
    first: int = 0,
) -> _Task:
    """Carry consecutive images through: decode and inputs, the network (see :func:`_batches`), proposals."""
    start = time.monotonic()
    ready = [_load(path, loaded, side, tiling, first + n) for n, path in enumerate(paths)]
    elements = sum(r.x.numel() for r in ready if r.x is not None)
    failure = next((r.plugin_error for r in ready if r.plugin_error is not None), None)
    if failure is not None:
        ready = ready[: next(n for n, r in enumerate(ready) if r.plugin_error is not None)]
    predictions: list[Prediction | None] = []
    try:
        for group in _batches(ready, batch_size=batch_size, on_gpu=on_gpu):
            try:
                outputs = _forward_group(loaded, group)
                for r in group:
                    r.x = None  # the input is no longer needed; results may wait a while to be reported
                done = [_predict(loaded, r, out) for r, out in zip(group, outputs, strict=True)]
            except MemoryError:  # these images are skipped and reported; the run goes on
                done = []
                for r in group:
                    r.x, r.shape, r.error = None, None, "the image does not fit in memory"
                    done.append(None)
            predictions += done
    except PluginError as exc:  # the images before the one that failed still count
        failure = exc
        ready = ready[: len(predictions)]
    return _Task(
        ready=ready, predictions=predictions, failure=failure, seconds=time.monotonic() - start, input_elements=elements
    )


def _stream_plan(workers: int | None, images: int, *, on_gpu: bool) -> tuple[int, int | None]:
    """``(streams, torch threads per stream)`` for auto-labelling ``images`` images: ``workers``
    streams (default one per core, at most :data:`MAX_WORKERS`), never more than images; on the
    CPU several streams share torch's threads, one leaves them alone (``None``)."""
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    streams = max(1, min(workers, images))
    if streams == 1 or on_gpu:
        return streams, None
    import torch

    return streams, max(1, torch.get_num_threads() // streams)


@contextmanager
def _torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``count`` (process-wide) for the block, then restored; ``None``
    leaves them alone."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def iter_auto_label(
    project: Project,
    loaded: LoadedModel,
    image_ids: Sequence[int],
    *,
    write_every: int = 32,
    write_seconds: float = 2.0,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    chunk_seconds: float = CHUNK_SECONDS,
) -> Generator[AutoLabelProgress, None, None]:
    """Predict and store proposals for ``image_ids``, yielding progress after each image.

    ``workers`` streams (threads; default one per core, at most :data:`MAX_WORKERS`, never more
    than images) each take a task, a run of consecutive images, and carry it through: decode,
    network inputs (``plugin.inputs``), the forward pass (same-shaped small inputs together, see
    :func:`_batches`, the outputs split per image), proposals (``plugin.proposals``); so a plugin's
    ``inputs`` and ``proposals`` must be thread-safe. On the CPU the streams share the cores: each
    forward pass runs on ``threads // streams`` of torch's threads (set for the run, restored after;
    one stream leaves them alone), so while one stream decodes or makes proposals another's network
    runs (the figures are in ``benchmarks/README.md``).

    This thread takes the tasks' results in order, reports each image and writes. The first tasks
    hold one image each, so progress starts at once; later ones are sized from the pace so far to
    take about ``chunk_seconds`` per stream (at most 256 images, and :data:`CHUNK_ELEMENTS` input
    numbers over all streams), so progress and cancel stay prompt whatever the image size.

    Writes happen in batches (one transaction per ``write_every`` images or ``write_seconds``);
    closing the generator early writes what was reported and stops (the tasks running then finish
    and are dropped). Images that cannot be read are reported (``error``) and skipped; a
    misbehaving plugin raises :class:`~labeler.learning.api.PluginError` (after writing the images
    before it).
    """
    side = plugin_call(loaded.plugin, "decode_side", partial(decode_side, loaded.plugin, loaded.settings))
    version_id = int(loaded.version.id or 0)
    ids = list(image_ids)
    writer = _ProposalWriter(project, loaded.plugin.name, write_every=write_every, write_seconds=write_seconds)
    start = time.monotonic()
    on_gpu = str(loaded.device).startswith("cuda")
    streams, threads = _stream_plan(workers, len(ids), on_gpu=on_gpu)
    tasks = _Tasks(project, loaded, ids, side, streams=streams, batch_size=max(1, batch_size), on_gpu=on_gpu)
    try:
        with _torch_threads(threads):
            tasks.submit()
            while tasks.queued:
                first, future = tasks.queued.popleft()
                while True:  # an image predicted by tiles reports its tiles meanwhile
                    try:
                        task = future.result(timeout=TILE_PROGRESS_SECONDS)
                        break
                    except FutureTimeout:
                        tiling = tasks.tiling.progress.copy()
                    for position, tiles in tiling.items():
                        elapsed = time.monotonic() - start
                        yield AutoLabelProgress(
                            done=position,
                            total=len(ids),
                            image_id=ids[position],
                            proposals=0,
                            uncertainty=None,
                            elapsed=elapsed,
                            images_per_second=position / elapsed if elapsed > 0 else 0.0,
                            tiles=tiles,
                        )
                tasks.task_size = _next_task_size(
                    task, left=len(ids) - tasks.submitted, streams=streams, chunk_seconds=chunk_seconds
                )
                if task.failure is None:
                    tasks.submit()
                for offset, (ready, prediction) in enumerate(zip(task.ready, task.predictions, strict=True)):
                    position = first + offset
                    image_id = ids[position]
                    count = writer.add(image_id, ready, prediction, version_id)
                    elapsed = time.monotonic() - start
                    yield AutoLabelProgress(
                        done=position + 1,
                        total=len(ids),
                        image_id=image_id,
                        proposals=count,
                        uncertainty=prediction.uncertainty if prediction is not None else None,
                        elapsed=elapsed,
                        images_per_second=(position + 1) / elapsed if elapsed > 0 else 0.0,
                        error=ready.error,
                    )
                if task.failure is not None:
                    raise task.failure
    finally:
        tasks.close()
        writer.flush()


class _ProposalWriter:
    """Images' proposals waiting to be stored: one transaction per ``write_every`` images or
    ``write_seconds``, and at :meth:`flush`."""

    def __init__(self, project: Project, plugin: str, *, write_every: int, write_seconds: float) -> None:
        self.project, self.plugin = project, plugin
        self.write_every, self.write_seconds = write_every, write_seconds
        self.pending: list[tuple[int, list[Annotation], float, tuple[int, int]]] = []
        self.last_write = time.monotonic()

    def add(self, image_id: int, ready: _Loaded, prediction: Prediction | None, version_id: int) -> int:
        """Queue an image's proposals (none when it failed), less those that repeat a label it
        already has; how many are left (what the run reports, as stored)."""
        if prediction is None:
            return 0
        assert ready.shape is not None
        h, w = ready.shape[0], ready.shape[1]
        anns = drop_duplicates(
            _to_annotations(prediction, image_id, version_id),
            self.project.annotations(image_id, states=EXISTING_STATES),
            height=h,
            width=w,
        )
        self.pending.append((image_id, anns, prediction.uncertainty, (w, h)))
        if len(self.pending) >= self.write_every or time.monotonic() - self.last_write >= self.write_seconds:
            self.flush()
        return len(anns)

    def flush(self) -> None:
        """Store what is pending, dropping proposals that repeat an existing label (again: one
        may have been saved since the image was queued)."""
        project = self.project
        if self.pending:
            with project.transaction():
                for image_id, anns, uncertainty, (w, h) in self.pending:
                    fresh = drop_duplicates(
                        anns, project.annotations(image_id, states=EXISTING_STATES), height=h, width=w
                    )
                    project.replace_proposals(image_id, plugin=self.plugin, proposals=fresh, uncertainty=uncertainty)
                    record = project.image(image_id)
                    if record.width is None or record.height is None:
                        project.set_image_size(image_id, w, h)
            self.pending.clear()
        self.last_write = time.monotonic()


class _Tasks:
    """Runs of consecutive images handed to the streams (a thread pool), taken back in order."""

    def __init__(
        self,
        project: Project,
        loaded: LoadedModel,
        ids: Sequence[int],
        side: int | None,
        *,
        streams: int,
        batch_size: int,
        on_gpu: bool,
    ) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self.project, self.loaded, self.ids, self.side = project, loaded, ids, side
        self.streams, self.batch_size, self.on_gpu = streams, batch_size, on_gpu
        self.pool = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="labeler-autolabel")
        self.queued: deque[tuple[int, Future[_Task]]] = deque()
        self.submitted = 0  # images handed to the streams so far
        self.task_size = 1
        self.tiling = _Tiling(project)

    def submit(self) -> None:
        """Keep every stream busy with one task and the next one waiting."""
        ids, project = self.ids, self.project
        while self.submitted < len(ids) and len(self.queued) < 2 * self.streams:
            paths = [
                project.root / project.image(i).path for i in ids[self.submitted : self.submitted + self.task_size]
            ]
            self.queued.append(
                (
                    self.submitted,
                    self.pool.submit(
                        _run_task,
                        self.loaded,
                        paths,
                        self.side,
                        batch_size=self.batch_size,
                        on_gpu=self.on_gpu,
                        tiling=self.tiling,
                        first=self.submitted,
                    ),
                )
            )
            self.submitted += len(paths)

    def close(self) -> None:
        """Drop the tasks not yet taken (those running finish first; an image being predicted by
        tiles stops at its next batch of tiles)."""
        self.tiling.cancel.set()
        for _, future in self.queued:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _next_task_size(task: _Task, *, left: int, streams: int, chunk_seconds: float) -> int:
    """Images in the next tasks, from ``task``'s pace: about ``chunk_seconds`` per stream, at most
    256 images and :data:`CHUNK_ELEMENTS` input numbers over all streams, and the ``left`` images
    shared out so that no stream is idle at the end."""
    count = max(1, len(task.ready))
    per_image = task.seconds / count  # one stream's time per image
    per_input = max(1, task.input_elements // count)
    return max(
        1,
        min(
            int(chunk_seconds / max(per_image, 1e-6)), CHUNK_ELEMENTS // (per_input * streams), 256, -(-left // streams)
        ),
    )


def auto_label(
    project: Project,
    loaded: LoadedModel,
    image_ids: Sequence[int],
    *,
    progress: Callable[[AutoLabelProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    write_every: int = 32,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
) -> AutoLabelResult:
    """Run :func:`iter_auto_label` to the end (or until ``should_stop()``), returning a summary."""
    start = time.monotonic()
    images = proposals = 0
    failed: dict[int, str] = {}
    cancelled = False
    steps = iter_auto_label(project, loaded, image_ids, write_every=write_every, batch_size=batch_size, workers=workers)
    try:
        for step in steps:
            if step.tiles is not None:  # an image by tiles, under way
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                if progress is not None:
                    progress(step)
                continue
            if step.error is not None:
                failed[step.image_id] = step.error
            else:
                images += 1
                proposals += step.proposals
            if progress is not None:
                progress(step)
            if should_stop is not None and should_stop() and step.done < step.total:
                cancelled = True
                break
    finally:
        steps.close()
    return AutoLabelResult(
        version_id=int(loaded.version.id or 0),
        images=images,
        proposals=proposals,
        seconds=time.monotonic() - start,
        cancelled=cancelled,
        failed=failed,
    )
