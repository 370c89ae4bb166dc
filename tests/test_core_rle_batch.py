"""The batch RLE check gives check_rle's verdicts (and the masks' areas) for whole and broken masks."""

from __future__ import annotations

import numpy as np

import labeler.core.geometry as geometry
from labeler.core.geometry import check_rle, encode_mask, rle_counts
from labeler.core.rle_batch import check_rles


def _one_by_one(rle: object) -> object:
    geometry._CHECKED.clear()
    try:
        checked = check_rle(rle, max_pixels=10**8)
    except (ValueError, TypeError, OverflowError) as exc:
        return ("error", str(exc))
    return (checked, int(rle_counts(checked)[1::2].sum()))


def test_batch_agrees_with_the_one_by_one_check() -> None:
    rng = np.random.default_rng(0)
    whole = []
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        whole.append(encode_mask(rng.random((h, w)) < rng.random()))
    broken = [
        {"size": [3, 4], "counts": "x"},
        {"size": [3, 4], "counts": encode_mask(np.ones((3, 5), bool))["counts"]},
        {"size": [3, 4], "counts": "1"},
        {"size": [3, 4], "counts": "0!"},
        {"size": [3, 4], "counts": [12]},
        {"size": [3, 4], "counts": [5, 7]},
        {"size": [3, 4], "counts": "\\\\"},
        {"size": [0, 4], "counts": "1"},
        {"size": [3, 4]},
        {"size": [3, 4], "counts": "oooooooooo1"},
        {"size": [4, 3], "counts": "<"},
        {"size": [100000, 100000], "counts": "1"},
        {"size": [3, 4], "counts": ""},
        {"size": [3, 4], "counts": "0<0"},
        {"size": [3, 4], "counts": "4W0"},
        {"size": [True, 4], "counts": "<"},
    ]
    rles: list[object] = [*whole[:10], *broken, *whole[10:]]
    expected = [_one_by_one(r) for r in rles]
    geometry._CHECKED.clear()
    got = [("error", str(r)) if isinstance(r, ValueError) else r for r in check_rles(rles, max_pixels=10**8)]
    assert got == expected
    assert sum(1 for r in got if r[0] == "error") >= 10  # most of the broken ones are refused, as one by one
