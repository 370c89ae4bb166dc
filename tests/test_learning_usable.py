"""The refuse-to-train rule for plugins that can use too few of the labelled images."""

from __future__ import annotations

from pathlib import Path

import pytest
from learning_support import minimal_plugin, synthetic_project

from labeler.learning.training import TrainingError, train
from labeler.learning.usable import MIN_USABLE_SHARE, min_usable_images, refusal


def test_five_of_292_is_refused_naming_the_detector() -> None:
    why = refusal(
        plugin="localizer",
        task="localization",
        usable=5,
        total=292,
        skipped={
            "13 accepted labels; the localizer trains on images with exactly one": 200,
            "12 accepted labels; the localizer trains on images with exactly one": 80,
            "no accepted box label": 7,
        },
    )
    assert why is not None
    assert "only 5 of the 292 done images" in why
    assert (
        "287 skipped: 280 × N accepted labels; the localizer trains on images with exactly one; "
        "7 × no accepted box label" in why
    )
    assert "'detector' plugin" in why and "many objects per image" in why


def test_enough_usable_images_train_and_a_single_image_project_still_trains() -> None:
    assert MIN_USABLE_SHARE == 0.25
    assert min_usable_images(1) == 1 and min_usable_images(8) == 2 and min_usable_images(292) == 73
    assert refusal(plugin="localizer", task="localization", usable=73, total=292, skipped={"x": 219}) is None
    assert refusal(plugin="segmenter", task="segmentation", usable=1, total=1, skipped={}) is None
    why = refusal(plugin="segmenter", task="segmentation", usable=0, total=4, skipped={"every pixel is ignored": 4})
    assert why is not None and "plugin" in why and "detector" not in why


def test_training_refuses_and_makes_no_version(backend, tmp_path: Path) -> None:
    plugin = minimal_plugin()
    inner = plugin.prepare

    def picky(sample, *, settings):
        from labeler.learning.api import SkipImage

        if sample.image_id != 1:
            raise SkipImage("more than one object")
        return inner(sample, settings=settings)

    plugin.prepare = picky
    with synthetic_project(backend, tmp_path / "p", images=10, done=10) as project:
        with pytest.raises(TrainingError, match=r"can use only 1 of the 10 done images .*9 × more than one object"):
            train(project, plugin, epochs=1)
        assert project.model_versions() == []
