"""The assisted mask algorithms on synthetic images with known answers (no Qt)."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from labeler.assist import (
    Click,
    ImagePixels,
    PyramidPixels,
    prepare,
    read_window,
    region_at,
    region_count,
    segment,
    snap_path,
)
from labeler.assist.grabcut import ProbabilityFn
from labeler.assist.protocol import clicks_to_reach, iou, next_click
from labeler.assist.window import box_window


def _disk_scene(gray: bool = False, size: tuple[int, int] = (300, 200)) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(190, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    cv2.circle(truth, (w // 2, h // 2), 50, 1, -1)
    colour = (60, 60, 60) if gray else (40, 80, 200)
    image[truth > 0] = colour
    if gray:
        image[:] = image[..., :1]
    return image, truth > 0


@pytest.mark.parametrize("gray", [False, True])
def test_box_to_mask_finds_a_disk(gray: bool) -> None:
    image, truth = _disk_scene(gray)
    source = ImagePixels.of(image[..., 0] if gray else image)
    result = segment(prepare(source, (100, 50, 101, 101)))
    assert iou(result.full(300, 200), truth) > 0.95


def two_disks(
    background: int, colour: tuple[int, int, int], first: tuple[int, int], second: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 300 x 200 image of two disks of one ``colour`` (each ``(centre x, radius)``, centred at
    y = 100) on a grey ``background``, and the two disks' masks."""
    image = np.full((200, 300, 3), background, np.uint8)
    masks = []
    for x, radius in (first, second):
        mask = np.zeros((200, 300), np.uint8)
        cv2.circle(mask, (x, 100), radius, 1, -1)
        masks.append(mask)
    image[(masks[0] | masks[1]) > 0] = colour
    return image, masks[0], masks[1]


def test_positive_and_negative_clicks_are_hard_constraints() -> None:
    # two touching disks of one colour: the box covers both, clicks say which is meant
    image, left, right = two_disks(200, (30, 120, 30), (110, 40), (190, 40))
    prepared = prepare(ImagePixels.of(image), (65, 55, 170, 90))
    both = segment(prepared)
    assert iou(both.full(300, 200), (left | right) > 0) > 0.9
    clicked = segment(prepared, [Click(110, 100, True), Click(190, 100, False)], previous=both)
    full = clicked.full(300, 200)
    assert full[100, 110] and not full[100, 190]
    assert iou(full, left > 0) > 0.8


def test_probability_seeding_separates_look_alike_neighbours() -> None:
    # a textured gray field; only the model knows where the object is
    rng = np.random.default_rng(2)
    image = rng.integers(90, 160, (160, 160), dtype=np.uint8)
    truth = np.zeros((160, 160), bool)
    truth[50:110, 40:120] = True
    calls = []

    def probability(crop: np.ndarray) -> np.ndarray:
        calls.append(crop.shape)
        return np.full(crop.shape[:2], 0.05, np.float32)  # replaced below

    # the model's map is known in image coordinates: hand the matching crop back
    source = ImagePixels.of(image)
    window = box_window((40, 50, 80, 60), source.size)

    def prob(crop: np.ndarray) -> np.ndarray:
        calls.append(crop.shape)
        h, w = crop.shape[:2]
        # the context window is the box window grown by MODEL_CONTEXT (clipped)
        from labeler.assist.grabcut import MODEL_CONTEXT

        x0, y0 = max(0, window.x0 - MODEL_CONTEXT), max(0, window.y0 - MODEL_CONTEXT)
        return truth[y0 : y0 + h, x0 : x0 + w].astype(np.float32) * 0.9 + 0.05

    plain = segment(prepare(source, (40, 50, 80, 60)))
    seeded = segment(prepare(source, (40, 50, 80, 60), probability=prob))
    assert calls and calls[0][2] == 3
    assert iou(seeded.full(160, 160), truth) > 0.95
    assert iou(seeded.full(160, 160), truth) > iou(plain.full(160, 160), truth)


def _offset_model_scene() -> tuple[ImagePixels, np.ndarray, ProbabilityFn]:
    """A textured gray field with a 60 x 80 object only a model can see, and a model whose edge
    lies 3 pixels inside the object's on every side (a smooth ramp of log-odds)."""
    rng = np.random.default_rng(3)
    image = rng.integers(90, 160, (160, 200), dtype=np.uint8)
    truth = np.zeros((160, 200), bool)
    truth[50:110, 40:120] = True
    inner = np.zeros((160, 200), np.uint8)
    inner[53:107, 43:117] = 1
    inside = cv2.distanceTransform(inner, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - inner, cv2.DIST_L2, 3)
    logits = np.clip(np.where(inner > 0, inside - 0.5, 0.5 - outside), -12, 12).astype(np.float32)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    window = box_window((40, 50, 80, 60), (200, 160))

    def model(crop: np.ndarray) -> np.ndarray:
        from labeler.assist.grabcut import MODEL_CONTEXT

        h, w = crop.shape[:2]
        x0, y0 = max(0, window.x0 - MODEL_CONTEXT), max(0, window.y0 - MODEL_CONTEXT)
        return probabilities[y0 : y0 + h, x0 : x0 + w]

    return ImagePixels.of(image), truth, model


def test_a_click_moves_the_models_edge_along_a_stretch_not_across_it() -> None:
    # the model misses a 3-pixel strip all round; a positive click in the strip's middle should
    # bring the edge out to the object's near the click, without claiming the far side of the strip
    source, truth, model = _offset_model_scene()
    prepared = prepare(source, (40, 50, 80, 60), probability=model)
    first = segment(prepared)
    assert not first.full(200, 160)[80, 41]  # the strip starts missed
    clicked = segment(prepared, [*first.clicks, Click(41.5, 80.5, True)], previous=first)
    full = clicked.full(200, 160)
    assert full[76:85, 41:43].all()  # that stretch of the strip joined the object ...
    assert not full[76:85, 36:39].any()  # ... and nothing beyond the object's edge did
    assert iou(full, truth) > iou(first.full(200, 160), truth)
    # the click keeps what it was measured against: passing the result's clicks back is stable
    (measured,) = clicked.clicks
    assert measured.room is not None and 1.0 <= measured.room <= 2.5
    again = segment(prepared, clicked.clicks, previous=first)
    assert np.array_equal(again.mask, clicked.mask)


def test_big_image_reads_only_a_window_of_a_reduced_level() -> None:
    # an 8000 x 8000 image held at 1/8 size (as the canvas holds it): a box of 4000 pixels
    level = np.full((1000, 1000, 4), 220, np.uint8)
    cv2.circle(level, (500, 500), 200, (200, 40, 40, 255), -1)  # B, G, R, X
    source = ImagePixels(level, (8000, 8000), reduce=8, bgrx=True)
    prepared = prepare(source, (2300, 2300, 3400, 3400))
    assert max(prepared.image.shape[:2]) <= 280
    assert tuple(prepared.image[prepared.image.shape[0] // 2, prepared.image.shape[1] // 2]) == (40, 40, 200)
    mask = segment(prepared)
    area = mask.mask.sum()
    assert area == pytest.approx(np.pi * 1600**2, rel=0.08)


def test_a_gigapixel_image_is_read_by_windows_from_its_pyramid(tmp_path: Path) -> None:
    # a disk of radius 600 on a 2400 x 1800 image: its box's window is worked at about 1/5 scale,
    # so it is read from the pyramid level of 1/4 size, and the mask matches the whole-image one
    pyvips = pytest.importorskip("pyvips")
    from labeler.core.tiles import open_pyramid

    w, h = 2400, 1800
    rng = np.random.default_rng(4)
    image = np.clip(rng.normal(190, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((h, w), np.uint8)
    cv2.circle(truth, (1200, 900), 600, 1, -1)
    image[truth > 0] = (40, 80, 200)
    path = tmp_path / "slide.tif"
    vimage = pyvips.Image.new_from_memory(image.tobytes(), w, h, 3, "uchar")
    vimage.tiffsave(str(path), tile=True, tile_width=256, tile_height=256, compression="deflate", bigtiff=True)
    pyramid = open_pyramid(path, tmp_path / "tiles")
    read: list[tuple[int, ...]] = []
    real_read = pyramid.read_region

    def counted(level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        read.append((level, width, height))
        return real_read(level, x, y, width, height)

    pyramid.read_region = counted  # type: ignore[method-assign]  # count what is read
    source = PyramidPixels(pyramid)
    box = (600.0, 300.0, 1201.0, 1201.0)
    window = box_window(box, source.size)
    from_pyramid = read_window(source, window)
    whole = read_window(ImagePixels.of(image), window)
    assert from_pyramid.shape == whole.shape
    assert np.abs(from_pyramid.astype(int) - whole).mean() < 3.0
    assert read and all(level == 2 and width * height < 400 * 400 for level, width, height in read)
    mask = segment(prepare(source, box)).full(w, h)
    assert iou(mask, truth > 0) > 0.95
    assert iou(mask, segment(prepare(ImagePixels.of(image), box)).full(w, h)) > 0.97


def test_read_window_converts_gray_and_bgrx() -> None:
    gray = np.arange(100, dtype=np.uint8).reshape(10, 10)
    window = box_window((2, 2, 5, 5), (10, 10), min_margin=0, margin=0.0)
    rgb = read_window(ImagePixels.of(gray), window)
    assert rgb.shape == (5, 5, 3) and (rgb[..., 0] == gray[2:7, 2:7]).all() and (rgb[..., 2] == gray[2:7, 2:7]).all()


def test_snap_path_follows_an_edge() -> None:
    image = np.full((120, 200, 3), 230, np.uint8)
    image[60:, :] = 20  # a horizontal edge at y = 60
    path = snap_path(ImagePixels.of(image), (20, 50), (180, 50))
    assert tuple(path[0]) == (20, 50) and tuple(path[-1]) == (180, 50)
    middle = path[(path[:, 0] > 50) & (path[:, 0] < 150)]
    assert len(middle) and np.abs(middle[:, 1] - 60).max() <= 2.0


def test_snap_path_follows_a_curved_boundary() -> None:
    # a dark disk on a light field: points clicked on its rim, the outline between them follows the
    # circle (a straight chord between points a quarter turn apart strays up to 12 px inside it)
    image = np.full((200, 200, 3), 225, np.uint8)
    cv2.circle(image, (100, 100), 40, (35, 35, 35), -1)
    angles = np.deg2rad([0.0, 90.0, 180.0, 270.0, 360.0])
    rim = [(100 + 40 * np.cos(a), 100 + 40 * np.sin(a)) for a in angles]
    for start, end in itertools.pairwise(rim):
        path = snap_path(ImagePixels.of(image), start, end)
        assert len(path) > 10
        radius = np.hypot(path[:, 0] - 100, path[:, 1] - 100)
        assert np.abs(radius - 40).max() <= 2.5, (start, end, radius.min(), radius.max())
        chord = np.linspace(start, end, 50)
        assert np.hypot(chord[:, 0] - 100, chord[:, 1] - 100).min() < 30  # the test would see a chord


def test_positive_click_on_a_detached_part_keeps_the_body() -> None:
    # a big and a small blob of one colour inside the box: the box keeps the big one; a positive
    # click on the small one adds it without dropping the big one
    image, big, small = two_disks(210, (150, 40, 40), (120, 45), (205, 15))
    prepared = prepare(ImagePixels.of(image), (70, 50, 155, 100))
    first = segment(prepared)
    assert iou(first.full(300, 200), big > 0) > 0.9
    both = segment(prepared, [Click(205, 100, True)], previous=first).full(300, 200)
    assert iou(both, (big | small) > 0) > 0.9


def test_box_on_a_small_low_contrast_object_is_not_empty() -> None:
    # plain GrabCut took the whole box for background here (its colour models have no shape prior)
    rng = np.random.default_rng(5)
    image = np.clip(rng.normal(120, 25, (160, 160, 3)), 0, 255).astype(np.uint8)
    truth = np.zeros((160, 160), np.uint8)
    cv2.ellipse(truth, (80, 80), (18, 16), 0, 0, 360, 1, -1)
    image[truth > 0] = np.clip(image[truth > 0].astype(int) + 30, 0, 255).astype(np.uint8)
    result = segment(prepare(ImagePixels.of(image), (62, 64, 37, 33)))
    assert iou(result.full(160, 160), truth > 0) > 0.6


def test_region_at_takes_one_part() -> None:
    mask = np.zeros((50, 80), bool)
    mask[5:15, 5:15] = True
    mask[30:45, 50:70] = True
    assert region_count(mask) == 2
    part = region_at(mask, 55.5, 35.2)
    assert part is not None and part.sum() == 15 * 20 and not part[10, 10]
    assert region_at(mask, 30, 30) is None and region_at(mask, -1, 3) is None


def test_protocol_clicks_the_centre_of_the_largest_error() -> None:
    truth = np.zeros((60, 60), bool)
    truth[10:50, 10:50] = True
    predicted = truth.copy()
    predicted[10:50, 30:50] = False  # misses the right half: a positive click in its middle
    click = next_click(predicted, truth, offset=(100, 200))
    assert click is not None and click.positive
    assert click.x == pytest.approx(140, abs=1.0) and 219 <= click.y <= 241  # 10 px from every edge
    assert next_click(truth, truth) is None
    assert iou(predicted, truth) == pytest.approx(0.5)
    assert clicks_to_reach([0.5, 0.8, 0.91], 0.9, max_clicks=20) == 2
    assert clicks_to_reach([0.5, 0.6], 0.9, max_clicks=20) == 20


def test_bad_box_is_a_clear_error() -> None:
    image, _ = _disk_scene()
    with pytest.raises(ValueError, match="box"):
        prepare(ImagePixels.of(image), (400, 400, 10, 10))
    with pytest.raises(ValueError, match="positive"):
        prepare(ImagePixels.of(image), (10, 10, 0, 10))
