"""Model versions on disk: ``models/<plugin>-<timestamp>.safetensors`` plus a ``.json`` beside it.

A version trained with a refit (:mod:`labeler.learning.refit`) has a second pair beside it,
``<stem>-selection.safetensors`` and ``.json``: its *selection checkpoint*, the weights from before
the validation images were folded in, which its metrics were measured on and which later versions
are compared against (:func:`load_selection`). The version's ``data["selection_checkpoint"]`` holds
its path relative to the project.

Writing is atomic per file (temporary name, flush, fsync, rename), the JSON first and the weights
last, and the store's row after all of them, so an interrupted run leaves at worst an unreferenced
file, never a version that points at half a checkpoint. Loading reads tensors with ``safetensors``
only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeler.core.annotation import Category
from labeler.core.location import command_line_name
from labeler.core.store import ProjectError
from labeler.learning.api import Plugin, PluginError, default_settings
from labeler.learning.plugins import plugin_call

if TYPE_CHECKING:
    import torch

    from labeler.core.store import ModelVersion, Project

FORMAT = 1

SELECTION_SUFFIX = "-selection"
"""Appended to a version's checkpoint stem to name its selection checkpoint."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def checkpoint_stem(plugin: str) -> str:
    """A new, unique file stem: ``<plugin>-<UTC yyyymmdd-hhmmss>-<4 hex>``."""
    return f"{plugin}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


_CHECKPOINT_NAME = re.compile(
    r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*-\d{8}-\d{6}-[0-9a-f]{4}(?:-selection)?\.(?:safetensors|json)$"
)
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
ORPHAN_AGE_S = 15 * 60.0
"""A checkpoint file no version refers to is swept once it is this old: younger ones may belong to
a run in another process that has written its files and waits to add its version's row."""


def sweep_orphans(project: Project, *, min_age: float = ORPHAN_AGE_S) -> list[str]:
    """Delete the checkpoint files in ``models/`` that no model version refers to (left by a run
    that was killed between writing its files and adding its row), and stale temporary files of
    interrupted writes; returns their names. Only names this module writes are touched, only files
    older than ``min_age`` seconds, and never a file a version names (checkpoint, selection
    checkpoint, or the JSON beside either)."""
    folder = project.models_dir
    if not folder.is_dir():
        return []
    kept: set[str] = set()
    for version in project.model_versions():
        for rel in (version.checkpoint, selection_checkpoint(version)):
            if rel:
                name = Path(rel).name
                kept.update({name, str(Path(name).with_suffix(".json"))})
    now = time.time()
    swept: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name in kept or not (_CHECKPOINT_NAME.match(entry.name) or _TEMP_NAME.match(entry.name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime < min_age:
                continue
            os.unlink(entry.path)
        except OSError:  # vanished meanwhile, or a read-only project: nothing to do
            continue
        swept.append(entry.name)
    return swept


def checkpoint_path(models_dir: Path, stem: str) -> Path:
    """Where :func:`save_checkpoint` writes the weights of ``stem``."""
    return models_dir / f"{stem}.safetensors"


def selection_stem(stem: str) -> str:
    """The file stem of the selection checkpoint that goes with checkpoint ``stem``."""
    return f"{stem}{SELECTION_SUFFIX}"


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict on the CPU, detached and contiguous (what a checkpoint holds;
    later training of ``model`` does not change it)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    models_dir: Path,
    stem: str,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``stem.json`` then ``stem.safetensors`` into ``models_dir``; returns the weights' path.

    ``model`` is a module, or a state dict already taken with :func:`cpu_state`."""
    from safetensors.torch import save

    models_dir.mkdir(parents=True, exist_ok=True)
    tensors = dict(model) if isinstance(model, Mapping) else cpu_state(model)
    meta = {"format": FORMAT, **metadata}
    _atomic_write(models_dir / f"{stem}.json", json.dumps(meta, indent=2, sort_keys=True).encode())
    blob = save(tensors, metadata={"plugin": str(meta.get("plugin", "")), "format": str(FORMAT)})
    weights = checkpoint_path(models_dir, stem)
    _atomic_write(weights, blob)
    return weights


class CheckpointError(ProjectError):
    """A checkpoint file (or its JSON) that cannot be loaded: missing, truncated, not safetensors,
    a broken header, or written for another model. The message names the file and, once
    :func:`load_version` / :func:`load_selection` know it, the version and what to do instead."""

    def __init__(self, message: str, *, path: Path, version_id: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.version_id = version_id


def read_metadata(weights: Path) -> dict[str, Any]:
    """The JSON written beside a checkpoint (``{}`` when there is none, as in projects that lost
    it); :class:`CheckpointError` when it is there but is not a JSON object."""
    meta = weights.with_suffix(".json")
    try:
        text = meta.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta.name} cannot be read ({exc})", path=meta) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{meta.name} is not valid JSON ({exc})", path=meta) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{meta.name} holds a {type(data).__name__}, not an object", path=meta)
    return data


def check_metadata(weights: Path, version: ModelVersion) -> None:
    """Check the JSON beside ``weights`` against the stored ``version``: same plugin, same classes
    (a file copied over from another version or project fails here, before any weight is read).
    A missing JSON passes."""
    meta = read_metadata(weights)
    if not meta:
        return
    plugin = meta.get("plugin")
    if plugin is not None and plugin != version.plugin:
        raise CheckpointError(
            f"{weights.with_suffix('.json').name} says plugin {plugin!r}, the version is {version.plugin!r}",
            path=weights,
        )
    classes = meta.get("classes")
    if classes is not None:
        try:
            ids = tuple(int(c["id"]) for c in classes)
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{weights.with_suffix('.json').name} has malformed classes", path=weights) from None
        if ids != tuple(version.categories):
            raise CheckpointError(
                f"{weights.with_suffix('.json').name} is for categories {list(ids)}, the version "
                f"predicts {list(version.categories)}",
                path=weights,
            )


def _read_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; :class:`CheckpointError` for anything that is not a
    whole, well-formed one (truncated, random bytes, text, a pickle, a broken header)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not weights.is_file():
        if weights.exists():
            raise CheckpointError(f"{weights.name} is not a file", path=weights)
        raise CheckpointError(f"{weights.name} is missing", path=weights)
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{weights.name} is damaged ({reason})", path=weights) from None


def checkpoint_looks_whole(weights: Path) -> bool:
    """Whether a safetensors file's header reads (cheap: no tensor is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            fh.keys()
        return True
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError):
        return False


def version_settings(plugin: Plugin, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin's defaults overlaid with a version's stored settings (names the plugin no longer
    has are dropped; a setting the version predates takes its :attr:`~labeler.learning.api.Setting.legacy`
    value, where it has one)."""
    out = default_settings(plugin)
    out.update({s.name: s.legacy for s in plugin.settings if s.legacy is not None and s.name not in stored})
    out.update({k: v for k, v in stored.items() if k in out})
    return out


def version_classes(project: Project, version: ModelVersion) -> tuple[Category, ...]:
    """The project's categories a version's outputs stand for, in output order."""
    by_id = {c.id: c for c in project.categories()}
    missing = [i for i in version.categories if i not in by_id]
    if missing:
        raise ProjectError(f"model version {version.id} predicts categories {missing} that the project no longer has")
    return tuple(by_id[i] for i in version.categories)


def load_weights(plugin: Plugin, model: torch.nn.Module, weights: Path) -> None:
    """Load tensors from a safetensors file into ``model`` (strict: same names and shapes).

    A file that is missing or damaged raises :class:`CheckpointError`; one that reads but does not
    fit the network raises :class:`~labeler.learning.api.PluginError`."""
    state = _read_tensors(weights)
    current = model.state_dict()
    missing = sorted(set(current) - set(state))
    extra = sorted(set(state) - set(current))
    wrong = sorted(k for k in set(current) & set(state) if tuple(current[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        raise PluginError(
            plugin.name,
            f"checkpoint {weights.name} does not fit the network built from its settings "
            f"(missing {missing[:3]}, unexpected {extra[:3]}, other shape {wrong[:3]})",
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameter
        raise CheckpointError(f"{weights.name} is damaged ({str(exc).splitlines()[0]})", path=weights) from None


def _alternatives(project: Project, version: ModelVersion) -> str:
    """What to do when ``version``'s files are damaged: the plugin's other versions whose
    checkpoints look whole, and the commands that switch to one or train anew."""
    others = [
        v
        for v in project.model_versions(version.plugin)
        if v.id != version.id and checkpoint_looks_whole(project.root / v.checkpoint)
    ]
    root = command_line_name(project)  # a folder, or a URL with --image-root: what the verbs take
    train = f"'labeler train {root} --plugin {version.plugin} --fresh'"
    if not others:
        return f"no other {version.plugin} version is usable; train a new one with {train}"
    best = others[-1]
    listed = ", ".join(f"#{v.id}" for v in others[-5:])
    return (
        f"the project is otherwise intact; earlier {version.plugin} versions: {listed}: make one active "
        f"with 'labeler models {root} --activate {best.id}' (or train anew with {train})"
    )


@dataclass(frozen=True)
class LoadedModel:
    """A model version ready to predict: the plugin, the version, the module (eval mode), its
    classes (output order) and resolved settings. ``selection`` is true when the module holds the
    version's selection checkpoint (:func:`load_selection`) rather than its final weights."""

    plugin: Plugin
    version: ModelVersion
    model: Any
    classes: tuple[Category, ...]
    settings: dict[str, Any]
    device: str
    selection: bool = False


def _load(
    project: Project, version: ModelVersion, plugin: Plugin, weights: str, *, device: str, selection: bool
) -> LoadedModel:
    """Build the plugin's network for ``version`` and load the checkpoint at ``weights`` (relative
    to the project) into it."""
    if version.plugin != plugin.name:
        raise PluginError(plugin.name, f"model version {version.id} belongs to plugin {version.plugin!r}")
    settings = version_settings(plugin, version.settings)
    classes = version_classes(project, version)
    model = plugin_call(plugin, "build_model", partial(plugin.build_model, num_classes=len(classes), settings=settings))
    path = project.root / weights
    what = "selection checkpoint" if selection else "checkpoint"
    try:
        check_metadata(path, version)
        load_weights(plugin, model, path)
    except CheckpointError as exc:
        raise CheckpointError(
            f"model version {version.id} ({version.plugin}): its {what} {weights}: {exc}; "
            f"{_alternatives(project, version)}",
            path=path,
            version_id=version.id,
        ) from None
    model.to(device)
    model.eval()
    return LoadedModel(
        plugin=plugin,
        version=version,
        model=model,
        classes=classes,
        settings=settings,
        device=device,
        selection=selection,
    )


def load_version(project: Project, version: ModelVersion, plugin: Plugin, *, device: str = "cpu") -> LoadedModel:
    """Build the plugin's network for a stored version and load its weights (no unpickling)."""
    return _load(project, version, plugin, version.checkpoint, device=device, selection=False)


def selection_checkpoint(version: ModelVersion) -> str | None:
    """The path (relative to the project) of a version's selection checkpoint, or ``None`` when it
    was not refit (then its checkpoint is what its metrics were measured on)."""
    path = version.data.get("selection_checkpoint")
    return str(path) if path else None


def load_selection(project: Project, version: ModelVersion, plugin: Plugin, *, device: str = "cpu") -> LoadedModel:
    """The weights a version was judged by, loaded: its selection checkpoint when it was refit
    (``selection=True``; its final weights have trained on its validation images, so measuring
    them there would flatter it), else its checkpoint as :func:`load_version` gives it."""
    path = selection_checkpoint(version)
    if path is None:
        return load_version(project, version, plugin, device=device)
    return _load(project, version, plugin, path, device=device, selection=True)


def classes_metadata(classes: Sequence[Category]) -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name} for c in classes]
