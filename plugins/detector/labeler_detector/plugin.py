"""The detector plugin: every object of an image, with its class and its box.

Training data: every done image trains the detector, whatever the number of its accepted labels
(none makes it an image of background). A box counts as itself; a polygon or mask counts as its
tight bounding box (setting ``shapes_as_boxes``, on by default). An image is skipped
(:class:`SkipImage`, counted and reported) when a label is of a class the model does not know,
when a label's box is empty (under one pixel inside the image), or when it holds polygons or
masks while ``shapes_as_boxes`` is off (training would call those objects background).

Geometry: the network sees the image scaled, at its own aspect ratio, so that its long side is
``input_size`` pixels (``0``: the image's own size), both sides rounded to multiples of 32; see
:mod:`labeler_detector.grid` for the grid, the anchors and the box encoding. Training examples
are ``train_size`` squared views of that scaled image, zoomed by ``zoom_min`` to ``zoom_max``,
flipped and colour-jittered, the boxes moving with the pixels (:mod:`labeler_detector.views`).

Losses: ``"class"`` is the cross-entropy over the classes plus "no object" at every cell and
anchor (ignored ones left out), summed and divided by the number of object targets, times
``class_weight``; ``"box"`` is ``box_weight`` times the mean squared error of the encoded
``(tx, ty, tw, th)`` at the object targets. The runner sums them.

Proposals: at each cell and anchor the most probable class other than "no object", its
probability as the score; those of at least ``min_score`` go through OpenCV's non-maximum
suppression (``cv2.dnn.NMSBoxes``, IoU ``nms_iou``, across classes so that each object gets one
proposal; ``cv2.dnn.NMSBoxesBatched`` per class with ``nms_per_class``), at most
``max_proposals``, in pixels of the original image. Uncertainty: the mean over the kept
proposals of ``1 - |2 p - 1|`` (1 for a proposal at 50 %, 0 for one at 0 or 100 %); with none
kept, ``2 p`` of the most probable object anywhere (near 0: nothing there).

Metrics (``evaluate``, pycocotools' ``COCOeval``): ``map50`` (the ranking metric) and ``map``
(IoU 0.50:0.95), over the classes and per class (``map50/NAME``, ``map/NAME``); ``images`` and
``objects`` scored. Images the detector would skip are left out.

torch is imported only when a method needs it (as in the segmenter), so discovering the plugin
stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from labeler.core.annotation import Annotation, Category, Kind, State
from labeler.core.geometry import annotation_box, as_box
from labeler.learning.api import LabelledImage, Prediction, Proposal, Setting, SkipImage, as_rgb
from labeler_detector.cocomap import Box, coco_map
from labeler_detector.grid import STRIDES, build_targets, decode_boxes, input_scale, input_shape, parse_anchors
from labeler_detector.views import (
    Augment,
    clip_boxes,
    mean_colour,
    random_view,
    resize,
    scale_boxes,
    to_input,
)

if TYPE_CHECKING:
    import torch


class DetectorPlugin:
    """Implements :class:`labeler.learning.api.Plugin` for many objects per image."""

    name = "detector"
    task = "detection"
    metric = "map50"
    settings: tuple[Setting, ...] = (
        Setting(
            "input_size", 320, "long side in pixels the image is scaled to (aspect kept; 0 = the image's own size)"
        ),
        Setting("train_size", 256, "side of the square training views (multiple of 32)"),
        Setting("width", 16, "channels of the first backbone stage (later stages 2x, 4x, 6x, 8x)"),
        Setting(
            "stride",
            8,
            "grid cell in input pixels: 8 (the 1/8 stage joined with the deeper ones) or 16",
            choices=STRIDES,
            legacy=16,
        ),
        Setting(
            "anchors",
            "3,8,20",
            "anchor sizes per cell, in grid cells of `stride` input pixels (comma-separated)",
            legacy="1.5,4,10",
        ),
        Setting("center_radius", 1.0, "cells within this many cells of an object's centre (and inside it) learn it"),
        Setting("class_weight", 1.0, "weight of the class cross-entropy term in the summed loss"),
        Setting("box_weight", 2.0, "weight of the box mean-squared-error term in the summed loss"),
        Setting("lr", 3e-3, "peak learning rate (AdamW)"),
        Setting("batch_size", 16, "training views per optimiser step"),
        Setting("weight_decay", 5e-4, "AdamW weight decay"),
        Setting("grad_clip", 10.0, "largest gradient norm per step"),
        Setting("augment", True, "random zoom/crop/flip/colour augmentation while training"),
        Setting("zoom_min", 0.7, "smallest random zoom of a training view (below 1 shows more of the image)"),
        Setting("zoom_max", 1.4, "largest random zoom of a training view"),
        Setting("vflip", False, "also flip training views upside down (for views with no up, such as slides)"),
        Setting("min_score", 0.1, "proposals below this score are dropped before NMS"),
        Setting("nms_iou", 0.5, "non-maximum suppression: boxes overlapping a better one more than this go"),
        Setting(
            "nms_per_class", False, "suppress within each class only (an object may then get boxes of two classes)"
        ),
        Setting(
            "vote_iou",
            0.6,
            "box voting: each kept box becomes the score-weighted mean of the candidates overlapping it "
            "at least this much (0 = off)",
            legacy=0.0,
        ),
        Setting("max_proposals", 100, "most proposals per image"),
        Setting("shapes_as_boxes", True, "a polygon or mask label trains as its bounding box"),
    )

    # -- model -----------------------------------------------------------------------------

    def build_model(self, *, num_classes: int, settings: Mapping[str, Any]) -> torch.nn.Module:
        from labeler_detector.network import Detector

        cfg = self._cfg(settings)
        return Detector(
            num_classes=num_classes, anchors=len(cfg["anchors"]), width=int(cfg["width"]), stride=int(cfg["stride"])
        )

    # -- training data ---------------------------------------------------------------------

    def prepare(self, sample: LabelledImage, *, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Cache of one training image: ``"image"`` scaled to ``zoom_max`` times the inference
        scale (no larger than the original), ``"scale"`` the inference scale relative to it,
        ``"fill"`` its mean colour, ``"boxes"`` ``(N, 4)`` its pixel boxes, ``"labels"`` ``(N,)`` class targets (1 + index)."""
        cfg = self._cfg(settings)
        image = as_rgb(sample.image)
        h, w = image.shape[:2]
        boxes, labels = object_boxes(sample, shapes_as_boxes=bool(cfg["shapes_as_boxes"]))
        scale = input_scale(h, w, int(cfg["input_size"]))
        cache = min(1.0, scale * float(cfg["zoom_max"]))
        ch, cw = max(1, round(h * cache)), max(1, round(w * cache))
        cached = resize(image, ch, cw)
        return {
            "image": cached,
            "fill": mean_colour(cached),
            "scale": scale * h / ch,
            "boxes": scale_boxes(boxes, cw / w, ch / h),
            "labels": labels,
        }

    def example(
        self, item: Any, *, augment: bool, rng: np.random.Generator, settings: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """``"image"`` ``(3, S, S)`` float32 input (``S = train_size``), ``"target_class"``
        ``(A, S/16, S/16)`` int64 and ``"target_box"`` ``(A, 4, S/16, S/16)`` float32."""
        cfg = self._cfg(settings)
        size = int(cfg["train_size"])
        if augment and cfg["augment"]:
            aug = Augment(zoom=(float(cfg["zoom_min"]), float(cfg["zoom_max"])), vflip=bool(cfg["vflip"]))
        else:  # the view at the inference scale, top-left, no flips or colour change
            aug = Augment(
                zoom=(1.0, 1.0),
                hflip=False,
                vflip=False,
                brightness=0.0,
                contrast=0.0,
                saturation=0.0,
                hue_gain=0.0,
                grayscale_p=0.0,
            )
            rng = np.random.default_rng(0)
        view, boxes, labels, ignore = random_view(
            item["image"],
            item["boxes"],
            item["labels"],
            scale=item["scale"],
            size=size,
            rng=rng,
            aug=aug,
            fill=item["fill"],
        )
        stride = int(cfg["stride"])
        g = size // stride
        cls, box = build_targets(
            boxes / stride,
            labels,
            grid=(g, g),
            anchors=cfg["anchors"],
            center_radius=float(cfg["center_radius"]),
            ignore_boxes=ignore / stride,
        )
        return {"image": to_input(view), "target_class": cls, "target_box": box}

    def losses(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, settings: Mapping[str, Any]
    ) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        cfg = self._cfg(settings)
        out = model(batch["image"])
        logits, pred_box = out["logits"], out["box"]  # (B, A, K, h, w), (B, A, 4, h, w)
        target_class = batch["target_class"].long()  # (B, A, h, w)
        positive = target_class > 0
        count = positive.sum().clamp_min(1).to(logits.dtype)
        ce = F.cross_entropy(logits.transpose(1, 2), target_class, ignore_index=-1, reduction="sum")
        pred = pred_box.permute(0, 1, 3, 4, 2)[positive]
        target = batch["target_box"].float().permute(0, 1, 3, 4, 2)[positive]
        box_loss = F.mse_loss(pred, target) if pred.numel() else pred_box.sum() * 0.0
        return {"class": float(cfg["class_weight"]) * ce / count, "box": float(cfg["box_weight"]) * box_loss}

    # -- inference -------------------------------------------------------------------------

    def decode_side(self, *, settings: Mapping[str, Any]) -> int | None:
        """Auto-labelling may decode a JPEG at 1/2, 1/4 or 1/8 size while both sides keep three
        quarters of ``input_size``: a 4:3 or wider image keeps its long side at ``input_size`` or
        more; a squarer one may be decoded up to a third below it (and scaled up again)."""
        size = int(self._cfg(settings)["input_size"])
        return None if size <= 0 else max(1, (3 * size + 3) // 4)

    def inputs(self, image: np.ndarray, *, settings: Mapping[str, Any]) -> torch.Tensor:
        import torch

        image = as_rgb(image)
        h, w = input_shape(image.shape[0], image.shape[1], int(self._cfg(settings)["input_size"]))
        return torch.from_numpy(to_input(resize(image, h, w)))[None]

    def proposals(
        self, outputs: Any, *, image_shape: tuple[int, int], classes: Sequence[Category], settings: Mapping[str, Any]
    ) -> Prediction:
        """See the module docstring. Boxes are mapped from grid cells to the ``(h, w)`` image by
        the grid's extent (the input covers the whole image), then clipped to it."""
        cfg = self._cfg(settings)
        anchors = cfg["anchors"]
        logits = _first(outputs["logits"]).float()
        encoded = _first(outputs["box"]).float().numpy()
        na, k, gh, gw = logits.shape
        if na != len(anchors) or k != len(classes) + 1 or encoded.shape != (na, 4, gh, gw):
            raise ValueError(
                f"expected ({len(anchors)}, {len(classes) + 1}, h, w) logits and ({len(anchors)}, 4, h, w) "
                f"boxes, got {tuple(logits.shape)} and {encoded.shape}"
            )
        probs = logits.softmax(dim=1).numpy()
        if not (np.isfinite(probs).all() and np.isfinite(encoded).all()):
            raise ValueError("the network produced non-finite outputs")
        fg = probs[:, 1:]  # (A, C, gh, gw)
        best = fg.argmax(axis=1)
        score = np.take_along_axis(fg, best[:, None], axis=1)[:, 0]
        h, w = image_shape
        chosen = np.nonzero(score >= float(cfg["min_score"]))
        cells = decode_boxes(encoded, anchors)[chosen]  # (N, 4) in cells
        boxes = clip_boxes(scale_boxes(cells, w / gw, h / gh), w, h)
        scores, labels = score[chosen], best[chosen]
        ok = (boxes[:, 2] >= 1.0) & (boxes[:, 3] >= 1.0)
        boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
        keep = nms(
            boxes,
            scores,
            labels,
            iou=float(cfg["nms_iou"]),
            per_class=bool(cfg["nms_per_class"]),
            top_k=int(cfg["max_proposals"]),
        )
        if float(cfg["vote_iou"]) > 0 and len(keep):
            boxes = boxes.copy()
            boxes[keep] = vote_boxes(boxes[keep], boxes, scores, iou=float(cfg["vote_iou"]))
        proposals = tuple(
            Proposal(
                category_id=classes[int(labels[i])].id,
                kind=Kind.BOX,
                score=float(np.clip(scores[i], 0.0, 1.0)),
                box_xywh=as_box(boxes[i]),
            )
            for i in keep
        )
        kept = scores[keep] if len(keep) else np.zeros(0)
        if len(kept):
            uncertainty = float(np.mean(1.0 - np.abs(2.0 * kept - 1.0)))
        else:
            uncertainty = float(2.0 * min(0.5, float(score.max())))
        return Prediction(
            proposals=proposals, uncertainty=float(np.clip(uncertainty, 0.0, 1.0)), extra={"candidates": len(scores)}
        )

    def evaluate(
        self, predictions: Sequence[Prediction], samples: Sequence[LabelledImage], *, settings: Mapping[str, Any]
    ) -> dict[str, float]:
        """See the module docstring."""
        if len(predictions) != len(samples):
            raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples")
        cfg = self._cfg(settings)
        truth: list[Box] = []
        found: list[Box] = []
        image_ids: list[int] = []
        classes: dict[int, str] = {}
        for n, (prediction, sample) in enumerate(zip(predictions, samples, strict=True)):
            classes.update({c.id: c.name for c in sample.classes})
            try:
                boxes, labels = object_boxes(sample, shapes_as_boxes=bool(cfg["shapes_as_boxes"]))
            except SkipImage:
                continue
            image_ids.append(n)
            truth += [
                Box(n, sample.classes[int(label) - 1].id, as_box(b)) for b, label in zip(boxes, labels, strict=True)
            ]
            found += [
                Box(n, p.category_id, p.box_xywh, float(p.score))
                for p in prediction.proposals
                if p.box_xywh is not None
            ]
        metrics = coco_map(
            truth,
            found,
            image_ids=image_ids,
            categories=sorted(classes.items()),
            max_detections=int(cfg["max_proposals"]),
        )
        return {**metrics, "images": float(len(image_ids)), "objects": float(len(truth))}

    # -- helpers ---------------------------------------------------------------------------

    def _cfg(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        cfg = {s.name: s.default for s in self.settings}
        cfg.update(settings)
        cfg["anchors"] = parse_anchors(cfg["anchors"])
        if int(cfg["train_size"]) % 32 or int(cfg["train_size"]) < 64:
            raise ValueError(f"train_size must be a multiple of 32 and at least 64, got {cfg['train_size']}")
        if int(cfg["input_size"]) < 0:
            raise ValueError(f"input_size must be 0 (the image's size) or positive, got {cfg['input_size']}")
        if not 0.0 < float(cfg["zoom_min"]) <= float(cfg["zoom_max"]):
            raise ValueError(f"need 0 < zoom_min <= zoom_max, got {cfg['zoom_min']} and {cfg['zoom_max']}")
        if float(cfg["box_weight"]) < 0 or float(cfg["class_weight"]) < 0:
            raise ValueError("class_weight and box_weight must not be negative")
        if not 0.0 <= float(cfg["min_score"]) < 1.0 or not 0.0 < float(cfg["nms_iou"]) <= 1.0:
            raise ValueError("need 0 <= min_score < 1 and 0 < nms_iou <= 1")
        if int(cfg["max_proposals"]) < 1:
            raise ValueError(f"max_proposals must be at least 1, got {cfg['max_proposals']}")
        return cfg


def nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, iou: float, per_class: bool, top_k: int
) -> list[int]:
    """Indices of the boxes (pixel ``(x, y, w, h)``) that OpenCV's non-maximum suppression keeps,
    best score first, at most ``top_k``."""
    if len(boxes) == 0:
        return []
    rects = [tuple(float(v) for v in b) for b in boxes]
    conf = [float(s) for s in scores]
    if per_class:
        kept = cv2.dnn.NMSBoxesBatched(rects, conf, [int(c) for c in labels], 0.0, iou, top_k=top_k)
    else:
        kept = cv2.dnn.NMSBoxes(rects, conf, 0.0, iou, top_k=top_k)
    order = sorted((int(i) for i in np.asarray(kept).reshape(-1)), key=lambda i: -conf[i])
    return order[:top_k]


def vote_boxes(kept: np.ndarray, candidates: np.ndarray, scores: np.ndarray, *, iou: float) -> np.ndarray:
    """Box voting: each of the ``kept`` boxes ``(K, 4)`` replaced by the mean of the ``candidates``
    ``(N, 4)`` (pixel ``(x, y, w, h)``, the kept ones among them) whose IoU with it is at least
    ``iou``, weighted by their ``scores``; the corners are averaged. A kept box with no such
    candidate (only when it is not among them) stays as it is."""
    kept = np.asarray(kept, dtype=np.float64).reshape(-1, 4)
    cand = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
    k0, k1 = kept[:, None, :2], kept[:, None, :2] + kept[:, None, 2:]
    c0, c1 = cand[None, :, :2], cand[None, :, :2] + cand[None, :, 2:]
    inter = np.clip(np.minimum(k1, c1) - np.maximum(k0, c0), 0.0, None).prod(axis=2)
    union = kept[:, None, 2:].prod(axis=2) + cand[None, :, 2:].prod(axis=2) - inter
    overlap = inter / np.maximum(union, 1e-9)
    weight = np.where(overlap >= iou, np.asarray(scores, dtype=np.float64)[None, :], 0.0)  # (K, N)
    total = weight.sum(axis=1, keepdims=True)
    corners = np.concatenate([cand[:, :2], cand[:, :2] + cand[:, 2:]], axis=1)  # (N, 4) x0 y0 x1 y1
    voted = (weight @ corners) / np.maximum(total, 1e-12)
    out = np.concatenate([voted[:, :2], voted[:, 2:] - voted[:, :2]], axis=1)
    return np.where(total > 0, out, kept).astype(np.float32)


def object_boxes(sample: LabelledImage, *, shapes_as_boxes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The accepted objects of a training image: ``(N, 4)`` pixel boxes clipped to the image and
    ``(N,)`` class targets (1 + index among ``sample.classes``); :class:`SkipImage` says why not."""
    h, w = sample.image.shape[:2]
    index = {c.id: i for i, c in enumerate(sample.classes)}
    accepted: list[Annotation] = [a for a in sample.annotations if a.state is State.ACCEPTED]
    if not shapes_as_boxes and any(a.kind is not Kind.BOX for a in accepted):
        raise SkipImage("polygon or mask labels while shapes_as_boxes is off")
    boxes, labels = [], []
    for ann in accepted:
        if ann.category_id not in index:
            raise SkipImage(f"label of category {ann.category_id}, which is not among the model's classes")
        boxes.append(annotation_box(ann))
        labels.append(index[ann.category_id] + 1)
    clipped = clip_boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), w, h)
    if ((clipped[:, 2] < 1.0) | (clipped[:, 3] < 1.0)).any():
        raise SkipImage("a labelled box is empty (under one pixel wide or high inside the image)")
    return clipped, np.asarray(labels, dtype=np.int64)


def _first(t: Any) -> torch.Tensor:
    """The single image's slice of an output of a batch of one (what ``inputs`` makes)."""
    import torch

    tensor = torch.as_tensor(t).detach().cpu()
    if tensor.ndim < 1 or tensor.shape[0] != 1:
        raise ValueError(f"expected outputs for a batch of one image, got shape {tuple(tensor.shape)}")
    return tensor[0]
