"""Auto-labelling: a model version's proposals written into the project.

For the GUI (in a worker thread)::

    loaded = load_model(project, "segmenter")            # the active version
    for step in iter_auto_label(project, loaded, [image_id]):
        ...                                               # AutoLabelProgress after each image

and for "auto-label all" it runs ``labeler auto-label PROJECT --plugin NAME --undone --progress json``
as a child process. Stopping the generator (``close()``, or leaving the loop) is the cancel: what
was predicted so far is written, nothing else changes.

Speed: images go in chunks; threads (one per core) decode a chunk and make its network inputs,
the network runs over it (small inputs batched), the threads turn its outputs into proposals,
and proposals are written in batches (one transaction per ``write_every`` images or two
seconds), so that the network's forward pass, not decoding or storage, sets the pace.

Proposals replace the same plugin's pending proposals on each image (accepted, rejected and human
annotations are never touched; see ``Project.replace_proposals``), carry the version id and the
score, and the image's uncertainty is stored for "next most uncertain".
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labeler.core.annotation import Annotation, State
from labeler.learning.api import PluginError, Prediction, decode_side
from labeler.learning.checkpoints import LoadedModel, load_version
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


def select_images(
    project: Project, *, scope: Scope = "undone", shard: tuple[int, int] | None = None
) -> list[int]:
    """Ids of the images to auto-label: not done ones (``undone``) or all, within ``shard``."""
    records = project.images(done=False) if scope == "undone" else project.images()
    return [r.id for r in records if in_shard(r.id, shard)]


def load_model(
    project: Project, plugin_name: str, *, version_id: int | None = None, device: str = "cpu"
) -> LoadedModel:
    """The plugin's active version (or ``version_id``), loaded. Errors say what to do."""
    from labeler.core.store import ProjectError
    from labeler.learning.plugins import get_plugin

    plugin = get_plugin(plugin_name)
    if version_id is None:
        version = project.active_model_version(plugin_name)
        if version is None:
            raise ProjectError(f"plugin {plugin_name!r} has no trained model in this project yet; run 'labeler train' first")
    else:
        version = project.model_version(version_id)
    return load_version(project, version, plugin, device=device)


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
            image_id=image_id, category_id=p.category_id, kind=p.kind, box_xywh=p.box_xywh, rle=p.rle,
            polygons=p.polygons, state=State.PROPOSED, model_version=version_id, score=float(p.score),
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
batching pays there only for small inputs. Measured on 2 cores: the localizer's 96x96 inputs
(27,648 numbers) run 2.26 ms/image one at a time and 0.91 batched by sixteen (raccoon, in
``benchmarks/bench_models.py``), while the segmenter's 240x180 CamVid inputs (129,600) ran 9.0 ms
alone, 9.4 ms/image by three and 11.9 by eight (the activations of a batch no longer fit the
caches)."""
CHUNK_SECONDS = 0.5
"""Auto-labelling works in chunks of images sized to take about this long, so progress and
cancel stay prompt whatever the image size."""
CHUNK_ELEMENTS = 1 << 25
"""Most network-input numbers held in one chunk (128 MB of float32), so memory stays bounded
(a chunk is never smaller than one image per worker)."""
MAX_WORKERS = 8
"""Default number of decoding threads: one per core, up to this many (more would hold more
images in memory at once for little gain beside the network)."""


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
        if any(v is None for v in parts.values()):
            return None
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]  # type: ignore[index]
    if isinstance(outputs, (tuple, list)):
        items = [_split_outputs(v, n) for v in outputs]
        if any(v is None for v in items):
            return None
        return [type(outputs)(v[i] for v in items) for i in range(n)]  # type: ignore[index]
    return None


def _forward_group(loaded: LoadedModel, group: Sequence[_Loaded]) -> list[Any]:
    """Network outputs for each image of ``group`` (``None`` for unreadable ones): one forward pass
    for the whole group when the outputs split per image, else one per image."""
    import torch

    if group[0].x is None:
        return [None]
    if len(group) > 1:
        batch = torch.cat([g.x for g in group]).to(loaded.device)
        split = _split_outputs(forward(loaded.plugin, loaded.model, batch), len(group))
        if split is not None:
            return split
    return [forward(loaded.plugin, loaded.model, g.x.to(loaded.device)) for g in group]


@dataclass
class _Loaded:
    """One image made ready in the worker thread: its full ``(h, w)`` and network input, or why not."""

    shape: tuple[int, int] | None = None
    x: Any = None
    error: str | None = None
    plugin_error: BaseException | None = None


def _load(path: Path, loaded: LoadedModel, side: int | None) -> _Loaded:
    """Decode an image (a JPEG as small as ``side`` allows, see :func:`labeler.learning.api.decode_side`)
    and make its network input (on the CPU). An unreadable image is an ``error`` (reported,
    skipped); a plugin failing in ``inputs`` is a ``plugin_error`` (raised)."""
    from labeler.core.images import read_image, read_image_at_least

    try:
        if side is None:
            image = read_image(path)
            shape = (int(image.shape[0]), int(image.shape[1]))
        else:
            image, shape = read_image_at_least(path, side)
    except Exception as exc:  # noqa: BLE001 - one unreadable image must not stop the run
        return _Loaded(error=f"{type(exc).__name__}: {exc}")
    try:
        x = network_input(loaded.plugin, image, settings=loaded.settings, device="cpu")
    except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
        return _Loaded(plugin_error=exc)
    return _Loaded(shape=shape, x=x)


def _predict(loaded: LoadedModel, ready: _Loaded, outputs: Any) -> Prediction | None:
    """The checked proposals for one image's network outputs (``None`` for an unreadable image)."""
    if ready.shape is None:
        return None
    return outputs_to_prediction(loaded.plugin, outputs, image_shape=ready.shape,
                                 classes=loaded.classes, settings=loaded.settings)


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
            group and item.x is not None and group[0].x is not None and item.x.shape == group[0].x.shape
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
) -> Iterator[AutoLabelProgress]:
    """Predict and store proposals for ``image_ids``, yielding progress after each image.

    The images go in chunks. ``workers`` threads (default: one per core, at most
    :data:`MAX_WORKERS`) decode a chunk's images and make their network inputs (``plugin.inputs``,
    so it must be thread-safe); then the network runs over the chunk alone, using every core itself
    (same-shaped small inputs together, see :func:`_batches`, the outputs split per image); then
    the threads turn its outputs into proposals (``plugin.proposals``, thread-safe too) and go on
    to decode the next chunk, while this thread reports and writes. Nothing runs beside the
    network's pass: on a few cores, a thread beside the network's own threads slows them down more
    than it gains. A chunk is sized to take about ``chunk_seconds`` (from the pace so far; the
    first is one image per worker), so progress and cancel stay prompt.

    Writes happen in batches (one transaction per ``write_every`` images or ``write_seconds``);
    closing the generator early writes what was reported and stops. Images that cannot be read
    are reported (``error``) and skipped; a misbehaving plugin raises
    :class:`~labeler.learning.api.PluginError` (after writing the images before it).
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    try:
        side = decode_side(loaded.plugin, loaded.settings)
    except Exception as exc:  # noqa: BLE001 - reported with the plugin's name
        raise PluginError(loaded.plugin.name, f"decode_side raised {type(exc).__name__}: {exc}") from exc
    version_id = int(loaded.version.id or 0)
    ids = list(image_ids)
    pending: list[tuple[int, list[Annotation], float, tuple[int, int]]] = []
    last_write = time.monotonic()
    start = last_write
    if workers is None:
        workers = min(MAX_WORKERS, os.cpu_count() or 1)
    workers = max(1, workers)
    on_gpu = str(loaded.device).startswith("cuda")

    def flush() -> None:
        nonlocal last_write
        if pending:
            with project.transaction():
                for image_id, anns, uncertainty, (w, h) in pending:
                    project.replace_proposals(image_id, plugin=loaded.plugin.name, proposals=anns,
                                              uncertainty=uncertainty)
                    record = project.image(image_id)
                    if record.width is None or record.height is None:
                        project.set_image_size(image_id, w, h)
            pending.clear()
        last_write = time.monotonic()

    def report(position: int, ready: _Loaded, prediction: Prediction | None) -> AutoLabelProgress:
        """Queue an image's proposals for writing and say how far the run is."""
        image_id = ids[position]
        count, uncertainty = 0, None
        if prediction is not None:
            anns = _to_annotations(prediction, image_id, version_id)
            count, uncertainty = len(anns), prediction.uncertainty
            assert ready.shape is not None
            pending.append((image_id, anns, prediction.uncertainty, (ready.shape[1], ready.shape[0])))
            if len(pending) >= write_every or time.monotonic() - last_write >= write_seconds:
                flush()
        elapsed = time.monotonic() - start
        return AutoLabelProgress(done=position + 1, total=len(ids), image_id=image_id, proposals=count,
                                 uncertainty=uncertainty, elapsed=elapsed,
                                 images_per_second=(position + 1) / elapsed if elapsed > 0 else 0.0, error=ready.error)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labeler-autolabel")

    def begin(first: int, count: int) -> tuple[int, list[Future[_Loaded]]]:
        """Begin decoding ``count`` images from position ``first`` in the threads."""
        paths = [project.root / project.image(i).path for i in ids[first : first + count]]
        return first, [pool.submit(_load, path, loaded, side) for path in paths]

    try:
        chunk = workers
        loading = begin(0, chunk) if ids else None
        while loading is not None:
            first, decoding = loading
            cycle_start = time.monotonic()
            ready = [f.result() for f in decoding]
            failing = next((r.plugin_error for r in ready if r.plugin_error is not None), None)
            if failing is not None:  # the images before it are finished and written first
                ready = ready[: next(n for n, r in enumerate(ready) if r.plugin_error is not None)]
            outputs: list[Any] = []
            for group in _batches(ready, batch_size=max(1, batch_size), on_gpu=on_gpu):
                outputs += _forward_group(loaded, group)
            # the network is done with this chunk: the threads now make its proposals and then
            # decode the next chunk, while this thread reports and writes
            posting = [pool.submit(_predict, loaded, r, out) for r, out in zip(ready, outputs, strict=True)]
            following = first + len(decoding)
            loading = begin(following, chunk) if failing is None and following < len(ids) else None
            for offset, (r, future) in enumerate(zip(ready, posting, strict=True)):
                yield report(first + offset, r, future.result())
            if failing is not None:
                raise failing
            # size the chunk after next from this one's pace
            per_image = (time.monotonic() - cycle_start) / max(1, len(ready))
            per_input = max(1, sum(r.x.numel() for r in ready if r.x is not None) // max(1, len(ready)))
            chunk = min(int(chunk_seconds / max(per_image, 1e-6)), CHUNK_ELEMENTS // per_input, 256)
            chunk = max(workers, chunk - chunk % workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        flush()


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
    steps = iter_auto_label(project, loaded, image_ids, write_every=write_every, batch_size=batch_size,
                            workers=workers)
    try:
        for step in steps:
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
    return AutoLabelResult(version_id=int(loaded.version.id or 0), images=images, proposals=proposals,
                           seconds=time.monotonic() - start, cancelled=cancelled, failed=failed)
