"""A tiny training run of the segmenter on generated shapes: the loss falls and it learns them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from labeler.core.annotation import Annotation, Category, Kind  # noqa: E402
from labeler.core.geometry import encode_mask  # noqa: E402
from labeler.learning.api import LabelledImage, resolve_settings  # noqa: E402
from labeler.learning.loop import fit, stack_examples  # noqa: E402
from labeler.learning.predict import predict_image  # noqa: E402
from labeler_segmenter import SegmenterPlugin  # noqa: E402

EPOCHS = 30
CLASSES = (Category(1, "square", (255, 0, 0)), Category(2, "disc", (0, 0, 255)))


def _shapes(seed: int, n: int, size: int = 40) -> list[LabelledImage]:
    """Dark noisy images with a bright square (polygon label) and a mid-grey disc (mask label)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        x, y = (int(v) for v in rng.integers(2, size - 16, 2))
        s = int(rng.integers(8, 14))
        image[y : y + s, x : x + s] = 230
        yy, xx = np.mgrid[:size, :size]
        cx, cy = (int(v) for v in rng.integers(8, size - 8, 2))
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 36
        disc[y : y + s, x : x + s] = False
        image[disc] = 140
        anns = (
            Annotation(
                image_id=i,
                category_id=1,
                kind=Kind.POLYGON,
                polygons=(np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], dtype=float),),
            ),
            Annotation(image_id=i, category_id=2, kind=Kind.MASK, rle=encode_mask(disc)),
        )
        out.append(LabelledImage(image_id=i, image=image, annotations=anns, classes=CLASSES))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("unpool", ["max", "transposed"])
def test_tiny_training_lowers_the_loss_and_learns_the_shapes(unpool: str) -> None:
    torch.manual_seed(0)
    plugin = SegmenterPlugin()
    settings = resolve_settings(
        plugin,
        {
            "widths": "8,16,16",
            "convs": "1",
            "middle_dilations": "1,2",
            "crop": "32",
            "batch_size": "8",
            "lr": "0.01",
            "unpool": unpool,
            "rotate": "0",
            "min_region": "4",
        },
    )
    train, held = _shapes(0, 12), _shapes(1, 4)
    items = [plugin.prepare(s, settings=settings) for s in train]
    model = plugin.build_model(num_classes=len(CLASSES), settings=settings)
    rng = np.random.default_rng(0)
    batch_np = stack_examples(plugin, [plugin.example(it, augment=False, rng=rng, settings=settings) for it in items])
    batch = {k: torch.from_numpy(v) for k, v in batch_np.items()}

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(sum(plugin.losses(model, batch, settings=settings).values()))

    before = loss()
    result = fit(plugin, model, items, settings=settings, epochs=EPOCHS, prefetch=0)
    after = loss()
    assert after < 0.5 * before, (before, after)

    model = result.model.eval()
    predictions = [predict_image(plugin, model, s.image, classes=CLASSES, settings=settings) for s in held]
    metrics = plugin.evaluate(predictions, held, settings=settings)
    # all-background scores about 0.3 here; a net that learned the shapes scores well above
    assert metrics["mean_iou"] > 0.5, metrics
    assert {p.category_id for pred in predictions for p in pred.proposals} == {1, 2}
