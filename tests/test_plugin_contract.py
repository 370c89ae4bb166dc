"""The plugin contract, checked on every discovered plugin (the example plugin always among them).

Each plugin must: build a network for 2 classes; prepare a small labelled image; give examples
whose arrays stack into a batch; return finite, named, scalar losses that back-propagate; turn an
odd-sized image into an input and the output back into proposals that lie inside that image with
scores in [0, 1]; and evaluate to a dict holding its ranking ``metric``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from learning_support import install_minimal_plugin

from labeler.core.annotation import Category, Kind
from labeler.core.geometry import decode_rle
from labeler.learning.api import Plugin, Prediction, SkipImage, default_settings
from labeler.learning.loop import stack_examples
from labeler.learning.plugins import discover
from labeler.learning.predict import check_prediction
from labeler.learning.synthetic import make_samples

install_minimal_plugin()
PLUGINS = discover()
CLASSES = (Category(3, "a", (255, 0, 0)), Category(7, "b", (0, 255, 0)))


def _samples(plugin: Plugin, height: int, width: int, count: int = 3):
    """Box labels for a localizer (one per image) or a detector (three per image), masks otherwise."""
    kind = Kind.BOX if plugin.task in ("localization", "detection") else Kind.MASK
    objects = 3 if plugin.task == "detection" else 1
    return make_samples(count, classes=CLASSES, height=height, width=width, kind=kind, objects=objects, seed=3)


@pytest.fixture(params=sorted(PLUGINS), ids=str)
def plugin(request) -> Plugin:
    return PLUGINS[request.param]


def test_the_example_plugin_is_discovered():
    assert "minimal" in PLUGINS


def test_declares_its_identity(plugin):
    assert plugin.name and plugin.name == plugin.name.lower()
    assert plugin.task in ("segmentation", "localization", "detection")
    assert isinstance(plugin.metric, str) and plugin.metric
    names = [s.name for s in plugin.settings]
    assert len(names) == len(set(names))
    for setting in plugin.settings:
        assert setting.help
        if setting.choices is not None:
            assert setting.default in setting.choices


def test_train_step_and_round_trip(plugin):
    torch.manual_seed(0)
    settings = default_settings(plugin)
    model = plugin.build_model(num_classes=2, settings=settings)
    assert isinstance(model, torch.nn.Module)
    samples = _samples(plugin, 48, 64)
    items = []
    for sample in samples:
        with contextlib.suppress(SkipImage):
            items.append(plugin.prepare(sample, settings=settings))
    assert items, "the plugin skipped every one of the simple labelled images"

    rng = np.random.default_rng(0)
    examples = [plugin.example(item, augment=True, rng=rng, settings=settings) for item in items]
    examples += [plugin.example(items[0], augment=False, rng=rng, settings=settings)]
    batch_np = stack_examples(plugin, examples)
    assert "image" in batch_np
    batch = {k: torch.from_numpy(v) for k, v in batch_np.items()}

    model.train()
    losses = plugin.losses(model, batch, settings=settings)
    assert isinstance(losses, dict) and losses
    total = 0
    for name, value in losses.items():
        assert isinstance(name, str)
        assert isinstance(value, torch.Tensor) and value.numel() == 1
        assert math.isfinite(float(value.detach()))
        total = total + value
    model.zero_grad()
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)

    # inference on an odd-sized image
    model.eval()
    h, w = 37, 53
    odd = _samples(plugin, h, w, count=2)
    predictions = []
    for sample in odd:
        x = plugin.inputs(sample.image, settings=settings)
        assert isinstance(x, torch.Tensor) and x.shape[0] == 1
        with torch.no_grad():
            outputs = model(x)
        prediction = plugin.proposals(outputs, image_shape=(h, w), classes=CLASSES, settings=settings)
        assert isinstance(prediction, Prediction)
        assert 0.0 <= prediction.uncertainty <= 1.0
        for p in prediction.proposals:
            assert p.category_id in {c.id for c in CLASSES}
            assert 0.0 <= p.score <= 1.0
            if p.kind is Kind.BOX:
                x0, y0, bw, bh = p.box_xywh
                assert x0 >= -0.5 and y0 >= -0.5 and bw >= 0 and bh >= 0
                assert x0 + bw <= w + 0.5 and y0 + bh <= h + 0.5
            elif p.kind is Kind.MASK:
                assert decode_rle(p.rle).shape == (h, w)
        if plugin.task == "localization":
            assert len(prediction.proposals) == 1
        check_prediction(plugin, prediction, image_shape=(h, w), classes=CLASSES)
        predictions.append(prediction)

    metrics = plugin.evaluate(predictions, odd, settings=settings)
    assert plugin.metric in metrics
    assert all(math.isfinite(float(v)) for v in metrics.values())
