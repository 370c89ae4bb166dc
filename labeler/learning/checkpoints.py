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
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labeler.core.annotation import Category
from labeler.learning.api import Plugin, PluginError, default_settings

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


def read_metadata(weights: Path) -> dict[str, Any]:
    """The JSON beside a checkpoint (empty if missing)."""
    meta = weights.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else {}


def version_settings(plugin: Plugin, stored: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin's defaults overlaid with a version's stored settings (names the plugin no longer
    has are dropped)."""
    out = default_settings(plugin)
    out.update({k: v for k, v in stored.items() if k in out})
    return out


def version_classes(project: Project, version: ModelVersion) -> tuple[Category, ...]:
    """The project's categories a version's outputs stand for, in output order."""
    from labeler.core.store import ProjectError

    by_id = {c.id: c for c in project.categories()}
    missing = [i for i in version.categories if i not in by_id]
    if missing:
        raise ProjectError(f"model version {version.id} predicts categories {missing} that the project no longer has")
    return tuple(by_id[i] for i in version.categories)


def load_weights(plugin: Plugin, model: torch.nn.Module, weights: Path) -> None:
    """Load tensors from a safetensors file into ``model`` (strict: same names and shapes)."""
    from safetensors.torch import load_file

    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint {weights} is missing")
    state = load_file(str(weights))
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
    model.load_state_dict(state, strict=True)


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
    try:
        model = plugin.build_model(num_classes=len(classes), settings=settings)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(plugin.name, f"build_model raised {type(exc).__name__}: {exc}") from exc
    load_weights(plugin, model, project.root / weights)
    model.to(device)
    model.eval()
    return LoadedModel(plugin=plugin, version=version, model=model, classes=classes, settings=settings,
                       device=device, selection=selection)


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
