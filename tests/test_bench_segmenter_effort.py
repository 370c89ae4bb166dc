"""The segmenter benchmark's correction effort: the loop annotator's seconds on one model's proposals."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from labeler.core.annotation import Annotation, Category, Kind
from labeler.core.geometry import encode_mask
from labeler.learning.api import LabelledImage, Prediction, Proposal

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _quality() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports its sibling folds.py
    try:
        spec = importlib.util.spec_from_file_location("_segmenter_quality", BENCHMARKS / "segmenter_quality.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _square(x: int, y: int, side: int = 10) -> np.ndarray:
    mask = np.zeros((40, 40), dtype=bool)
    mask[y : y + side, x : x + side] = True
    return mask


def test_correction_effort_of_exact_and_of_shifted_proposals() -> None:
    quality = _quality()
    cells = Category(1, "cell", (255, 0, 0))
    truth = _square(2, 2) | _square(25, 25)
    sample = LabelledImage(
        image_id=7,
        image=np.zeros((40, 40, 3), np.uint8),
        annotations=(Annotation(image_id=7, category_id=1, kind=Kind.MASK, rle=encode_mask(truth)),),
        classes=(cells,),
    )

    def predicted(*masks: np.ndarray) -> Prediction:
        return Prediction(tuple(Proposal(1, Kind.MASK, 0.9, rle=encode_mask(m)) for m in masks), 0.0)

    # by hand: two squares traced, 2 s + 4 vertices each; exact proposals: two verifications
    loop, manual = quality.correction_effort([predicted(_square(2, 2), _square(25, 25))], [sample])
    assert manual == 2 * (2.0 + 4 * 1.0)
    assert loop == 2 * 1.6
    # one square three pixels too far right: a 3 x 10 strip missed (brush) and one spilled (eraser)
    loop, _ = quality.correction_effort([predicted(_square(5, 2), _square(25, 25))], [sample])
    assert loop == 2 * 1.6 + 2 * (2.0 + 4 * 1.0)
