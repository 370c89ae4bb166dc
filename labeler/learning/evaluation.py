"""``labeler eval``: a stored model version measured on the project's done images."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from labeler.learning.checkpoints import LoadedModel, load_selection, selection_checkpoint
from labeler.learning.dataset import iter_labelled_images, prepare_all, validation_split
from labeler.learning.predict import evaluate_samples

if TYPE_CHECKING:
    from labeler.core.store import Project


def evaluate_version(
    project: Project, loaded: LoadedModel, *, split: Literal["validation", "all"] = "validation"
) -> dict[str, Any]:
    """Metrics of ``loaded`` on the fixed validation split of the done images (or all done images).

    On the validation split, a version that was refit (its final weights also trained on its
    validation images) is measured through its selection checkpoint, the weights its metrics came
    from (:func:`~labeler.learning.checkpoints.load_selection`); ``split="all"`` measures
    ``loaded`` as given (from ``load_version``: the final weights, the ones auto-labelling uses).
    Images the plugin would skip in training (``prepare`` raises ``SkipImage``) are left out and
    counted. Returns ``{"version", "plugin", "split", "weights" ("final" or "selection"),
    "images", "skipped", "skipped_reasons", "metrics"}``.
    """
    from labeler.core.store import ProjectError

    if split == "validation" and not loaded.selection and selection_checkpoint(loaded.version) is not None:
        loaded = load_selection(project, loaded.version, loaded.plugin, device=loaded.device)

    done = [r.id for r in project.images(done=True)]
    ids = done if split == "all" else validation_split(done)[1]
    if not ids:
        raise ProjectError(
            "no done images to measure on"
            if split == "all"
            else "no validation images: mark at least two images done (or use --split all)"
        )
    _, samples, skipped = prepare_all(
        loaded.plugin, iter_labelled_images(project, ids, loaded.classes), settings=loaded.settings, keep_samples=True
    )
    if not samples:
        raise ProjectError(f"plugin {loaded.plugin.name!r} can use none of the {len(ids)} images ({skipped})")
    metrics = evaluate_samples(loaded.plugin, loaded.model, samples, settings=loaded.settings, device=loaded.device)
    return {
        "version": loaded.version.id,
        "plugin": loaded.plugin.name,
        "split": split,
        "weights": "selection" if loaded.selection else "final",
        "images": len(samples),
        "skipped": sum(skipped.values()),
        "skipped_reasons": skipped,
        "metrics": metrics,
    }
