"""The localizer plugin: classification plus localisation of the one main object of an image.

Training data: a done image with exactly one accepted label trains the localizer. A box counts
as itself; a polygon or mask counts as its tight bounding box (setting ``shapes_as_boxes``, on by
default: an outlined object is a boxed object too). Images with no such label, with several, with
a label of a class the model does not know, or with an empty box raise :class:`SkipImage`.

Geometry: the image is stretched (not letterboxed) to ``input_size`` x ``input_size``; boxes are
handled normalised to the image, ``(x, y, w, h)`` with a top-left origin, which stretching leaves
unchanged. Proposals come back in pixels of the original image, clipped to it.

Losses: ``"class"`` is the cross-entropy of the class logits; ``"box"`` is ``box_weight`` times
the mean squared error of the normalised ``(x, y, w, h)``. The runner sums them.

Metrics (``evaluate``): ``accuracy`` (predicted class is right), ``box_iou`` (mean IoU of the
proposed box with the labelled box, class ignored) and ``score``, the ranking metric: the mean
over images of the box IoU when the class is right and 0 when it is wrong (with one class it
equals ``box_iou``). ``images`` is how many labelled images were scored.

torch is imported only when a method needs it (as in the segmenter), so discovering the plugin
stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from labeler.core.annotation import Annotation, Category, Kind, State
from labeler.core.geometry import annotation_box, box_iou
from labeler.learning.api import LabelledImage, Prediction, Proposal, Setting, SkipImage, as_rgb
from labeler_localizer.boxes import Augment, denormalize_box, normalize_box, resize_square, to_input
from labeler_localizer.boxes import augment as random_view

if TYPE_CHECKING:
    import torch

CACHE_MARGIN = 1.25
"""Training images are cached at this multiple of ``input_size`` so zoomed-in crops stay sharp."""


class LocalizerPlugin:
    """Implements :class:`labeler.learning.api.Plugin` for one-object-per-image localisation."""

    name = "localizer"
    task = "localization"
    metric = "score"
    settings: tuple[Setting, ...] = (
        Setting(
            "box_head",
            "edges",
            "how the box is read off the features: edges (each side's position as a softmax over the "
            "1/8-resolution grid, read as its expectation) or dense (fully connected layers over the 1/16 map)",
            ("edges", "dense"),
            legacy="dense",
        ),
        Setting("input_size", 96, "side in pixels of the square the image is stretched to (multiple of 16)"),
        Setting("width", 16, "channels of the first backbone stage (later stages 2x, 4x, 6x)"),
        Setting("box_weight", 10.0, "weight of the box mean-squared-error term in the summed loss"),
        Setting("lr", 2e-3, "peak learning rate (AdamW)"),
        Setting("batch_size", 64, "training examples per optimiser step"),
        Setting("weight_decay", 5e-4, "AdamW weight decay"),
        Setting("dropout", 0.2, "dropout before the last layer of each head"),
        Setting("label_smoothing", 0.05, "label smoothing of the class cross-entropy"),
        Setting("augment", True, "random crop/scale/flip/colour augmentation while training"),
        Setting("crop_min", 0.6, "smallest random crop side, as a fraction of the image (zoom in)"),
        Setting("crop_max", 1.3, "largest random crop side, as a fraction of the image (above 1 zooms out)"),
        Setting("tta_flip", True, "at inference, average the image and its mirror image"),
        Setting("shapes_as_boxes", True, "a polygon or mask label trains as its bounding box"),
    )

    # -- model -----------------------------------------------------------------------------

    def build_model(self, *, num_classes: int, settings: Mapping[str, Any]) -> torch.nn.Module:
        from labeler_localizer.network import Localizer

        cfg = self._cfg(settings)
        return Localizer(
            num_classes=num_classes,
            input_size=int(cfg["input_size"]),
            width=int(cfg["width"]),
            dropout=float(cfg["dropout"]),
            tta_flip=bool(cfg["tta_flip"]),
            box_head=str(cfg["box_head"]),
        )

    # -- training data ---------------------------------------------------------------------

    def prepare(self, sample: LabelledImage, *, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Cache of one training image: ``"cache"`` the image stretched to ``CACHE_MARGIN *
        input_size`` (for augmentation), ``"view"`` stretched to ``input_size`` exactly as at
        inference, ``"box"`` the normalised box, ``"label"`` the class index."""
        cfg = self._cfg(settings)
        ann = target_annotation(sample.annotations, shapes_as_boxes=bool(cfg["shapes_as_boxes"]))
        label = class_index(sample.classes, ann.category_id)
        image = as_rgb(sample.image)
        h, w = image.shape[:2]
        box = normalize_box(annotation_box(ann), w, h)
        if box[2] * w < 1.0 or box[3] * h < 1.0:
            raise SkipImage("the labelled box is empty (under one pixel wide or high inside the image)")
        size = int(cfg["input_size"])
        return {
            "cache": resize_square(image, round(size * CACHE_MARGIN)),
            "view": resize_square(image, size),
            "box": box,
            "label": label,
        }

    def example(
        self, item: Any, *, augment: bool, rng: np.random.Generator, settings: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """``"image"`` ``(3, S, S)`` float32 input, ``"box"`` ``(4,)`` float32 normalised xywh,
        ``"label"`` int64 class index."""
        cfg = self._cfg(settings)
        size = int(cfg["input_size"])
        if augment and cfg["augment"]:
            strength = Augment(scale=(float(cfg["crop_min"]), float(cfg["crop_max"])))
            view, box = random_view(item["cache"], item["box"], size, rng, strength)
        else:
            view, box = item["view"], item["box"]
            if view.shape[0] != size:  # settings changed since prepare
                view = resize_square(item["cache"], size)
        return {
            "image": to_input(view),
            "box": np.asarray(box, dtype=np.float32),
            "label": np.asarray(item["label"], dtype=np.int64),
        }

    def losses(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, settings: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        cfg = self._cfg(settings)
        out = model(batch["image"])
        class_loss = F.cross_entropy(
            out["logits"], batch["label"].long(), label_smoothing=float(cfg["label_smoothing"])
        )
        box_loss = F.mse_loss(out["box"], batch["box"].float())
        return {"class": class_loss, "box": float(cfg["box_weight"]) * box_loss}

    # -- inference -------------------------------------------------------------------------

    def decode_side(self, *, settings: Mapping[str, Any]) -> int:
        """Every image is stretched to ``input_size`` squared, so auto-labelling may decode JPEGs
        at 1/2, 1/4 or 1/8 size as long as both sides keep ``input_size`` pixels."""
        return int(self._cfg(settings)["input_size"])

    def inputs(self, image: np.ndarray, *, settings: Mapping[str, Any]) -> torch.Tensor:
        import torch

        size = int(self._cfg(settings)["input_size"])
        return torch.from_numpy(to_input(resize_square(as_rgb(image), size)))[None]

    def proposals(
        self, outputs: Any, *, image_shape: tuple[int, int], classes: Sequence[Category], settings: Mapping[str, Any]
    ) -> Prediction:
        """One box proposal: the most probable class, its softmax probability as score, the box in
        pixels of the ``(h, w)`` image. Uncertainty is ``1 - p * a`` with ``p`` the top
        probability and ``a`` the IoU of the boxes seen on the image and its mirror (1 without
        test-time flipping): an unsure class or an unsteady box both rank the image higher."""
        import torch

        logits = _first(outputs["logits"]).double()
        box = _first(outputs["box"]).double().numpy()
        if logits.shape != (len(classes),) or box.shape != (4,):
            raise ValueError(
                f"expected {len(classes)} logits and 4 box values, got shapes {tuple(logits.shape)} and {box.shape}"
            )
        if not (torch.isfinite(logits).all() and np.isfinite(box).all()):
            raise ValueError("the network produced non-finite outputs")
        probs = logits.softmax(dim=0).numpy()
        k = int(probs.argmax())
        agreement = float(_first(outputs["agreement"]).item()) if "agreement" in outputs else 1.0
        h, w = image_shape
        score = float(np.clip(probs[k], 0.0, 1.0))
        proposal = Proposal(category_id=classes[k].id, kind=Kind.BOX, score=score, box_xywh=denormalize_box(box, w, h))
        return Prediction(
            proposals=(proposal,),
            uncertainty=float(np.clip(1.0 - score * agreement, 0.0, 1.0)),
            extra={"probabilities": probs.tolist(), "box_normalized": box.tolist(), "flip_agreement": agreement},
        )

    def evaluate(
        self, predictions: Sequence[Prediction], samples: Sequence[LabelledImage], *, settings: Mapping[str, Any]
    ) -> dict[str, float]:
        """See the module docstring. Samples the localizer cannot train on (no single label) are
        left out; a prediction without a proposal counts as wrong with IoU 0."""
        if len(predictions) != len(samples):
            raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
        cfg = self._cfg(settings)
        correct: list[float] = []
        ious: list[float] = []
        for prediction, sample in zip(predictions, samples, strict=True):
            try:
                truth = target_annotation(sample.annotations, shapes_as_boxes=bool(cfg["shapes_as_boxes"]))
            except SkipImage:
                continue
            h, w = sample.image.shape[:2]
            true_box = denormalize_box(normalize_box(annotation_box(truth), w, h), w, h)
            boxes = [p for p in prediction.proposals if p.box_xywh is not None]
            if not boxes:
                correct.append(0.0)
                ious.append(0.0)
                continue
            best = max(boxes, key=lambda p: p.score)
            assert best.box_xywh is not None
            correct.append(float(best.category_id == truth.category_id))
            ious.append(box_iou(best.box_xywh, true_box))
        n = len(ious)
        if n == 0:
            return {"score": 0.0, "accuracy": 0.0, "box_iou": 0.0, "images": 0.0}
        c, i = np.asarray(correct), np.asarray(ious)
        return {
            "score": float((c * i).mean()),
            "accuracy": float(c.mean()),
            "box_iou": float(i.mean()),
            "images": float(n),
        }

    # -- helpers ---------------------------------------------------------------------------

    def _cfg(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        cfg = {s.name: s.default for s in self.settings}
        cfg.update(settings)
        if not 0.0 < float(cfg["crop_min"]) <= float(cfg["crop_max"]):
            raise ValueError(f"need 0 < crop_min <= crop_max, got {cfg['crop_min']} and {cfg['crop_max']}")
        if float(cfg["box_weight"]) < 0:
            raise ValueError(f"box_weight must not be negative, got {cfg['box_weight']}")
        return cfg


def target_annotation(annotations: Sequence[Annotation], *, shapes_as_boxes: bool = True) -> Annotation:
    """The one accepted label a training image must have; :class:`SkipImage` says why not."""
    kinds = {Kind.BOX, Kind.POLYGON, Kind.MASK} if shapes_as_boxes else {Kind.BOX}
    usable = [a for a in annotations if a.state is State.ACCEPTED and a.kind in kinds]
    if not usable:
        what = "box, polygon or mask" if shapes_as_boxes else "box"
        raise SkipImage(f"no accepted {what} label")
    if len(usable) > 1:
        raise SkipImage(f"{len(usable)} accepted labels; the localizer trains on images with exactly one")
    return usable[0]


def class_index(classes: Sequence[Category], category_id: int) -> int:
    """Output index of ``category_id`` among the model's ``classes``; SkipImage if absent."""
    for i, c in enumerate(classes):
        if c.id == category_id:
            return i
    raise SkipImage(f"label of category {category_id}, which is not among the model's classes")


def _first(t: Any) -> torch.Tensor:
    """The single image's slice of an output of a batch of one (what ``inputs`` makes)."""
    import torch

    tensor = torch.as_tensor(t).detach().cpu()
    if tensor.ndim < 1 or tensor.shape[0] != 1:
        raise ValueError(f"expected outputs for a batch of one image, got shape {tuple(tensor.shape)}")
    return tensor[0]
