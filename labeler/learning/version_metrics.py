"""What a model version's metrics are called and which one ranks it, for the window and the CLI.

The ranking metric is written by training into the JSON beside the checkpoint (``"metric"``); it is
read here without torch, so that listing versions never loads the training machinery.
"""

from __future__ import annotations

import json
from pathlib import Path

from labeler.core.store import ModelVersion

METRIC_LABELS: dict[str, str] = {
    "map50": "mAP@0.5",
    "map": "mAP@[.5:.95]",
    "mean_iou": "mean IoU",
    "box_iou": "box IoU",
}
"""The names the field uses for the bundled plugins' metrics whose keys are not already those names."""


def metric_label(name: str) -> str:
    """``name`` as users of detection and segmentation tools know it (``map50`` -> ``mAP@0.5``);
    a metric this module does not know keeps its own name, underscores as spaces."""
    return METRIC_LABELS.get(name, name.replace("_", " "))


def ranking_metric(project_root: Path, version: ModelVersion) -> str | None:
    """The metric that ranks ``version`` among its plugin's versions, from the metadata JSON beside
    its checkpoint; ``None`` when that file is missing, unreadable or says nothing usable."""
    meta = (project_root / version.checkpoint).with_suffix(".json")
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("metric")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
