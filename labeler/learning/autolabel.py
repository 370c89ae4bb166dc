"""Auto-labelling: a model version's proposals written into the project.

For the GUI (in a worker thread)::

    loaded = load_model(project, "segmenter")            # the active version
    for step in iter_auto_label(project, loaded, [image_id]):
        ...                                               # AutoLabelProgress after each image

and for "auto-label all" it runs ``labeler auto-label PROJECT --plugin NAME --undone --progress json``
as a child process. Stopping the generator (``close()``, or leaving the loop) is the cancel: what
was predicted so far is written, nothing else changes.

Speed: images are decoded in a background thread while the network runs, outputs become
proposals in another, and proposals are written in batches (one transaction per
``write_every`` images or two seconds), so that the network's forward pass, not decoding or
storage, sets the pace.

Proposals replace the same plugin's pending proposals on each image (accepted, rejected and human
annotations are never touched; see ``Project.replace_proposals``), carry the version id and the
score, and the image's uncertainty is stored for "next most uncertain".
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from labeler.core.annotation import Annotation, State
from labeler.learning.api import PluginError, Prediction, decode_side
from labeler.learning.checkpoints import LoadedModel, load_version
from labeler.learning.predict import forward, network_input, outputs_to_prediction

if TYPE_CHECKING:
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


BATCH_ELEMENTS = 4_000_000
"""Most input numbers (all images of a batch together) that auto-labelling sends through the
network at once on a GPU; larger images go one by one."""
CPU_BATCH_ELEMENTS = 1 << 17
"""The same on the CPU, where batching pays only for small inputs: measured on 2 cores, the
localizer's 96x96 inputs (27,648 numbers) run 1.6 ms/image alone and 1.25 batched by four, while
the segmenter's 240x180 CamVid inputs (129,600) run 9.0 ms alone, 9.4 ms/image by three and
11.9 by eight (the activations of a batch no longer fit the caches)."""


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


def _load(project: Project, image_id: int, loaded: LoadedModel, side: int | None) -> _Loaded:
    """Decode an image (a JPEG as small as ``side`` allows, see :func:`labeler.learning.api.decode_side`)
    and make its network input (on the CPU). An unreadable image is an ``error`` (reported,
    skipped); a plugin failing in ``inputs`` is a ``plugin_error`` (raised)."""
    from labeler.core.images import read_image, read_image_at_least

    path = project.root / project.image(image_id).path
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


def iter_auto_label(
    project: Project,
    loaded: LoadedModel,
    image_ids: Sequence[int],
    *,
    write_every: int = 32,
    write_seconds: float = 2.0,
    prefetch: int = 2,
    overlap: Literal["all", "post"] = "all",
    batch_size: int = 8,
    workers: int | None = None,
) -> Iterator[AutoLabelProgress]:
    """Predict and store proposals for ``image_ids``, yielding progress after each image.

    A background thread (``workers`` of them; default one, two with four cores or more) decodes
    images and makes their network inputs (``plugin.inputs``, so it must be thread-safe):
    ``overlap="all"`` keeps ``prefetch`` images ready ahead, alongside the network; ``"post"``
    starts on the next image only once the forward pass of the current one is over, so that this
    work shares the CPU with the (single-threaded) post-processing and storage instead of with the
    network's threads. With ``"all"``, inputs of the same shape that are already made (up to
    ``batch_size`` images, :data:`BATCH_ELEMENTS` numbers on a GPU, :data:`CPU_BATCH_ELEMENTS` on
    the CPU) go through the network together, and the outputs are split per image before
    ``plugin.proposals``; it never waits to fill a batch.
    ``plugin.proposals`` runs in a second background thread, so that turning one batch's outputs
    into proposals overlaps the network's pass over the next batch (it must be thread-safe too);
    storage stays in the calling thread.

    Writes happen in batches; closing the generator early writes what was predicted and stops.
    Images that cannot be read are reported (``error``) and skipped; a misbehaving plugin raises
    :class:`~labeler.learning.api.PluginError` (after writing the images finished before it).
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
        workers = 2 if (os.cpu_count() or 1) >= 4 else 1
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="labeler-decode")
    futures: dict[int, Future[_Loaded]] = {}
    submitted = 0
    lockstep = overlap == "post"

    def submit_upto(count: int) -> None:
        nonlocal submitted
        while submitted < min(count, len(ids)):
            futures[submitted] = pool.submit(_load, project, ids[submitted], loaded, side)
            submitted += 1

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

    post = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labeler-proposals")
    in_flight: deque[tuple[int, _Loaded, Future[Prediction | None]]] = deque()

    def finish(position: int, ready: _Loaded, future: Future[Prediction | None]) -> AutoLabelProgress:
        """Queue an image's proposals for writing and report it (raises what the plugin raised)."""
        prediction = future.result()
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

    ahead = max(1, prefetch, batch_size)
    most_elements = BATCH_ELEMENTS if str(loaded.device).startswith("cuda") else CPU_BATCH_ELEMENTS
    try:
        submit_upto(1 if lockstep else ahead)
        index = 0
        while index < len(ids):
            first = futures.pop(index).result()
            if first.plugin_error is not None:
                while in_flight:  # the images before it are finished and written first
                    yield finish(*in_flight.popleft())
                raise first.plugin_error
            group = [first]
            if first.x is not None and not lockstep:
                elements = first.x.numel()
                while len(group) < batch_size and futures.get(index + len(group)) is not None:
                    future = futures[index + len(group)]
                    if not future.done():
                        break  # batch what is ready, never wait for more
                    more = future.result()
                    if (more.x is None or more.plugin_error is not None or more.x.shape != first.x.shape
                            or elements + more.x.numel() > most_elements):
                        break
                    futures.pop(index + len(group))
                    group.append(more)
                    elements += more.x.numel()
                submit_upto(index + len(group) + ahead)
            outputs = _forward_group(loaded, group)
            submit_upto(index + len(group) + 1)
            for offset, (ready, out) in enumerate(zip(group, outputs, strict=True)):
                in_flight.append((index + offset, ready, post.submit(_predict, loaded, ready, out)))
            index += len(group)
            # hand back what is finished; at most one batch of images waits behind the network
            while in_flight and (in_flight[0][2].done() or len(in_flight) > max(1, batch_size)):
                yield finish(*in_flight.popleft())
        while in_flight:
            yield finish(*in_flight.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        post.shutdown(wait=True, cancel_futures=True)
        flush()


def auto_label(
    project: Project,
    loaded: LoadedModel,
    image_ids: Sequence[int],
    *,
    progress: Callable[[AutoLabelProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    write_every: int = 32,
    overlap: Literal["all", "post"] = "all",
    batch_size: int = 8,
    workers: int | None = None,
) -> AutoLabelResult:
    """Run :func:`iter_auto_label` to the end (or until ``should_stop()``), returning a summary."""
    start = time.monotonic()
    images = proposals = 0
    failed: dict[int, str] = {}
    cancelled = False
    steps = iter_auto_label(project, loaded, image_ids, write_every=write_every, overlap=overlap,
                           batch_size=batch_size, workers=workers)
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
