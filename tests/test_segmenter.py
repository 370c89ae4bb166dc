"""Unit tests of the segmenter plugin: unpooling worked by hand, shapes, targets, proposals, metrics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from labeler.core.annotation import Annotation, Category, Kind  # noqa: E402
from labeler.core.geometry import decode_rle, encode_mask  # noqa: E402
from labeler.learning.api import LabelledImage, Plugin, Prediction, SkipImage, resolve_settings  # noqa: E402
from labeler_segmenter import (  # noqa: E402
    SegmenterPlugin,
    postprocess,
)
from labeler_segmenter.data import IGNORE, rasterise_target  # noqa: E402
from labeler_segmenter.network import EncoderDecoder, Unpool  # noqa: E402
from labeler_segmenter.postprocess import regions_to_proposals, upsampled_max  # noqa: E402

# A 4x4 input whose 2x2 windows (stride 2) have their maxima at distinct, known places:
#   window top-left  [[1, 5], [3, 0]] -> 5 at (0, 1)
#   window top-right [[2, 7], [6, 1]] -> 7 at (0, 3)
#   window bot-left  [[9, 2], [1, 8]] -> 9 at (2, 0)
#   window bot-right [[4, 0], [3, 1]] -> 4 at (2, 2)
X = np.array([[1, 5, 2, 7], [3, 0, 6, 1], [9, 2, 4, 0], [1, 8, 3, 1]], dtype=np.float32)
POOLED = np.array([[5, 7], [9, 4]], dtype=np.float32)


def _pool(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pooled, indices = torch.nn.MaxPool2d(2, stride=2, return_indices=True)(torch.from_numpy(x)[None, None])
    return pooled, indices


def test_max_pool_of_the_worked_example() -> None:
    pooled, _ = _pool(X)
    np.testing.assert_array_equal(pooled[0, 0].numpy(), POOLED)


def test_nearest_unpool_fills_each_2x2_patch() -> None:
    pooled, _ = _pool(X)
    out = Unpool("nearest", 1)(pooled)
    expected = np.array([[5, 5, 7, 7], [5, 5, 7, 7], [9, 9, 4, 4], [9, 9, 4, 4]], dtype=np.float32)
    np.testing.assert_array_equal(out[0, 0].numpy(), expected)


def test_max_unpool_puts_values_back_where_the_maxima_were() -> None:
    pooled, indices = _pool(X)
    out = Unpool("max", 1)(pooled, indices)
    expected = np.array([[0, 5, 0, 7], [0, 0, 0, 0], [9, 0, 4, 0], [0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(out[0, 0].numpy(), expected)


def test_max_unpool_needs_indices() -> None:
    pooled, _ = _pool(X)
    with pytest.raises(ValueError, match="indices"):
        Unpool("max", 1)(pooled)


def test_transposed_unpool_sums_overlapping_contributions() -> None:
    # out[2i - 1 + a, 2j - 1 + b] += x[i, j] * K[a, b] (stride 2, padding 1, output padding 1).
    # Rows (and columns) 0 and 2 get one input row (kernel row 1); row 1 gets input row 0 (kernel
    # row 2) plus input row 1 (kernel row 0); row 3 gets input row 1 (kernel row 2) only.
    pooled, _ = _pool(X)
    unpool = Unpool("transposed", 1)
    kernel = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    with torch.no_grad():
        unpool.unpool.weight.copy_(torch.from_numpy(kernel)[None, None])
        unpool.unpool.bias.zero_()
        out = unpool(pooled)[0, 0].numpy()
    # a=5, b=7, c=9, d=4 (POOLED), computed by hand:
    expected = np.array(
        [
            [5 * 5, 5 * 6 + 7 * 4, 7 * 5, 7 * 6],  # 25, 58, 35, 42
            [5 * 8 + 9 * 2, 5 * 9 + 7 * 7 + 9 * 3 + 4 * 1, 7 * 8 + 4 * 2, 7 * 9 + 4 * 3],  # 58, 125, 64, 75
            [9 * 5, 9 * 6 + 4 * 4, 4 * 5, 4 * 6],  # 45, 70, 20, 24
            [9 * 8, 9 * 9 + 4 * 7, 4 * 8, 4 * 9],  # 72, 109, 32, 36
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    # with an all-ones kernel every output is the plain sum of the inputs whose footprint covers it
    with torch.no_grad():
        unpool.unpool.weight.fill_(1.0)
        out = unpool(pooled)[0, 0].numpy()
    a, b, c, d = 5, 7, 9, 4
    expected = np.array(
        [[a, a + b, b, b], [a + c, a + b + c + d, b + d, b + d], [c, c + d, d, d], [c, c + d, d, d]], dtype=np.float32
    )
    np.testing.assert_array_equal(out, expected)


def test_each_max_unpool_uses_its_matching_pooling() -> None:
    model = EncoderDecoder(num_outputs=2, widths=(4, 8, 8), convs=1, middle_dilations=(1,), unpool="max").eval()
    pooled: dict[str, torch.Tensor] = {}
    seen: dict[str, torch.Tensor] = {}
    model.pool1.register_forward_hook(lambda m, i, o: pooled.__setitem__("pool1", o[1]))
    model.pool2.register_forward_hook(lambda m, i, o: pooled.__setitem__("pool2", o[1]))
    model.unpool1.register_forward_hook(lambda m, i, o: seen.__setitem__("unpool1", i[1]))
    model.unpool2.register_forward_hook(lambda m, i, o: seen.__setitem__("unpool2", i[1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    assert seen["unpool2"] is pooled["pool2"]  # first unpool undoes the last pool
    assert seen["unpool1"] is pooled["pool1"]
    assert pooled["pool1"].shape[-1] == 8 and pooled["pool2"].shape[-1] == 4


@pytest.mark.parametrize("unpool", ["nearest", "max", "transposed"])
@pytest.mark.parametrize("size", [(17, 23), (1, 1), (5, 64), (32, 32)])
def test_encoder_decoder_keeps_any_size(unpool: str, size: tuple[int, int]) -> None:
    model = EncoderDecoder(num_outputs=3, widths=(4, 8, 8), convs=1, middle_dilations=(1, 2), unpool=unpool).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size)


def test_naive_keeps_size_and_has_no_pooling() -> None:
    plugin = SegmenterPlugin()
    model = plugin.build_model(num_classes=2, settings=resolve_settings(plugin, {"arch": "naive", "widths": "8"}))
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in model.modules())
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 13, 9)).shape == (1, 3, 13, 9)


@pytest.mark.parametrize("arch", ["encoder-decoder", "naive"])
def test_test_flips_average_the_mirror_images_in_eval_mode_only(arch: str) -> None:
    plugin = SegmenterPlugin()
    small = {"arch": arch, "widths": "4,8,8", "convs": "1", "middle_dilations": "1", "precision": "fp32"}
    torch.manual_seed(0)
    plain = plugin.build_model(num_classes=2, settings=resolve_settings(plugin, {**small, "test_flips": "none"}))
    flipped = plugin.build_model(num_classes=2, settings=resolve_settings(plugin, {**small, "test_flips": "hv"}))
    flipped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 12, 20)
    plain.eval(), flipped.eval()
    with torch.no_grad():
        views = [plain(x), plain(x.flip(3)).flip(3), plain(x.flip(2)).flip(2), plain(x.flip(2, 3)).flip(2, 3)]
        expected = torch.stack([torch.softmax(v, dim=1) for v in views]).mean(dim=0)
        got = torch.softmax(flipped(x), dim=1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    flipped.train(), plain.train()
    torch.testing.assert_close(flipped(x), plain(x))  # training sees one view
    # auto follows the training flips
    auto = plugin.build_model(num_classes=2, settings=resolve_settings(plugin, {**small, "flips": "h"}))
    assert len(auto.test_views) == 2
    with pytest.raises(ValueError, match="test_flips"):
        plugin.build_model(num_classes=1, settings=resolve_settings(plugin, {**small, "test_flips": "d8"}))


def test_plugin_keeps_the_protocol_and_settings_parse() -> None:
    plugin = SegmenterPlugin()
    assert isinstance(plugin, Plugin)
    assert (plugin.name, plugin.task, plugin.metric) == ("segmenter", "segmentation", "mean_iou")
    settings = resolve_settings(plugin, {"unpool": "transposed", "lr": "0.01", "batch_size": "4"})
    assert settings["lr"] == 0.01 and settings["batch_size"] == 4
    with pytest.raises(ValueError, match="unpool"):
        plugin.build_model(num_classes=1, settings=resolve_settings(plugin, {"unpool": "bilinear"}))
    with pytest.raises(ValueError, match="widths"):
        plugin.build_model(num_classes=1, settings=resolve_settings(plugin, {"widths": "8,x,4"}))


CLASSES = (Category(1, "cat", (255, 0, 0)), Category(2, "dog", (0, 255, 0)))


def test_targets_from_every_kind_with_ignore() -> None:
    h, w = 8, 10
    mask = np.zeros((h, w), dtype=bool)
    mask[5:7, 6:9] = True
    anns = [
        Annotation(image_id=1, category_id=2, kind=Kind.BOX, box_xywh=(0, 0, 4, 3)),
        Annotation(image_id=1, category_id=1, kind=Kind.MASK, rle=encode_mask(mask)),
        # polygon over part of the box: the polygon wins there
        Annotation(
            image_id=1, category_id=1, kind=Kind.POLYGON, polygons=(np.array([[2, 0], [4, 0], [4, 2], [2, 2]]),)
        ),
        # a category the model does not know: ignored
        Annotation(image_id=1, category_id=9, kind=Kind.BOX, box_xywh=(8, 0, 2, 2)),
    ]
    ignore = np.zeros((h, w), dtype=bool)
    ignore[7, :] = True
    target = rasterise_target(anns, CLASSES, h, w, ignore)
    expected = np.zeros((h, w), dtype=np.uint8)
    expected[0:3, 0:4] = 2
    expected[0:2, 2:4] = 1
    expected[5:7, 6:9] = 1
    expected[0:2, 8:10] = IGNORE
    expected[7, :] = IGNORE
    np.testing.assert_array_equal(target, expected)


def _sample(target: np.ndarray, image: np.ndarray | None = None) -> LabelledImage:
    h, w = target.shape
    anns = tuple(
        Annotation(image_id=1, category_id=c.id, kind=Kind.MASK, rle=encode_mask(target == k))
        for k, c in enumerate(CLASSES, start=1)
        if (target == k).any()
    )
    img = image if image is not None else np.full((h, w, 3), 128, dtype=np.uint8)
    return LabelledImage(image_id=1, image=img, annotations=anns, classes=CLASSES)


def test_prepare_and_example_shapes_and_skip() -> None:
    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {"crop": "32", "scale": "0.5"})
    target = np.zeros((40, 60), dtype=np.uint8)
    target[10:20, 10:30] = 1
    item = plugin.prepare(_sample(target), settings=settings)
    assert item["image"].shape == (20, 30, 3) and item["target"].shape == (20, 30)
    assert set(np.unique(item["target"])) == {0, 1}
    rng = np.random.default_rng(0)
    for augment in (True, False):
        ex = plugin.example(item, augment=augment, rng=rng, settings=settings)
        assert ex["image"].shape == (3, 32, 32) and ex["image"].dtype == np.float32
        assert ex["target"].shape == (32, 32) and ex["target"].dtype == np.int64
        assert set(np.unique(ex["target"])) <= {0, 1, IGNORE}
    with pytest.raises(SkipImage):
        plugin.prepare(
            LabelledImage(
                image_id=2,
                image=np.zeros((4, 4, 3), np.uint8),
                annotations=(),
                classes=CLASSES,
                ignore_mask=np.ones((4, 4), bool),
            ),
            settings=settings,
        )
    with pytest.raises(SkipImage, match="mask"):  # mask of the wrong size
        bad = Annotation(image_id=1, category_id=1, kind=Kind.MASK, rle=encode_mask(np.ones((3, 3), bool)))
        plugin.prepare(
            LabelledImage(image_id=3, image=np.zeros((4, 4, 3), np.uint8), annotations=(bad,), classes=CLASSES),
            settings=settings,
        )


def test_proposals_one_per_connected_region_with_scores() -> None:
    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {"min_region": "3"})
    h, w = 12, 16
    logits = torch.zeros(1, 3, h, w)
    logits[0, 0] = 4.0  # background everywhere ...
    logits[0, 1, 1:4, 1:4] = 8.0  # ... a cat square (9 px)
    logits[0, 1, 8:11, 10:15] = 8.0  # a second cat region (15 px)
    logits[0, 2, 6:8, 2:5] = 8.0  # a dog (6 px)
    logits[0, 2, 0, 15] = 8.0  # a 1-pixel dog: too small
    pred = plugin.proposals(logits, image_shape=(h, w), classes=CLASSES, settings=settings)
    got = sorted((p.category_id, int(decode_rle(p.rle).sum())) for p in pred.proposals)
    assert got == [(1, 9), (1, 15), (2, 6)]
    p_fg = float(torch.softmax(torch.tensor([4.0, 8.0, 0.0]), 0)[1])
    for p in pred.proposals:
        assert p.kind is Kind.MASK and p.score == pytest.approx(p_fg, abs=1e-5)
    assert 0.0 < pred.uncertainty < 1.0
    # the dense map is what the proposals show: the 1-pixel dog went to the background around it
    assert pred.extra["label_map"][0, 15] == 0


def test_proposals_upsample_to_the_image_size() -> None:
    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {"max_side": "32", "min_region": "1"})
    image = np.zeros((50, 64, 3), dtype=np.uint8)
    x = plugin.inputs(image, settings=settings)
    assert x.shape == (1, 3, 25, 32)
    logits = torch.zeros(1, 3, 25, 32)
    logits[0, 1, :, 16:] = 5.0
    pred = plugin.proposals(logits, image_shape=(50, 64), classes=CLASSES, settings=settings)
    assert len(pred.proposals) == 1
    mask = decode_rle(pred.proposals[0].rle)
    assert mask.shape == (50, 64) and mask[:, 34:].all() and not mask[:, :30].any()


def test_uncertainty_bounds() -> None:
    plugin = SegmenterPlugin()
    uniform = plugin.proposals(torch.zeros(1, 3, 4, 4), image_shape=(4, 4), classes=CLASSES, settings={})
    assert uniform.uncertainty == pytest.approx(1.0)
    sure = torch.zeros(1, 3, 4, 4)
    sure[0, 2] = 100.0
    assert plugin.proposals(sure, image_shape=(4, 4), classes=CLASSES, settings={}).uncertainty == pytest.approx(0.0)


def test_upsampled_max_matches_torch_bilinear() -> None:
    probs = torch.softmax(torch.randn(5, 7, 9), dim=0)
    up = torch.nn.functional.interpolate(probs[None], size=(30, 41), mode="bilinear", align_corners=False)[0]
    expected_conf, expected_labels = up.max(dim=0)
    conf, labels = upsampled_max(probs.numpy(), 30, 41)
    assert conf.dtype == np.float32 and labels.dtype == np.uint8
    np.testing.assert_allclose(conf, expected_conf.numpy(), atol=1e-5)
    assert (labels == expected_labels.numpy()).mean() > 0.99  # ties may break either way
    same_conf, same_labels = upsampled_max(probs.numpy(), 7, 9)  # no resizing at the network's size
    np.testing.assert_array_equal(same_labels, probs.argmax(dim=0).numpy())
    np.testing.assert_array_equal(same_conf, probs.max(dim=0).values.numpy())


def test_upsampling_in_strips_matches_the_direct_way(monkeypatch: pytest.MonkeyPatch) -> None:
    probs = torch.softmax(torch.randn(3, 7, 9), dim=0).numpy()
    conf, labels = upsampled_max(probs, 30, 41)
    monkeypatch.setattr(postprocess, "MAX_STRIP_ELEMENTS", 3 * 41 * 4)  # strips of 4 rows
    conf2, labels2 = upsampled_max(probs, 30, 41)
    np.testing.assert_allclose(conf2, conf, atol=1e-2)  # remap interpolates in fixed point
    assert (labels2 == labels).mean() > 0.97


def test_regions_match_one_mask_per_connected_region() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
        labels = cv2.medianBlur(labels, 3) if min(h, w) > 2 else labels  # blobs, not only noise
        confidence = rng.random((h, w)).astype(np.float32)
        got = regions_to_proposals(labels, confidence, CLASSES, min_region=3)
        expected = []
        for k, category in enumerate(CLASSES, start=1):
            count, regions = cv2.connectedComponents((labels == k).view(np.uint8), connectivity=8)
            for r in range(1, count):
                region = regions == r
                if region.sum() >= 3:
                    expected.append((category.id, encode_mask(region)["counts"], float(confidence[region].mean())))
        assert sorted((p.category_id, p.rle["counts"]) for p in got) == sorted(e[:2] for e in expected)
        scores = {(p.category_id, p.rle["counts"]): p.score for p in got}
        for category_id, counts, score in expected:
            assert scores[(category_id, counts)] == pytest.approx(score, abs=1e-5)


def test_small_regions_are_absorbed_by_their_neighbours() -> None:
    labels = np.zeros((12, 12), np.uint8)
    labels[:, 6:] = 2  # two big regions: background left, dog right
    labels[5, 8] = 0  # a 1-pixel hole in the dog
    labels[2:4, 1:3] = 1  # a 4-pixel cat speck on the background
    labels[9, 5] = 1  # a 1-pixel cat speck on the border of both
    out = postprocess.absorb_small_regions(labels, 2, min_region=5)
    expected = np.zeros((12, 12), np.uint8)
    expected[:, 6:] = 2
    expected[9, 5] = 2  # touches both: the higher class index wins
    np.testing.assert_array_equal(out, expected)
    assert postprocess.absorb_small_regions(labels, 2, min_region=4)[2, 1] == 1  # 4 pixels stay
    assert postprocess.absorb_small_regions(expected, 2, min_region=5) is expected  # nothing to do
    # every pixel with a class (CamVid-like): the proposals cover the whole image, no slivers
    rng = np.random.default_rng(0)
    noisy = rng.integers(1, 3, (40, 40)).astype(np.uint8)
    noisy[:, :20] = 1
    noisy[:, 20:] = 2
    noisy[rng.random((40, 40)) < 0.02] = 0  # scattered background specks
    pred = postprocess.prediction_from_labels(
        noisy, np.ones((40, 40), np.float32), num_outputs=3, classes=CLASSES, min_region=5
    )
    covered = sum(decode_rle(p.rle).astype(int) for p in pred.proposals)
    assert (covered == 1).all() and len(pred.proposals) == 2


def test_evaluate_on_a_hand_made_case() -> None:
    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {})
    truth = np.zeros((2, 4), dtype=np.uint8)
    truth[0, :2] = 1  # cat: (0,0) (0,1)
    truth[1, 2:] = 2  # dog: (1,2) (1,3)
    ignore = np.zeros((2, 4), bool)
    ignore[1, 0] = True
    sample = _sample(truth)
    sample = LabelledImage(
        image_id=1, image=sample.image, annotations=sample.annotations, classes=CLASSES, ignore_mask=ignore
    )
    predicted = np.array([[1, 0, 0, 0], [2, 0, 2, 1]], dtype=np.uint8)  # (1,0) is ignored
    pred = Prediction(proposals=(), uncertainty=0.0, extra={"label_map": predicted})
    m = plugin.evaluate([pred], [sample], settings=settings)
    # background: truth {(0,2),(0,3),(1,1)}, predicted {(0,1),(0,2),(0,3),(1,1)}: 3 / 4
    # cat: truth {(0,0),(0,1)}, predicted {(0,0),(1,3)}: 1 / 3;  dog: truth {(1,2),(1,3)}, pred {(1,2)}: 1 / 2
    assert m["iou/background"] == pytest.approx(3 / 4)
    assert m["iou/cat"] == pytest.approx(1 / 3)
    assert m["iou/dog"] == pytest.approx(1 / 2)
    assert m["mean_iou"] == pytest.approx((3 / 4 + 1 / 3 + 1 / 2) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
    # without a dense map the proposals are painted: the same answer from mask proposals
    props = tuple(
        __import__("labeler.learning.api", fromlist=["Proposal"]).Proposal(
            category_id=c.id, kind=Kind.MASK, score=0.9, rle=encode_mask(predicted == k)
        )
        for k, c in enumerate(CLASSES, start=1)
    )
    m2 = plugin.evaluate([Prediction(proposals=props, uncertainty=0.0)], [sample], settings=settings)
    assert m2["mean_iou"] == pytest.approx(m["mean_iou"])


def test_mean_iou_skips_classes_absent_everywhere() -> None:
    # every pixel is a class or ignored (CamVid-like): background has no truth and is not predicted
    plugin = SegmenterPlugin()
    truth = np.ones((2, 2), dtype=np.uint8)
    sample = _sample(truth)
    pred = Prediction(proposals=(), uncertainty=0.0, extra={"label_map": np.ones((2, 2), np.uint8)})
    m = plugin.evaluate([pred], [sample], settings={})
    assert m == {"iou/cat": 1.0, "mean_iou": 1.0, "pixel_accuracy": 1.0}


def test_losses_ignore_pixels_and_are_differentiable() -> None:
    plugin = SegmenterPlugin()
    settings = resolve_settings(plugin, {"widths": "4,8,8", "convs": "1", "middle_dilations": "1"})
    model = plugin.build_model(num_classes=2, settings=settings)
    image = torch.randn(2, 3, 16, 16)
    target = torch.full((2, 16, 16), IGNORE, dtype=torch.int64)
    target[:, :8] = 1
    losses = plugin.losses(model, {"image": image, "target": target}, settings=settings)
    assert set(losses) == {"ce", "dice"}
    total = sum(losses.values())
    total.backward()
    assert all(torch.isfinite(v) for v in losses.values())
    # only ignored pixels: zero losses, still attached to the graph
    target[:] = IGNORE
    losses = plugin.losses(model, {"image": image, "target": target}, settings=settings)
    total = sum(losses.values())
    assert float(total.detach()) == 0.0 and total.requires_grad


@pytest.mark.parametrize("unpool", ["nearest", "max", "transposed"])
def test_bf16_precision_matches_fp32_closely(unpool: str) -> None:
    torch.manual_seed(0)
    exact = EncoderDecoder(num_outputs=3, widths=(8, 16, 16), convs=1, middle_dilations=(1, 2), unpool=unpool).eval()
    mixed = EncoderDecoder(
        num_outputs=3, widths=(8, 16, 16), convs=1, middle_dilations=(1, 2), unpool=unpool, precision="bf16"
    ).eval()
    mixed.load_state_dict(exact.state_dict())  # same parameters: precision changes no checkpoint
    x = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        a, b = exact(x), mixed(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max()) + 0.05
    with pytest.raises(ValueError, match="precision"):
        EncoderDecoder(num_outputs=2, precision="fp16")


def test_region_map_numbers_each_class_s_regions_in_turn() -> None:
    """Region ids run class by class (background first when it is counted), each region one
    8-connected piece of one class, and every pixel of a counted class has an id."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        labels = rng.integers(0, 4, (h, w)).astype(np.uint8)
        labels = cv2.medianBlur(labels, 3) if min(h, w) > 2 else labels
        for background in (False, True):
            regions, region_class = postprocess.region_map(labels, 3, background=background)
            assert regions.dtype == np.int32 and region_class[0] == 0
            next_id = 1
            for k in range(0 if background else 1, 4):
                count, expected = cv2.connectedComponents((labels == k).view(np.uint8), connectivity=8)
                ids = np.unique(regions[labels == k])
                assert ids.tolist() == list(range(next_id, next_id + count - 1))
                assert (region_class[ids] == k).all()
                for r in ids:  # the same pieces as labelling the class alone
                    assert len(np.unique(expected[regions == r])) == 1
                next_id += count - 1
            assert len(region_class) == next_id
            if not background:
                assert (regions[labels == 0] == 0).all()


@pytest.mark.parametrize("unpool", ["nearest", "max", "transposed"])
def test_skip_connections_feed_the_encoder_s_detail_to_the_decoder(unpool: str) -> None:
    """With ``skips="concat"`` the decoder sees the full-resolution encoder features: a change of
    one input pixel changes the output there even when the bottleneck is cut off (zeroed)."""
    torch.manual_seed(0)
    net = EncoderDecoder(num_outputs=2, unpool=unpool, skips="concat").eval()
    assert net(torch.zeros(1, 3, 21, 30)).shape == (1, 2, 21, 30)
    plain = EncoderDecoder(num_outputs=2, unpool=unpool, skips="none").eval()
    for model, reaches in ((net, True), (plain, False)):
        model.middle.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        x = torch.rand(1, 3, 16, 16)
        y = x.clone()
        y[0, :, 8, 8] += 1.0
        with torch.no_grad():
            changed = not torch.allclose(model(x), model(y))
        assert changed is reaches
    with pytest.raises(ValueError, match="skips"):
        EncoderDecoder(num_outputs=2, skips="sum")


def test_versions_stored_before_the_skips_setting_load_without_them() -> None:
    from labeler.learning.checkpoints import version_settings

    plugin = SegmenterPlugin()
    old = version_settings(plugin, {"widths": "8,16,32"})  # a version from before the setting
    assert old["skips"] == "none" and old["widths"] == "8,16,32"
    assert version_settings(plugin, {"skips": "concat"})["skips"] == "concat"
