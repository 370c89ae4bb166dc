"""Model versions' metric names and ranking metric, read without torch or Qt."""

from __future__ import annotations

import json
from pathlib import Path

from labeler.core.store import ModelVersion
from labeler.learning.version_metrics import metric_label, ranking_metric


def test_metric_labels_are_the_fields_names() -> None:
    assert metric_label("map50") == "mAP@0.5"
    assert metric_label("map") == "mAP@[.5:.95]"
    assert metric_label("mean_iou") == "mean IoU"
    assert metric_label("pixel_accuracy") == "pixel accuracy"  # unknown: its own name, readable


def test_ranking_metric_comes_from_the_json_beside_the_checkpoint(tmp_path: Path) -> None:
    version = ModelVersion(plugin="detector", settings={}, categories=(1,), checkpoint="models/d.safetensors")
    assert ranking_metric(tmp_path, version) is None  # no file
    (tmp_path / "models").mkdir()
    meta = tmp_path / "models" / "d.json"
    meta.write_text(json.dumps({"metric": "map50"}), encoding="utf-8")
    assert ranking_metric(tmp_path, version) == "map50"
    for broken in ("{not json", "[1, 2]", json.dumps({"metric": 3}), json.dumps({"metric": ""})):
        meta.write_text(broken, encoding="utf-8")
        assert ranking_metric(tmp_path, version) is None
