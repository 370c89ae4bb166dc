"""Geometry helpers agree with pycocotools: RLE, polygons, areas, boxes."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from labeler.core.annotation import Annotation, Kind
from labeler.core.geometry import (
    annotation_area,
    annotation_box,
    annotation_mask,
    box_iou,
    box_to_mask,
    decode_rle,
    encode_mask,
    encode_regions,
    mask_to_polygons,
    normalize_rle,
    polygons_area,
    polygons_box,
    polygons_to_mask,
    rle_area,
    rle_box,
)


def random_mask(seed: int, h: int = 37, w: int = 53) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(3):
        y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
        mask[y0 : y0 + rng.integers(2, 15), x0 : x0 + rng.integers(2, 20)] = True
    mask[rng.random((h, w)) < 0.02] = True
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO's uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts: list[int] = []
    current, run = 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = int(v), 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip(seed: int) -> None:
    mask = random_mask(seed)
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    assert np.array_equal(decode_rle(rle), mask)
    # identical to pycocotools' own encoding
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == theirs["counts"].decode("ascii")
    assert rle_area(rle) == float(mask.sum()) == float(mask_utils.area(theirs))
    assert rle_box(rle) == tuple(float(v) for v in mask_utils.toBbox(theirs))


def test_rle_accepts_bytes_counts() -> None:
    mask = random_mask(9)
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert np.array_equal(decode_rle(theirs), mask)
    assert normalize_rle(theirs) == encode_mask(mask)


@pytest.mark.parametrize("seed", range(3))
def test_uncompressed_rle(seed: int) -> None:
    mask = random_mask(seed)
    rle = uncompressed_rle(mask)
    assert np.array_equal(decode_rle(rle), mask)
    assert normalize_rle(rle) == encode_mask(mask)
    assert rle_area(rle) == float(mask.sum())
    assert rle_box(rle) == rle_box(encode_mask(mask))


def test_empty_and_full_masks() -> None:
    empty = np.zeros((4, 6), dtype=bool)
    full = np.ones((4, 6), dtype=bool)
    assert rle_area(encode_mask(empty)) == 0.0
    assert rle_box(encode_mask(empty)) == (0.0, 0.0, 0.0, 0.0)
    assert rle_area(encode_mask(full)) == 24.0
    assert rle_box(encode_mask(full)) == (0.0, 0.0, 6.0, 4.0)
    with pytest.raises(ValueError, match="2-D"):
        encode_mask(np.zeros((2, 2, 2), dtype=bool))


def test_polygons_with_several_parts_match_pycocotools() -> None:
    h, w = 40, 60
    parts = [
        np.array([[2.0, 3.0], [20.0, 3.0], [20.0, 15.0], [2.0, 15.0]]),
        np.array([[30.5, 10.0], [55.0, 12.0], [42.0, 35.5]]),
    ]
    mask = polygons_to_mask(parts, h, w)
    flat = [p.reshape(-1).tolist() for p in parts]
    theirs = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, h, w))).astype(bool)
    assert np.array_equal(mask, theirs)
    # both parts are there, not joined
    assert mask[8, 10] and mask[20, 42] and not mask[8, 25]
    assert polygons_box(parts) == (2.0, 3.0, 53.0, 32.5)
    shoelace = 18 * 12 + 0.5 * abs(30.5 * (12 - 35.5) + 55 * (35.5 - 10) + 42 * (10 - 12))
    assert polygons_area(parts) == pytest.approx(shoelace)
    # the rasterised area is close to the exact area (COCO's rasteriser is within a pixel of the outline)
    assert abs(int(mask.sum()) - shoelace) < 0.15 * shoelace


def test_polygons_too_short_are_skipped() -> None:
    assert not polygons_to_mask([np.array([[1.0, 1.0], [2.0, 2.0]])], 5, 5).any()


def test_mask_to_polygons_and_back() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[2:12, 3:15] = True
    mask[18:28, 20:38] = True
    parts = mask_to_polygons(mask, tolerance=0)
    assert len(parts) == 2 and all(p.shape[1] == 2 for p in parts)
    back = polygons_to_mask(parts, 30, 40)
    inter = np.logical_and(back, mask).sum()
    union = np.logical_or(back, mask).sum()
    assert inter / union > 0.97  # outlines follow pixel edges: rasterised back, the mask is whole
    simplified = mask_to_polygons(mask, tolerance=1.0)
    assert all(len(p) == 4 for p in simplified)


def test_annotation_box_area_mask_consistent_with_pycocotools() -> None:
    h, w = 30, 40
    mask = random_mask(3, h, w)
    parts = (
        np.array([[1.0, 1.0], [11.0, 1.0], [11.0, 9.0], [1.0, 9.0]]),
        np.array([[20.0, 5.0], [30.0, 5.0], [25.0, 25.0]]),
    )
    anns = {
        "box": Annotation(image_id=1, category_id=1, kind=Kind.BOX, box_xywh=(2.0, 3.0, 10.0, 5.0)),
        "polygon": Annotation(image_id=1, category_id=1, kind=Kind.POLYGON, polygons=parts),
        "mask": Annotation(image_id=1, category_id=1, kind=Kind.MASK, rle=encode_mask(mask)),
    }
    assert annotation_box(anns["box"]) == (2.0, 3.0, 10.0, 5.0)
    assert annotation_area(anns["box"]) == 50.0
    assert annotation_mask(anns["box"], h, w).sum() == 50
    assert annotation_box(anns["polygon"]) == (1.0, 1.0, 29.0, 24.0)
    assert annotation_area(anns["polygon"]) == pytest.approx(80 + 100)
    poly_mask = annotation_mask(anns["polygon"], h, w)
    frpoly = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in parts], h, w)
    assert np.array_equal(poly_mask, mask_utils.decode(mask_utils.merge(frpoly)).astype(bool))
    m = anns["mask"]
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert annotation_area(m) == float(mask_utils.area(theirs))
    assert annotation_box(m) == tuple(float(v) for v in mask_utils.toBbox(theirs))
    assert np.array_equal(annotation_mask(m, h, w), mask)
    with pytest.raises(ValueError, match="mask is 40x30, image is 20x10"):
        annotation_mask(m, 10, 20)


def test_box_to_mask_clips_to_the_image() -> None:
    mask = box_to_mask((-5, 2, 10, 100), 10, 8)
    assert mask.shape == (10, 8) and mask.sum() == 5 * 8
    assert mask[2:, :5].all() and not mask[:2].any()


def test_box_iou_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(0, 50, 4)
        b = rng.uniform(0, 50, 4)
        theirs = float(mask_utils.iou([a.tolist()], [b.tolist()], [0])[0][0])
        assert box_iou(a, b) == pytest.approx(theirs)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_encode_regions_equals_one_encoding_per_region() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        count = int(rng.integers(1, 6))
        regions = rng.integers(0, count + 1, (h, w)).astype(np.int32)
        rles = encode_regions(regions, count + 2)  # two ids with no pixel
        for r in range(1, count + 3):
            if (regions == r).any():
                assert rles[r - 1] == encode_mask(regions == r)
            else:
                assert rles[r - 1] is None
    assert encode_regions(np.zeros((0, 4), np.int32), 3) == [None, None, None]
    full = encode_regions(np.ones((3, 4), np.int32), 1)[0]
    assert full == encode_mask(np.ones((3, 4), bool))


@pytest.mark.parametrize("seed", range(6))
def test_long_counts_decode_with_numpy_as_with_the_loop(seed: int) -> None:
    """Counts strings of 48 characters or more are decoded with numpy (core.geometry._runs_of_codes);
    their runs must be exactly the uncompressed RLE's, large runs and negative differences included."""
    from labeler.core.geometry import _VECTOR_FROM, rle_counts

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(200, 900)), int(rng.integers(200, 900))
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(5, 40))):  # boxes of very different sizes: runs short and long
        y0, x0 = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        mask[y0 : y0 + int(rng.integers(1, h // 2)), x0 : x0 + int(rng.integers(1, w // 2))] ^= True
    mask[rng.random((h, w)) < 0.001] ^= True
    rle = encode_mask(mask)
    assert len(rle["counts"]) >= _VECTOR_FROM
    expected = np.asarray(uncompressed_rle(mask)["counts"], dtype=np.int64)
    assert np.array_equal(rle_counts(rle), expected)
    # the cheap path of check_rle (memo) gives the same answer as the first check
    from labeler.core.geometry import check_rle

    assert check_rle(rle, max_pixels=h * w) == check_rle(dict(rle), max_pixels=h * w) == rle


def test_long_counts_that_end_mid_number_or_overflow_are_refused() -> None:
    from labeler.core.geometry import rle_counts

    whole = encode_mask(random_mask(3, 300, 300))["counts"]
    assert len(whole) >= 48
    with pytest.raises(ValueError, match="middle of a number"):
        rle_counts({"size": [300, 300], "counts": whole + "o"})  # 'o' has the continuation bit
    with pytest.raises(ValueError, match="too large"):
        rle_counts({"size": [300, 300], "counts": whole + "o" * 14 + "0"})
