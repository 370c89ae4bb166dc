"""The localizer plugin: box conventions, augmentation, skipping, proposals, metrics, losses."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
labeler_localizer = pytest.importorskip("labeler_localizer")

from labeler.core.annotation import Annotation, Category, Kind, State  # noqa: E402
from labeler.core.geometry import encode_mask  # noqa: E402
from labeler.learning.api import LabelledImage, Plugin, Prediction, Proposal, SkipImage  # noqa: E402
from labeler.learning.predict import evaluate_samples  # noqa: E402
from labeler_localizer.boxes import (  # noqa: E402
    Augment,
    augment,
    box_in_window,
    crop_window,
    denormalize_box,
    flip_box,
    normalize_box,
    warp_to_window,
)
from labeler_localizer.plugin import LocalizerPlugin  # noqa: E402

CLASSES = (Category(1, "apple", (255, 0, 0)), Category(2, "banana", (255, 255, 0)))
SETTINGS = {"input_size": 64, "width": 8}


def box_ann(box: tuple[float, float, float, float], category: int = 1, state: State = State.ACCEPTED) -> Annotation:
    return Annotation(image_id=1, category_id=category, kind=Kind.BOX, box_xywh=box, state=state)


def sample(anns: tuple[Annotation, ...], h: int = 60, w: int = 80) -> LabelledImage:
    image = np.zeros((h, w, 3), np.uint8)
    return LabelledImage(image_id=1, image=image, annotations=anns, classes=CLASSES)


def test_is_a_plugin_with_documented_settings() -> None:
    plugin = LocalizerPlugin()
    assert isinstance(plugin, Plugin)
    assert (plugin.name, plugin.task, plugin.metric) == ("localizer", "localization", "score")
    names = {s.name for s in plugin.settings}
    assert {"lr", "batch_size", "weight_decay", "box_weight", "input_size"} <= names


def test_bad_settings_are_refused_with_the_reason() -> None:
    plugin = LocalizerPlugin()
    with pytest.raises(ValueError, match="multiple of 16"):
        plugin.build_model(num_classes=2, settings={"input_size": 100})
    with pytest.raises(ValueError, match="crop_min"):
        plugin.build_model(num_classes=2, settings={"crop_min": 1.5, "crop_max": 1.2})
    with pytest.raises(ValueError, match="box_weight"):
        plugin.build_model(num_classes=2, settings={"box_weight": -1.0})


def test_discovered_through_entry_point() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="labeler.plugins") if e.name == "localizer"]
    assert isinstance(ep.load()(), LocalizerPlugin)


def test_box_normalisation_round_trip_and_clipping() -> None:
    box = (10.0, 20.0, 30.0, 15.0)
    norm = normalize_box(box, 80, 60)
    np.testing.assert_allclose(norm, [10 / 80, 20 / 60, 30 / 80, 15 / 60], rtol=1e-6)
    np.testing.assert_allclose(denormalize_box(norm, 80, 60), box, rtol=1e-5)
    # a box reaching past the border keeps its visible part; reversed corners are reordered
    np.testing.assert_allclose(
        normalize_box((70.0, -5.0, 20.0, 25.0), 80, 60), [70 / 80, 0, 10 / 80, 20 / 60], rtol=1e-6
    )
    np.testing.assert_allclose(
        normalize_box((40.0, 30.0, -20.0, -10.0), 80, 60), [0.25, 20 / 60, 0.25, 10 / 60], rtol=1e-6
    )


def test_denormalize_clips_to_the_image_and_keeps_a_pixel() -> None:
    x, y, w, h = denormalize_box((-0.2, 0.5, 1.5, 0.8), 100, 50)
    assert (x, y) == (0.0, 25.0)
    assert x + w == 100.0 and y + h == 50.0
    x, y, w, h = denormalize_box((1.2, 0.3, 0.0, -0.1), 100, 50)
    assert w >= 1.0 and h >= 1.0 and x + w <= 100.0 and y + h <= 50.0 and x >= 0 and y >= 0


def test_resize_square_is_close_to_the_area_filter() -> None:
    import cv2

    from labeler_localizer.boxes import resize_square

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (900, 1300, 3), dtype=np.uint8), (0, 0), 2.0)
    out = resize_square(image, 64)
    ref = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(float) - ref).mean() < 1.0
    small = resize_square(np.zeros((20, 30, 3), np.uint8), 64)
    assert small.shape == (64, 64, 3)


def test_flip_twice_is_identity() -> None:
    box = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    np.testing.assert_allclose(flip_box(box), [0.6, 0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(flip_box(flip_box(box)), box, rtol=1e-6)


def test_warp_moves_pixels_and_box_together() -> None:
    """A white rectangle on black: after any crop window, the box of the white pixels is the box."""
    source = np.zeros((100, 100, 3), np.uint8)
    source[30:70, 20:60] = 255
    box = np.array([0.2, 0.3, 0.4, 0.4], np.float32)
    rng = np.random.default_rng(1)
    aug = Augment(min_visible=0.6)
    for _ in range(20):
        window = crop_window(box, rng, aug)
        view = warp_to_window(source, window, 50, (0, 0, 0))
        expect = box_in_window(box, window)
        ys, xs = np.nonzero(view[..., 0] > 127)
        got = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]) / 50
        np.testing.assert_allclose(got, expect, atol=1.5 / 50)


def test_augment_keeps_box_inside_and_consistent_with_pixels() -> None:
    source = np.zeros((80, 80, 3), np.uint8)
    source[8:40, 40:76] = 200
    box = np.array([0.5, 0.1, 0.45, 0.4], np.float32)
    rng = np.random.default_rng(0)
    aug = Augment(brightness=0.0, contrast=0.0, saturation=0.0, channel_gain=0.0, grayscale_p=0.0)
    flipped = 0
    for _ in range(30):
        view, out = augment(source, box, 40, rng, aug)
        assert view.shape == (40, 40, 3) and view.dtype == np.uint8
        assert out.dtype == np.float32
        assert (out >= 0).all() and out[0] + out[2] <= 1 + 1e-6 and out[1] + out[3] <= 1 + 1e-6
        # visible fraction respected: at least 60 % of the box area (in source units) remains
        assert out[2] * out[3] > 0
        ys, xs = np.nonzero(view[..., 0] > 100)
        got = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]) / 40
        np.testing.assert_allclose(got, out, atol=1.5 / 40)
        flipped += int(xs.min() < 20)
    assert flipped > 0  # some views were mirrored (the object starts on the right)


def test_skips_images_without_exactly_one_label() -> None:
    plugin = LocalizerPlugin()
    with pytest.raises(SkipImage, match="no accepted"):
        plugin.prepare(sample(()), settings=SETTINGS)
    with pytest.raises(SkipImage, match="2 accepted labels"):
        plugin.prepare(sample((box_ann((1, 1, 5, 5)), box_ann((10, 10, 5, 5)))), settings=SETTINGS)
    with pytest.raises(SkipImage, match="not among"):
        plugin.prepare(sample((box_ann((1, 1, 5, 5), category=7),)), settings=SETTINGS)
    with pytest.raises(SkipImage, match="empty"):
        plugin.prepare(sample((box_ann((90, 1, 5, 5)),)), settings=SETTINGS)
    # proposals and rejected labels do not count
    item = plugin.prepare(
        sample((box_ann((1, 1, 5, 5)), box_ann((10, 10, 5, 5), state=State.PROPOSED))), settings=SETTINGS
    )
    assert item["label"] == 0


def test_polygon_and_mask_count_as_their_box_unless_disabled() -> None:
    plugin = LocalizerPlugin()
    poly = Annotation(
        image_id=1, category_id=2, kind=Kind.POLYGON, polygons=(np.array([[8.0, 6.0], [40.0, 6.0], [24.0, 30.0]]),)
    )
    item = plugin.prepare(sample((poly,)), settings=SETTINGS)
    np.testing.assert_allclose(item["box"], [0.1, 0.1, 0.4, 0.4], rtol=1e-6)
    assert item["label"] == 1
    mask = np.zeros((60, 80), bool)
    mask[30:60, 40:80] = True
    rle_ann = Annotation(image_id=1, category_id=1, kind=Kind.MASK, rle=encode_mask(mask))
    item = plugin.prepare(sample((rle_ann,)), settings=SETTINGS)
    np.testing.assert_allclose(item["box"], [0.5, 0.5, 0.5, 0.5], rtol=1e-6)
    with pytest.raises(SkipImage, match="no accepted box"):
        plugin.prepare(sample((poly,)), settings={**SETTINGS, "shapes_as_boxes": False})


def test_example_shapes_and_grayscale_input() -> None:
    plugin = LocalizerPlugin()
    gray = LabelledImage(
        image_id=1, image=np.full((30, 50), 90, np.uint8), annotations=(box_ann((5, 5, 20, 10)),), classes=CLASSES
    )
    item = plugin.prepare(gray, settings=SETTINGS)
    rng = np.random.default_rng(0)
    for aug in (False, True):
        ex = plugin.example(item, augment=aug, rng=rng, settings=SETTINGS)
        assert ex["image"].shape == (3, 64, 64) and ex["image"].dtype == np.float32
        assert ex["box"].shape == (4,) and ex["box"].dtype == np.float32
        assert ex["label"].dtype == np.int64
    plain = plugin.example(item, augment=False, rng=rng, settings=SETTINGS)
    np.testing.assert_allclose(plain["box"], [0.1, 1 / 6, 0.4, 1 / 3], rtol=1e-6)
    # the un-augmented example is exactly what inference feeds the network
    x = plugin.inputs(gray.image, settings=SETTINGS)
    np.testing.assert_array_equal(x[0].numpy(), plain["image"])


def test_loss_is_cross_entropy_plus_weighted_mse() -> None:
    plugin = LocalizerPlugin()
    torch.manual_seed(0)
    model = plugin.build_model(num_classes=2, settings=SETTINGS).eval()
    batch = {
        "image": torch.randn(4, 3, 64, 64),
        "box": torch.rand(4, 4),
        "label": torch.tensor([0, 1, 1, 0]),
    }
    settings = {**SETTINGS, "tta_flip": False, "label_smoothing": 0.0}
    model.tta_flip = False
    with torch.no_grad():
        out = model(batch["image"])
        one = plugin.losses(model, batch, settings={**settings, "box_weight": 1.0})
        three = plugin.losses(model, batch, settings={**settings, "box_weight": 3.0})
    assert set(one) == {"class", "box"}
    ce = torch.nn.functional.cross_entropy(out["logits"], batch["label"])
    mse = ((out["box"] - batch["box"]) ** 2).mean()
    assert torch.allclose(one["class"], ce) and torch.allclose(one["box"], mse)
    assert torch.allclose(three["box"], 3 * mse) and torch.allclose(three["class"], ce)


@pytest.mark.parametrize("box_head", ["edges", "dense"])
def test_untrained_model_outputs_prior_box_and_flip_average(box_head: str) -> None:
    plugin = LocalizerPlugin()
    model = plugin.build_model(num_classes=2, settings={**SETTINGS, "box_head": box_head}).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 64, 64))
    assert out["logits"].shape == (3, 2) and out["box"].shape == (3, 4) and out["agreement"].shape == (3,)
    torch.testing.assert_close(out["box"], torch.tensor([[0.2, 0.2, 0.6, 0.6]] * 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["logits"].exp().sum(dim=1), torch.ones(3))


def test_edge_head_reads_each_side_where_its_scores_peak() -> None:
    from labeler_localizer.network import EdgeBoxHead

    head = EdgeBoxHead(fine=4, coarse=6, positions=9).eval()  # positions 0, 1/8, ..., 1
    with torch.no_grad():
        head.position_bias.zero_()
        for side, index in enumerate((2, 1, 6, 8)):  # left, top, right, bottom
            head.position_bias[side, index] = 50.0
        box = head(torch.randn(2, 4, 9, 9), torch.randn(2, 6, 5, 5))
    # x = left, y = top, w = right - left, h = bottom - top; a side on the border is reachable
    torch.testing.assert_close(box, torch.tensor([[2 / 8, 1 / 8, 4 / 8, 7 / 8]] * 2), atol=1e-5, rtol=0)


def test_versions_made_before_the_box_head_setting_load_with_the_dense_head() -> None:
    from labeler.learning.checkpoints import version_settings
    from labeler_localizer.network import EdgeBoxHead

    plugin = LocalizerPlugin()
    assert {s.name: s.default for s in plugin.settings}["box_head"] == "edges"
    old = {s.name: s.default for s in plugin.settings if s.name != "box_head"}
    resolved = version_settings(plugin, old)
    assert resolved["box_head"] == "dense"
    dense = plugin.build_model(num_classes=2, settings={**resolved, "input_size": 64})
    assert isinstance(dense.box_head, torch.nn.Sequential)
    edges = plugin.build_model(num_classes=2, settings={**SETTINGS, "box_head": "edges"})
    assert isinstance(edges.box_head, EdgeBoxHead)
    with pytest.raises(ValueError, match="box_head"):
        plugin.build_model(num_classes=2, settings={**SETTINGS, "box_head": "sideways"})


def test_proposals_in_pixels_clipped_with_score_and_uncertainty() -> None:
    plugin = LocalizerPlugin()
    outputs = {
        "logits": torch.tensor([[0.0, 2.0]]),
        "box": torch.tensor([[0.9, -0.1, 0.3, 0.5]]),
        "agreement": torch.tensor([0.5]),
    }
    pred = plugin.proposals(outputs, image_shape=(200, 100), classes=CLASSES, settings=SETTINGS)
    (p,) = pred.proposals
    assert p.kind is Kind.BOX and p.category_id == 2
    prob = float(torch.tensor([0.0, 2.0]).softmax(0)[1])
    assert p.score == pytest.approx(prob)
    assert p.box_xywh == pytest.approx((90.0, 0.0, 10.0, 80.0))
    assert pred.uncertainty == pytest.approx(1 - prob * 0.5)
    with pytest.raises(ValueError, match="batch of one"):
        plugin.proposals(
            {"logits": torch.zeros(2, 2), "box": torch.zeros(2, 4)},
            image_shape=(10, 10),
            classes=CLASSES,
            settings=SETTINGS,
        )
    with pytest.raises(ValueError, match="non-finite"):
        plugin.proposals(
            {"logits": torch.tensor([[float("nan"), 0.0]]), "box": torch.zeros(1, 4)},
            image_shape=(10, 10),
            classes=CLASSES,
            settings=SETTINGS,
        )


def test_inputs_and_proposals_on_a_real_forward() -> None:
    plugin = LocalizerPlugin()
    model = plugin.build_model(num_classes=2, settings=SETTINGS).eval()
    image = np.random.default_rng(0).integers(0, 255, (37, 91, 3), dtype=np.uint8)
    x = plugin.inputs(image, settings=SETTINGS)
    assert tuple(x.shape) == (1, 3, 64, 64) and x.dtype == torch.float32
    with torch.no_grad():
        pred = plugin.proposals(model(x), image_shape=(37, 91), classes=CLASSES, settings=SETTINGS)
    (p,) = pred.proposals
    x0, y0, w, h = p.box_xywh or (0, 0, 0, 0)
    assert x0 >= 0 and y0 >= 0 and x0 + w <= 91 and y0 + h <= 37
    assert 0 <= pred.uncertainty <= 1


def test_evaluate_hand_made_case() -> None:
    plugin = LocalizerPlugin()
    samples = [
        sample((box_ann((0, 0, 40, 30), category=1),)),  # predicted exactly, right class
        sample((box_ann((0, 0, 40, 30), category=2),)),  # half the box, wrong class
        sample((box_ann((40, 30, 40, 30), category=2),)),  # no proposal at all
        sample(()),  # unusable: left out
    ]

    def pred(cat: int, box: tuple[float, float, float, float]) -> Prediction:
        return Prediction(
            proposals=(Proposal(category_id=cat, kind=Kind.BOX, score=0.9, box_xywh=box),), uncertainty=0.1
        )

    predictions = [
        pred(1, (0, 0, 40, 30)),
        pred(1, (0, 0, 20, 30)),
        Prediction(proposals=(), uncertainty=1.0),
        pred(1, (0, 0, 10, 10)),
    ]
    metrics = plugin.evaluate(predictions, samples, settings=SETTINGS)
    assert metrics["images"] == 3
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["box_iou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert metrics["score"] == pytest.approx(1.0 / 3)
    assert plugin.evaluate([], [], settings=SETTINGS)["images"] == 0


def _square_scenes(n: int, seed: int) -> list[LabelledImage]:
    """Dark noisy images with one bright square (class 0) or a bright wide bar (class 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 48, 64
        image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        cls = int(rng.integers(2))
        bh = int(rng.integers(10, 24))
        bw = bh if cls == 0 else min(w - 2, 2 * bh)
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image[y : y + bh, x : x + bw] = (230, 230, 230) if cls == 0 else (230, 200, 60)
        ann = Annotation(image_id=i + 1, category_id=CLASSES[cls].id, kind=Kind.BOX, box_xywh=(x, y, bw, bh))
        out.append(LabelledImage(image_id=i + 1, image=image, annotations=(ann,), classes=CLASSES))
    return out


@pytest.mark.slow
def test_tiny_training_learns_to_look_at_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    import labeler.learning.loop as loop
    from labeler.learning.loop import fit

    # a network this small gains nothing from a second thread, and loses much when cores are busy
    monkeypatch.setattr(loop, "_set_threads", lambda world: torch.set_num_threads(1), raising=False)

    plugin = LocalizerPlugin()
    settings = {
        **{s.name: s.default for s in plugin.settings},
        "input_size": 64,  # the edge head reads sides on an 8-position grid
        "width": 8,
        "batch_size": 16,
        "lr": 5e-3,
        "dropout": 0.0,
    }
    train, held = _square_scenes(160, 0), _square_scenes(40, 1)
    items = [plugin.prepare(s, settings=settings) for s in train]
    torch.manual_seed(0)
    model = plugin.build_model(num_classes=2, settings=settings)
    result = fit(plugin, model, items, settings=settings, epochs=12, seed=0, prefetch=0)
    model = result.model.eval()
    metrics = evaluate_samples(plugin, model, held, settings=settings)
    # the mean box of these scenes scores about 0.2 IoU
    mean = np.mean([normalize_box(s.annotations[0].box_xywh or (0, 0, 0, 0), 64, 48) for s in train], axis=0)
    from labeler.core.geometry import box_iou

    baseline = np.mean(
        [box_iou(denormalize_box(mean, 64, 48), s.annotations[0].box_xywh or (0, 0, 0, 0)) for s in held]
    )
    assert metrics["box_iou"] > baseline + 0.25, (metrics, baseline)
    assert metrics["accuracy"] >= 0.9, metrics


def test_auto_label_decodes_big_jpegs_small_and_boxes_in_full_pixels(tmp_path, monkeypatch) -> None:
    import cv2

    from labeler.core.store import ModelVersion, Project
    from labeler.learning.autolabel import auto_label
    from labeler.learning.checkpoints import LoadedModel

    plugin = LocalizerPlugin()
    settings = {s.name: s.default for s in plugin.settings}
    rng = np.random.default_rng(0)
    photo = (rng.random((1200, 1600, 3)) * 255).astype(np.uint8)
    cv2.rectangle(photo, (400, 300), (1100, 900), (255, 255, 255), -1)
    with Project.create(tmp_path / "p") as project:
        category = project.ensure_category("thing")
        cv2.imwrite(str(tmp_path / "p" / "photo.jpg"), photo)
        (image_id,) = project.add_images([tmp_path / "p" / "photo.jpg"])
        version = project.add_model_version(
            ModelVersion(plugin="localizer", settings=settings, categories=(category.id,), checkpoint="none")
        )
        torch.manual_seed(0)
        model = plugin.build_model(num_classes=1, settings=settings).eval()
        loaded = LoadedModel(
            plugin=plugin, version=version, model=model, classes=(category,), settings=settings, device="cpu"
        )
        seen = []
        inputs = plugin.inputs
        monkeypatch.setattr(
            plugin, "inputs", lambda image, *, settings: seen.append(image.shape) or inputs(image, settings=settings)
        )
        result = auto_label(project, loaded, [image_id])
        assert result.images == 1 and not result.failed
        # 1600 x 1200 decoded at 1/8 (200 x 150): both sides still >= the 96-pixel input
        assert seen == [(150, 200, 3)]
        (proposal,) = project.annotations(image_id, states=[State.PROPOSED])
        x, y, w, h = proposal.box_xywh
        assert x >= 0 and y >= 0 and x + w <= 1600 + 0.5 and y + h <= 1200 + 0.5
        assert (project.image(image_id).width, project.image(image_id).height) == (1600, 1200)
        # the same box as from the fully decoded photo, up to resampling
        full = plugin.proposals(
            model(plugin.inputs(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), settings=settings)),
            image_shape=(1200, 1600),
            classes=(category,),
            settings=settings,
        )
        assert np.allclose(full.proposals[0].box_xywh, proposal.box_xywh, atol=16)
