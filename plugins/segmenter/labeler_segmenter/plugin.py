"""The segmenter plugin: semantic segmentation with a per-pixel softmax over background + classes.

Output channel 0 is background, channel ``k`` is ``classes[k - 1]`` (the runner's class order).
Training targets come from every accepted annotation of a done image (masks, polygons and boxes
are all rasterised); uncovered pixels are background, ``ignore_mask`` pixels are ignored.
Images are resized by the *working scale* (``scale``, capped so the longer side is at most
``max_side``) for training and inference alike; predictions are brought back to the image's own
size. torch is imported only when a method needs it, so discovering the plugin stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.core.annotation import Category
from labeler.learning.api import LabelledImage, Prediction, Setting, SkipImage
from labeler_segmenter import data as D
from labeler_segmenter import postprocess as P

if TYPE_CHECKING:
    import torch

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "arch",
        "encoder-decoder",
        "network: 'naive' (same-resolution convolutions) or 'encoder-decoder'",
        ("naive", "encoder-decoder"),
    ),
    Setting(
        "unpool",
        "max",
        "encoder-decoder upsampling: nearest (2x2 copies), max (back to the pooling's "
        "maxima, zeros elsewhere) or transposed (learned 3x3 stride-2 transposed conv)",
        ("nearest", "max", "transposed"),
    ),
    Setting(
        "skips",
        "none",
        "encoder-decoder skip connections: none (everything through the 1/4-resolution "
        "bottleneck) or concat (U-Net: each decoder block also sees the encoder's features at its resolution)",
        ("none", "concat"),
        legacy="none",
    ),
    Setting("widths", "16,32,64", "channels at full, 1/2 and 1/4 resolution (naive uses the first)"),
    Setting("convs", 2, "conv-BN-ReLU layers per full/half-resolution block (naive: this times 3)"),
    Setting(
        "middle_dilations",
        "1,2,4,8",
        "dilations of the 1/4-resolution block's convs (one conv each); naive: dilations cycled over its layers",
    ),
    Setting(
        "precision",
        "auto",
        "convolution arithmetic: bf16 (bfloat16 compute, float32 weights; about "
        "twice as fast on CPUs with AVX512-BF16/AMX), fp32, or auto (bf16 where the processor has it)",
        ("auto", "bf16", "fp32"),
    ),
    Setting(
        "test_flips",
        "auto",
        "at inference, average the image with its mirror images: none, h "
        "(left-right), hv (also up-down), or auto (the mirror images it was trained with, see flips); "
        "each view costs one more forward pass",
        ("auto", "none", "h", "hv"),
    ),
    Setting("scale", 1.0, "resize factor applied to images before the network (training and inference)"),
    Setting(
        "max_side",
        1024,
        "cap in pixels on the longer side after resizing; bigger images are "
        "processed smaller and predictions upsampled",
    ),
    Setting("crop", 160, "side in pixels of the square training crops (after resizing)"),
    Setting("batch_size", 8, "training crops per optimiser step"),
    Setting("lr", 3e-3, "peak AdamW learning rate (warm-up then cosine over the run)"),
    Setting("weight_decay", 1e-4, "AdamW weight decay"),
    Setting(
        "flips", "h", "random mirror images in training: none, h (left-right) or hv (also up-down)", ("none", "h", "hv")
    ),
    Setting("scale_jitter", 0.2, "random zoom in training: 0.2 means a factor in [1/1.2, 1.2]"),
    Setting("rotate", 10.0, "largest random rotation in training, degrees"),
    Setting("color", 0.15, "largest random relative change of brightness and contrast in training"),
    Setting(
        "class_weighting",
        "sqrt",
        "cross-entropy weights from each batch's class frequencies f: none, sqrt (1/sqrt f) or inverse (1/f)",
        ("none", "sqrt", "inverse"),
    ),
    Setting(
        "dice_weight",
        0.5,
        "weight of the soft Dice loss (mean over classes present) added to the cross-entropy; 0 turns it off",
    ),
    Setting("min_region", 16, "connected regions smaller than this many pixels are not proposed"),
)


def _setting(settings: Mapping[str, Any], name: str) -> Any:
    if name in settings:
        return settings[name]
    for s in SETTINGS:
        if s.name == name:
            return s.default
    raise KeyError(name)


def _ints(text: Any, name: str) -> tuple[int, ...]:
    """``"16,32,64"`` (or a sequence) as positive ints; a clear error otherwise."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(int(str(p).strip()) for p in parts if str(p).strip())
    except ValueError:
        raise ValueError(f"{name} takes comma-separated whole numbers, not {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name} takes comma-separated positive numbers, not {text!r}")
    return values


def _factor(height: int, width: int, settings: Mapping[str, Any]) -> float:
    return D.working_scale(
        height, width, scale=float(_setting(settings, "scale")), max_side=int(_setting(settings, "max_side"))
    )


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        raise ValueError(f"the segmenter takes (h, w, 3) uint8 RGB images, got {shape} {getattr(image, 'dtype', '')}")


class SegmenterPlugin:
    """Semantic segmentation: ``naive`` or ``encoder-decoder`` CNN, mask proposals per region."""

    name = "segmenter"
    task = "segmentation"
    metric = "mean_iou"
    settings = SETTINGS

    # ----- network -----
    def build_model(self, *, num_classes: int, settings: Mapping[str, Any]) -> torch.nn.Module:
        """The network, with ``num_classes + 1`` output channels (background first)."""
        from labeler_segmenter.network import EncoderDecoder, Naive

        if num_classes < 1:
            raise ValueError("the segmenter needs at least one class")
        for setting in SETTINGS:
            if setting.choices is not None and _setting(settings, setting.name) not in setting.choices:
                raise ValueError(
                    f"{setting.name} must be one of {', '.join(map(str, setting.choices))}, "
                    f"not {_setting(settings, setting.name)!r}"
                )
        widths = _ints(_setting(settings, "widths"), "widths")
        convs = int(_setting(settings, "convs"))
        if convs < 1:
            raise ValueError("convs must be at least 1")
        dilations = _ints(_setting(settings, "middle_dilations"), "middle_dilations")
        test_flips = str(_setting(settings, "test_flips"))
        if test_flips == "auto":
            test_flips = str(_setting(settings, "flips"))
        if _setting(settings, "arch") == "naive":
            return Naive(
                num_outputs=num_classes + 1,
                width=widths[0],
                depth=3 * convs,
                dilations=dilations,
                precision=str(_setting(settings, "precision")),
                test_flips=test_flips,
            )
        if len(widths) != 3:
            raise ValueError(f"widths takes three numbers for the encoder-decoder, got {len(widths)}")
        return EncoderDecoder(
            num_outputs=num_classes + 1,
            widths=widths,
            convs=convs,
            middle_dilations=dilations,
            unpool=str(_setting(settings, "unpool")),
            precision=str(_setting(settings, "precision")),
            test_flips=test_flips,
            skips=str(_setting(settings, "skips")),
        )

    # ----- training data -----
    def prepare(self, sample: LabelledImage, *, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{"image": (h', w', 3) uint8, "target": (h', w') uint8}`` at the working scale."""
        image = sample.image
        try:
            _check_image(image)
            h, w = image.shape[:2]
            target = D.rasterise_target(sample.annotations, sample.classes, h, w, sample.ignore_mask)
        except ValueError as exc:
            raise SkipImage(str(exc)) from exc
        if not (target != D.IGNORE).any():
            raise SkipImage("every pixel is ignored")
        factor = _factor(h, w, settings)
        return {"image": D.resize_image(image, factor), "target": D.resize_target(target, factor)}

    def example(
        self, item: Any, *, augment: bool, rng: np.random.Generator, settings: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """``{"image": (3, crop, crop) float32, "target": (crop, crop) int64}`` (255 = ignore)."""
        flips = str(_setting(settings, "flips"))
        aug = D.Augment(
            scale_jitter=float(_setting(settings, "scale_jitter")),
            rotate=float(_setting(settings, "rotate")),
            color=float(_setting(settings, "color")),
            hflip="h" in flips,
            vflip="v" in flips,
        )
        image, target = D.crop_example(
            item["image"], item["target"], int(_setting(settings, "crop")), rng=rng if augment else None, augment=aug
        )
        return {"image": image, "target": target}

    def losses(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, settings: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        """``ce`` (class-weighted cross-entropy, ignore excluded) and, if ``dice_weight > 0``,
        ``dice`` (weighted ``1 - mean soft Dice`` over the classes present in the batch)."""
        from labeler_segmenter.losses import segmentation_losses

        logits = model(batch["image"])
        return segmentation_losses(
            logits,
            batch["target"],
            weighting=str(_setting(settings, "class_weighting")),
            dice_weight=float(_setting(settings, "dice_weight")),
        )

    # ----- inference -----
    def inputs(self, image: np.ndarray, *, settings: Mapping[str, Any]) -> torch.Tensor:
        """``(1, 3, h', w')`` float32 tensor at the working scale."""
        import torch

        _check_image(image)
        factor = _factor(image.shape[0], image.shape[1], settings)
        return torch.from_numpy(D.normalise(D.resize_image(image, factor)))[None]

    def proposals(
        self, outputs: Any, *, image_shape: tuple[int, int], classes: Sequence[Category], settings: Mapping[str, Any]
    ) -> Prediction:
        """Softmax of the ``(1, K, h', w')`` logits, upsampled to ``image_shape`` when the image
        was processed smaller; one mask proposal per connected region of each class."""
        import torch

        logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[0] != 1:
            raise ValueError(f"expected (1, K, h, w) logits, got {getattr(logits, 'shape', type(logits))}")
        if logits.shape[1] != len(classes) + 1:
            raise ValueError(f"the network gives {logits.shape[1]} channels for {len(classes)} classes + background")
        probs = P.softmax(logits[0].detach().float().cpu().numpy())
        h, w = (int(v) for v in image_shape)
        confidence, labels = P.upsampled_max(probs, h, w)
        return P.prediction_from_labels(
            labels,
            confidence,
            num_outputs=len(classes) + 1,
            classes=classes,
            min_region=int(_setting(settings, "min_region")),
        )

    def evaluate(
        self, predictions: Sequence[Prediction], samples: Sequence[LabelledImage], *, settings: Mapping[str, Any]
    ) -> dict[str, float]:
        """``mean_iou``, ``pixel_accuracy`` and ``iou/<class>`` over all pixels of all samples
        (see :func:`labeler_segmenter.postprocess.scores_from_confusion` for which classes count)."""
        if len(predictions) != len(samples):
            raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
        if not samples:
            return {"mean_iou": 0.0, "pixel_accuracy": 0.0}
        classes = samples[0].classes
        k = len(classes) + 1
        matrix = np.zeros((k, k), dtype=np.int64)
        for prediction, sample in zip(predictions, samples, strict=True):
            h, w = sample.image.shape[:2]
            target = D.rasterise_target(sample.annotations, sample.classes, h, w, sample.ignore_mask)
            predicted = P.label_map_of(prediction, (h, w), classes)
            matrix += P.confusion(target, predicted, k)
        return P.scores_from_confusion(matrix, ["background", *(c.name for c in classes)])
