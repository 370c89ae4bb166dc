"""The detector plugin: grid and box encoding, targets, augmentation, NMS, proposals, COCO mAP,
skipping, and a tiny training run that learns to find several objects."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
labeler_detector = pytest.importorskip("labeler_detector")

from labeler.core.annotation import Annotation, Category, Kind, State  # noqa: E402
from labeler.core.geometry import encode_mask  # noqa: E402
from labeler.learning.api import LabelledImage, Plugin, Prediction, Proposal, SkipImage, default_settings  # noqa: E402
from labeler.learning.predict import evaluate_samples  # noqa: E402
from labeler_detector.grid import (  # noqa: E402
    IGNORE,
    build_targets,
    decode_boxes,
    encode_box,
    input_shape,
    parse_anchors,
)
from labeler_detector.plugin import DetectorPlugin, nms, vote_boxes  # noqa: E402
from labeler_detector.views import Augment, random_view  # noqa: E402

CLASSES = (Category(4, "cell", (255, 0, 0)), Category(9, "platelet", (0, 255, 0)))
ANCHORS = (1.5, 4.0)
SETTINGS = {"anchors": "1.5,4", "width": 8, "stride": 16}


def box_ann(box: tuple[float, float, float, float], category: int = 4) -> Annotation:
    return Annotation(image_id=1, category_id=category, kind=Kind.BOX, box_xywh=box, state=State.ACCEPTED)


def sample(anns: tuple[Annotation, ...], h: int = 60, w: int = 80) -> LabelledImage:
    return LabelledImage(image_id=1, image=np.zeros((h, w, 3), np.uint8), annotations=anns, classes=CLASSES)


def test_is_a_detection_plugin_found_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    plugin = DetectorPlugin()
    assert isinstance(plugin, Plugin)
    assert (plugin.name, plugin.task, plugin.metric) == ("detector", "detection", "map50")
    (ep,) = [e for e in entry_points(group="labeler.plugins") if e.name == "detector"]
    assert isinstance(ep.load()(), DetectorPlugin)
    names = {s.name for s in plugin.settings}
    assert {"class_weight", "box_weight", "anchors", "input_size", "nms_iou", "min_score"} <= names


def test_bad_settings_are_refused_with_the_reason() -> None:
    plugin = DetectorPlugin()
    for bad, match in [
        ({"anchors": "2,x"}, "anchors"),
        ({"anchors": "0"}, "anchors"),
        ({"train_size": 100}, "train_size"),
        ({"zoom_min": 2.0, "zoom_max": 1.0}, "zoom_min"),
        ({"box_weight": -1.0}, "box_weight"),
        ({"nms_iou": 0.0}, "nms_iou"),
    ]:
        with pytest.raises(ValueError, match=match):
            plugin.build_model(num_classes=2, settings=bad)


def test_input_keeps_the_aspect_ratio_on_multiples_of_32() -> None:
    assert input_shape(480, 640, 320) == (256, 320)  # 240 rounds to 256
    assert input_shape(640, 480, 320) == (320, 256)
    assert input_shape(480, 640, 0) == (480, 640)  # the image's own size
    assert input_shape(37, 53, 320) == (224, 320)
    assert input_shape(5, 2000, 320) == (32, 320)  # never below one multiple
    assert parse_anchors("4, 1.5") == (1.5, 4.0)


def test_box_encoding_round_trip_at_every_cell_and_anchor() -> None:
    rng = np.random.default_rng(0)
    grid = (6, 8)
    encoded = np.zeros((len(ANCHORS), 4, *grid), np.float32)
    truth = np.zeros((len(ANCHORS), *grid, 4), np.float32)
    for a, anchor in enumerate(ANCHORS):
        for i in range(grid[0]):
            for j in range(grid[1]):
                w, h = rng.uniform(0.3, 7.0, size=2)
                cx, cy = j + rng.uniform(0, 1), i + rng.uniform(0, 1)
                box = (cx - w / 2, cy - h / 2, w, h)
                encoded[a, :, i, j] = encode_box(box, i, j, anchor)
                truth[a, i, j] = box
    np.testing.assert_allclose(decode_boxes(encoded, ANCHORS), truth, atol=1e-4)
    # the centre's offset from the cell centre, and the log size against the anchor
    np.testing.assert_allclose(encode_box((2.0, 1.0, 3.0, 1.5), 1, 3, 1.5), [0.0, 0.25, math.log(2.0), 0.0], atol=1e-6)


def test_targets_centre_cells_ignore_zones_and_the_smaller_object_wins() -> None:
    big = np.array([[0.0, 0.0, 6.0, 6.0]])  # anchor 4 (size 6 cells), centre cell (3, 3)
    cls, box = build_targets(big, np.array([1]), grid=(8, 8), anchors=ANCHORS, center_radius=1.0)
    assert cls.shape == (2, 8, 8) and box.shape == (2, 4, 8, 8)
    positive = np.argwhere(cls[1] == 1)
    assert {tuple(p) for p in positive} == {(i, j) for i in (2, 3) for j in (2, 3)}  # within a cell of (3, 3)
    assert (cls[1, :6, :6][cls[1, :6, :6] != 1] == IGNORE).all()  # the rest of the box is ignored
    assert (cls[1, 6:, :] == 0).all() and (cls[0] == 0).all()  # outside it, and the other anchor: no object
    np.testing.assert_allclose(box[1, :, 3, 3], encode_box(big[0], 3, 3, 4.0))
    # two objects on one anchor: the smaller keeps the cells they share, each keeps its centre cell
    pair = np.array([[0.0, 0.0, 6.0, 6.0], [3.5, 3.5, 2.0, 2.0]])  # centre cells (3, 3) and (4, 4)
    cls, _ = build_targets(pair, np.array([1, 2]), grid=(7, 7), anchors=(3.0,), center_radius=1.5)
    assert cls[0, 4, 4] == 2 and cls[0, 3, 4] == 2 and cls[0, 4, 3] == 2 and cls[0, 5, 5] == 2
    assert cls[0, 3, 3] == 1 and cls[0, 2, 2] == 1 and cls[0, 2, 4] == 1
    # a partly visible object is left out of the loss on every anchor
    cls, _ = build_targets(
        np.zeros((0, 4)), np.zeros(0), grid=(4, 4), anchors=ANCHORS, ignore_boxes=np.array([[0.0, 0.0, 2.0, 1.0]])
    )
    assert (cls[:, 0, :2] == IGNORE).all() and (cls[:, 1:] == 0).all()


def _coloured_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A black 300x400 image with three filled rectangles, one colour channel per label."""
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[40, 30, 80, 60], [200, 150, 50, 100], [300, 40, 60, 40]], np.float32)
    labels = np.array([1, 2, 3])
    for (x, y, w, h), label in zip(boxes.astype(int), labels, strict=True):
        image[y : y + h, x : x + w, label - 1] = 255
    return image, boxes, labels


def test_augmentation_moves_the_boxes_with_the_pixels() -> None:
    image, boxes, labels = _coloured_scene()
    aug = Augment(
        zoom=(0.6, 1.6), hflip=True, vflip=True, brightness=0, contrast=0, saturation=0, hue_gain=0, grayscale_p=0
    )
    seen = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        view, out, out_labels, ignore = random_view(image, boxes, labels, scale=0.5, size=128, rng=rng, aug=aug)
        assert view.shape == (128, 128, 3) and view.dtype == np.uint8
        assert len(out) == len(out_labels)
        for (x, y, w, h), label in zip(out, out_labels, strict=True):
            assert x >= 0 and y >= 0 and x + w <= 128.001 and y + h <= 128.001
            channel = view[..., label - 1] > 127
            inner = channel[math.ceil(y) + 1 : int(y + h) - 1, math.ceil(x) + 1 : int(x + w) - 1]
            assert inner.size and inner.mean() > 0.95, (seed, label)  # the box holds its object's pixels ...
            ys, xs = np.nonzero(channel)  # ... and the object's visible pixels lie in its box
            assert (
                xs.min() >= x - 1.5
                and xs.max() + 1 <= x + w + 1.5
                and ys.min() >= y - 1.5
                and ys.max() + 1 <= y + h + 1.5
            )
            seen += 1
        for _x, _y, w, h in ignore:  # objects mostly out of view are not targets, their visible part is ignored
            assert w > 0 and h > 0
    assert seen > 40


def test_colour_jitter_keeps_the_geometry() -> None:
    image, boxes, labels = _coloured_scene()
    rng = np.random.default_rng(1)
    plain = Augment(zoom=(1.0, 1.0), hflip=False, brightness=0, contrast=0, saturation=0, hue_gain=0, grayscale_p=0)
    a = random_view(image, boxes, labels, scale=0.4, size=160, rng=np.random.default_rng(1), aug=plain)
    b = random_view(image, boxes, labels, scale=0.4, size=160, rng=rng, aug=Augment(zoom=(1.0, 1.0), hflip=False))
    np.testing.assert_allclose(a[1], b[1])
    assert not np.array_equal(a[0], b[0])


def test_prepare_counts_shapes_by_their_box_and_skips_what_it_cannot_use() -> None:
    plugin = DetectorPlugin()
    mask = np.zeros((60, 80), bool)
    mask[10:20, 30:50] = True
    polygon = Annotation(
        image_id=1, category_id=9, kind=Kind.POLYGON, polygons=(np.array([[5, 5], [25, 5], [25, 15], [5, 15]], float),)
    )
    masked = Annotation(image_id=1, category_id=4, kind=Kind.MASK, rle=encode_mask(mask))
    item = plugin.prepare(sample((box_ann((1, 2, 10, 10)), polygon, masked)), settings=SETTINGS)
    assert item["labels"].tolist() == [1, 2, 1]
    scale = item["image"].shape[1] / 80
    np.testing.assert_allclose(item["boxes"] / scale, [[1, 2, 10, 10], [5, 5, 20, 10], [30, 10, 20, 10]], atol=1e-4)
    # an image with no labels is all background, and trains
    assert len(plugin.prepare(sample(()), settings=SETTINGS)["boxes"]) == 0
    with pytest.raises(SkipImage, match="shapes_as_boxes"):
        plugin.prepare(sample((box_ann((1, 2, 10, 10)), polygon)), settings={**SETTINGS, "shapes_as_boxes": False})
    with pytest.raises(SkipImage, match="not among"):
        plugin.prepare(sample((box_ann((1, 2, 10, 10), category=5),)), settings=SETTINGS)
    with pytest.raises(SkipImage, match="empty"):
        plugin.prepare(sample((box_ann((100, 2, 10, 10)),)), settings=SETTINGS)


def test_nms_keeps_one_box_per_object() -> None:
    boxes = np.array([[10, 10, 40, 40], [12, 11, 40, 40], [100, 100, 20, 20], [11, 10, 39, 41]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.3])
    labels = np.array([0, 0, 0, 1])
    assert nms(boxes, scores, labels, iou=0.5, per_class=False, top_k=10) == [1, 2]
    assert nms(boxes, scores, labels, iou=0.5, per_class=True, top_k=10) == [1, 2, 3]
    assert nms(boxes, scores, labels, iou=0.5, per_class=False, top_k=1) == [1]
    assert nms(boxes[:0], scores[:0], labels[:0], iou=0.5, per_class=False, top_k=10) == []


def test_box_voting_averages_the_overlapping_candidates_by_score() -> None:
    candidates = np.array([[10, 10, 40, 40], [14, 10, 40, 40], [100, 100, 20, 20]], np.float32)
    scores = np.array([0.75, 0.25, 0.9])
    voted = vote_boxes(candidates[[0, 2]], candidates, scores, iou=0.6)
    # the first kept box and its neighbour (IoU 0.82): corners 0.75 * 10 + 0.25 * 14 = 11, 51 + 0 ...
    np.testing.assert_allclose(voted, [[11, 10, 40, 40], [100, 100, 20, 20]], atol=1e-5)
    # at a stricter threshold the neighbour no longer votes
    np.testing.assert_allclose(vote_boxes(candidates[:1], candidates, scores, iou=0.9), candidates[:1], atol=1e-5)


def test_stride_8_grid_and_old_versions_keep_their_16_pixel_grid(tmp_path) -> None:
    from labeler.learning.checkpoints import version_settings

    plugin = DetectorPlugin()
    settings = {"anchors": "3,8", "width": 8, "stride": 8}
    model = plugin.build_model(num_classes=2, settings=settings).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 96))
    assert out["logits"].shape == (1, 2, 3, 8, 12) and out["box"].shape == (1, 2, 4, 8, 12)
    item = plugin.prepare(sample((box_ann((10, 10, 30, 30)),), h=64, w=64), settings=settings)
    example = plugin.example(item, augment=False, rng=np.random.default_rng(0), settings=settings)
    assert example["target_class"].shape == (2, 32, 32) and (example["target_class"] == 1).any()
    with pytest.raises(ValueError, match="stride"):
        plugin.build_model(num_classes=2, settings={"stride": 4})
    # a version stored before the stride setting existed was trained on the 16-pixel grid
    old = {k: v for k, v in default_settings(plugin).items() if k not in ("stride", "anchors", "vote_iou")}
    resolved = version_settings(plugin, old)
    assert (resolved["stride"], resolved["anchors"], resolved["vote_iou"]) == (16, "1.5,4,10", 0.0)
    old_model = plugin.build_model(num_classes=2, settings=resolved)
    assert old_model(torch.zeros(1, 3, 64, 64))["logits"].shape[-2:] == (4, 4)
    assert not any(name.startswith("fuse8") for name in old_model.state_dict())


def test_proposals_decode_cells_to_image_pixels_with_nms_and_uncertainty() -> None:
    plugin = DetectorPlugin()
    gh, gw = 4, 5  # an 80x64 input for a 200x160 image: 2.5 image pixels per input pixel
    logits = torch.full((1, 2, 3, gh, gw), -10.0)
    logits[:, :, 0] = 10.0  # "no object" everywhere ...
    box = torch.zeros((1, 2, 4, gh, gw))
    # ... except an object of class 1 at cell (1, 2), anchor 4, seen by two neighbouring cells
    logits[0, 1, 0, 1, 2], logits[0, 1, 2, 1, 2] = 0.0, 4.0
    logits[0, 1, 0, 1, 3], logits[0, 1, 2, 1, 3] = 0.0, 1.0
    box[0, 1, :, 1, 2] = torch.tensor([0.0, 0.0, 0.0, math.log(0.5)])  # 4 x 2 cells centred on (2.5, 1.5)
    box[0, 1, :, 1, 3] = torch.tensor([-1.0, 0.0, 0.0, math.log(0.5)])  # the same box from the next cell
    prediction = plugin.proposals(
        {"logits": logits, "box": box}, image_shape=(160, 200), classes=CLASSES, settings=SETTINGS
    )
    assert isinstance(prediction, Prediction) and len(prediction.proposals) == 1
    (p,) = prediction.proposals
    p_best = math.exp(4.0) / (1 + math.exp(4.0) + math.exp(-10.0))
    assert p.category_id == 9 and p.kind is Kind.BOX and p.score == pytest.approx(p_best, rel=1e-4)
    # cells span 200 / 5 = 40 and 160 / 4 = 40 image pixels: (0.5, 0.5, 4, 2) cells
    np.testing.assert_allclose(p.box_xywh, (20.0, 20.0, 160.0, 80.0), atol=1e-3)
    assert prediction.uncertainty == pytest.approx(1 - abs(2 * p_best - 1), rel=1e-4)
    # nothing found: no proposals, and an uncertainty near 0
    empty = plugin.proposals(
        {"logits": logits[:, :, :, :1], "box": box[:, :, :, :1]},
        image_shape=(40, 200),
        classes=CLASSES,
        settings=SETTINGS,
    )
    assert empty.proposals == () and empty.uncertainty < 1e-3
    with pytest.raises(ValueError, match="expected"):
        plugin.proposals({"logits": logits, "box": box}, image_shape=(160, 200), classes=CLASSES[:1], settings=SETTINGS)


def test_evaluate_matches_hand_worked_coco_map() -> None:
    plugin = DetectorPlugin()
    anns = (box_ann((0, 0, 20, 20)), box_ann((40, 0, 20, 20)), box_ann((0, 40, 10, 10), category=9))
    detections = (
        Proposal(4, Kind.BOX, 0.9, box_xywh=(0, 0, 20, 20)),  # exact: a hit at every threshold
        Proposal(4, Kind.BOX, 0.8, box_xywh=(20, 40, 20, 20)),  # on nothing: a false positive
        Proposal(4, Kind.BOX, 0.7, box_xywh=(44, 0, 20, 20)),  # IoU 16*20 / 480 = 0.667
        Proposal(9, Kind.BOX, 0.6, box_xywh=(0, 40, 10, 10)),  # the platelet, exact
    )
    metrics = plugin.evaluate([Prediction(detections, 0.5)], [sample(anns, h=80, w=80)], settings=SETTINGS)
    # class "cell", IoU thresholds up to 0.65: precision 1 up to recall 0.5, then 2/3 up to recall 1 (101 recall points)
    ap_hit = (51 * 1.0 + 50 * 2 / 3) / 101
    ap_miss = 51 / 101  # IoU >= 0.7: the third detection misses, recall stops at 0.5
    assert metrics["map50/cell"] == pytest.approx(ap_hit, abs=1e-6)
    assert metrics["map/cell"] == pytest.approx((4 * ap_hit + 6 * ap_miss) / 10, abs=1e-6)
    assert metrics["map50/platelet"] == pytest.approx(1.0) and metrics["map/platelet"] == pytest.approx(1.0)
    assert metrics["map50"] == pytest.approx((ap_hit + 1.0) / 2, abs=1e-6)
    assert metrics["images"] == 1 and metrics["objects"] == 3
    # no detections at all: 0, not an error; no labelled objects: 0
    assert plugin.evaluate([Prediction((), 0.0)], [sample(anns)], settings=SETTINGS)["map50"] == 0.0
    assert plugin.evaluate([Prediction(detections, 0.0)], [sample(())], settings=SETTINGS)["map50"] == 0.0


def test_losses_are_cross_entropy_over_cells_and_mse_over_object_boxes() -> None:
    plugin = DetectorPlugin()
    settings = {**SETTINGS, "class_weight": 2.0, "box_weight": 3.0}
    model = plugin.build_model(num_classes=2, settings=settings)
    model.train()
    item = plugin.prepare(
        sample((box_ann((10, 10, 30, 30)), box_ann((50, 20, 8, 8), category=9)), h=64, w=64), settings=settings
    )
    example = plugin.example(item, augment=False, rng=np.random.default_rng(0), settings=settings)
    assert example["image"].shape == (3, 256, 256)
    assert example["target_class"].shape == (2, 16, 16) and example["target_box"].shape == (2, 4, 16, 16)
    batch = {k: torch.from_numpy(np.asarray(v)[None]) for k, v in example.items()}
    losses = plugin.losses(model, batch, settings=settings)
    out = model(batch["image"])
    target = batch["target_class"]
    positive = target > 0
    ce = torch.nn.functional.cross_entropy(out["logits"].transpose(1, 2), target, ignore_index=-1, reduction="sum")
    mse = (
        (out["box"].permute(0, 1, 3, 4, 2)[positive] - batch["target_box"].permute(0, 1, 3, 4, 2)[positive]) ** 2
    ).mean()
    assert losses["class"].item() == pytest.approx(2.0 * ce.item() / positive.sum().item(), rel=1e-4)
    assert losses["box"].item() == pytest.approx(3.0 * mse.item(), rel=1e-4)
    assert set(np.unique(example["target_class"])) <= {IGNORE, 0, 1, 2} and {1, 2} <= set(
        np.unique(example["target_class"])
    )


def _scenes(count: int, seed: int) -> list[LabelledImage]:
    """128x128 grey images with 2-4 objects each: red squares (class "cell") and green small
    squares (class "platelet"), not overlapping."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(count):
        image = rng.integers(70, 110, size=(128, 128, 3)).astype(np.uint8)
        anns: list[Annotation] = []
        taken = np.zeros((128, 128), bool)
        for _ in range(int(rng.integers(2, 5))):
            big = rng.random() < 0.5
            side = int(rng.integers(28, 44)) if big else int(rng.integers(12, 18))
            for _ in range(20):
                x, y = (int(v) for v in rng.integers(0, 128 - side, size=2))
                if not taken[max(0, y - 3) : y + side + 3, max(0, x - 3) : x + side + 3].any():
                    break
            else:
                continue
            taken[y : y + side, x : x + side] = True
            image[y : y + side, x : x + side] = (220, 40, 40) if big else (40, 210, 60)
            anns.append(
                Annotation(image_id=n + 1, category_id=4 if big else 9, kind=Kind.BOX, box_xywh=(x, y, side, side))
            )
        out.append(LabelledImage(image_id=n + 1, image=image, annotations=tuple(anns), classes=CLASSES))
    return out


@pytest.mark.slow
def test_tiny_training_learns_to_find_every_object(monkeypatch: pytest.MonkeyPatch) -> None:
    import labeler.learning.loop as loop
    from labeler.learning.loop import fit

    monkeypatch.setattr(loop, "_set_threads", lambda world: torch.set_num_threads(1), raising=False)
    plugin = DetectorPlugin()
    settings = {
        **default_settings(plugin),
        "input_size": 128,
        "train_size": 128,
        "width": 8,
        "anchors": "1,2.5",
        "batch_size": 16,
        "lr": 1e-2,
    }
    train, held = _scenes(48, 0), _scenes(16, 1)
    items = [plugin.prepare(s, settings=settings) for s in train]
    torch.manual_seed(0)
    model = plugin.build_model(num_classes=2, settings=settings)
    before = evaluate_samples(plugin, model.eval(), held, settings=settings)
    result = fit(plugin, model, items, settings=settings, epochs=15, seed=0, prefetch=0)
    metrics = evaluate_samples(plugin, result.model.eval(), held, settings=settings)
    assert before["map50"] < 0.05, before
    # the large squares are found (the small ones, under a 16-pixel cell, take longer)
    assert metrics["map50/cell"] > 0.9 and metrics["map50"] > 0.45, metrics


def test_auto_label_stores_many_proposals_in_full_pixels(tmp_path, monkeypatch) -> None:
    import cv2

    from labeler.core.store import ModelVersion, Project
    from labeler.learning.autolabel import auto_label
    from labeler.learning.checkpoints import LoadedModel

    plugin = DetectorPlugin()
    settings = {**default_settings(plugin), **SETTINGS, "min_score": 0.0, "nms_iou": 1.0, "max_proposals": 40}
    torch.manual_seed(0)
    model = plugin.build_model(num_classes=2, settings=settings).eval()
    with Project.create(tmp_path / "p") as project:
        categories = (project.ensure_category("cell"), project.ensure_category("platelet"))
        photo = (np.random.default_rng(0).random((960, 1280, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "p" / "photo.jpg"), photo)
        (image_id,) = project.add_images([tmp_path / "p" / "photo.jpg"])
        version = project.add_model_version(
            ModelVersion(
                plugin="detector", settings=settings, categories=tuple(c.id for c in categories), checkpoint="none"
            )
        )
        loaded = LoadedModel(
            plugin=plugin, version=version, model=model, classes=categories, settings=settings, device="cpu"
        )
        seen = []
        inputs = plugin.inputs
        monkeypatch.setattr(
            plugin, "inputs", lambda image, *, settings: seen.append(image.shape) or inputs(image, settings=settings)
        )
        result = auto_label(project, loaded, [image_id])
        assert seen == [(240, 320, 3)]  # decoded at a quarter: both sides keep 3/4 of the 320-pixel input
        stored = project.annotations(image_id, states=[State.PROPOSED])
        assert result.proposals == 40 and len(stored) == 40  # at most max_proposals, all kept
        for a in stored:
            x, y, w, h = a.box_xywh
            assert a.kind is Kind.BOX and x >= 0 and y >= 0 and x + w <= 1280 and y + h <= 960
        # the proposals span the full-size image
        assert max(a.box_xywh[0] + a.box_xywh[2] for a in stored) > 640
        assert project.image(image_id).uncertainty is not None
