"""From per-pixel class probabilities to proposals, and the metrics (numpy + OpenCV, no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from labeler.core.annotation import Category, Kind
from labeler.core.geometry import encode_regions, grow_into_gaps
from labeler.learning.api import Prediction, Proposal
from labeler_segmenter.data import IGNORE

MAX_STRIP_ELEMENTS = 1 << 24
"""Above this many ``K * height * width`` values, :func:`upsampled_max` works in horizontal strips
of the output, so memory stays bounded on huge images."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the first axis of ``(K, h, w)`` logits, as float32, on the calling thread (numpy
    and OpenCV's vectorised ``exp``, a third faster than numpy's on CamVid's 12 x 240 x 180)."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)  # networks may hand channels-last strides
    out = logits - np.max(logits, axis=0, keepdims=True)
    flat = out.reshape(out.shape[0], -1)  # a 2-D view: OpenCV takes at most 512 channels
    cv2.exp(flat, dst=flat)
    out /= out.sum(axis=0, keepdims=True)
    probabilities: np.ndarray = out
    return probabilities


def upsampled_max(probabilities: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, labels)``: per-pixel max (float32) and argmax (uint8) over ``K`` of
    ``(K, h, w)`` probabilities resized bilinearly to ``height x width`` (pixel centres aligned,
    edges replicated: OpenCV's ``INTER_LINEAR``, as torch's ``align_corners=False``).

    One channel at a time, keeping a running maximum, so at most one resized channel exists at
    once besides the result; huge outputs are done in strips of rows.
    """
    k, h, w = probabilities.shape
    if k > 255:
        raise ValueError(f"at most 255 channels, got {k}")
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
    confidence = np.empty((height, width), dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.uint8)
    if (h, w) == (height, width):
        _running_max(probabilities, confidence, labels, resize=None)
        return confidence, labels
    if k * height * width <= MAX_STRIP_ELEMENTS:
        _running_max(probabilities, confidence, labels, resize=lambda p: cv2.resize(p, (width, height)))
        return confidence, labels
    # strips: each output row's source coordinate, as INTER_LINEAR computes it, sampled by remap
    xs = np.clip((np.arange(width, dtype=np.float32) + 0.5) * (w / width) - 0.5, 0, w - 1)
    rows = max(1, MAX_STRIP_ELEMENTS // (k * width))
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        ys = np.clip((np.arange(r0, r1, dtype=np.float32) + 0.5) * (h / height) - 0.5, 0, h - 1)
        map_x = np.broadcast_to(xs, (r1 - r0, width)).copy()
        map_y = np.broadcast_to(ys[:, None], (r1 - r0, width)).copy()
        _running_max(
            probabilities,
            confidence[r0:r1],
            labels[r0:r1],
            resize=lambda p, map_x=map_x, map_y=map_y: cv2.remap(
                p, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            ),
        )
    return confidence, labels


def _running_max(probabilities: np.ndarray, confidence: np.ndarray, labels: np.ndarray, *, resize: Any) -> None:
    """Fill ``confidence`` / ``labels`` (views are fine) with the max / argmax over channels of
    ``resize(channel)`` (or the channel itself when ``resize`` is ``None``); ties go to the lower
    channel, as ``argmax`` does."""
    for c in range(probabilities.shape[0]):
        channel = probabilities[c] if resize is None else resize(probabilities[c])
        if c == 0:
            confidence[...] = channel
            continue
        better = channel > confidence
        np.copyto(labels, np.uint8(c), where=better)
        np.maximum(confidence, channel, out=confidence)


def region_map(labels: np.ndarray, num_classes: int, *, background: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions (8-connectivity) of each foreground class of an ``(h, w)`` uint8 label map
    (0 = background, ``k`` = class ``k``, at most 255): ``(regions, region_class)`` where
    ``regions`` is an ``(h, w)`` int32 map of region ids (0 = background, ids from 1, class by
    class) and ``region_class[r]`` is the class of region ``r`` (``region_class[0] = 0``). With
    ``background=True`` the background's regions get ids too (then only id 0 means "none").

    Each class present is labelled within its bounding box with the ids of that class alone; one
    look-up table then shifts every class's ids past those of the classes before it (a quarter
    faster on CamVid than writing each class's ids through its mask).
    """
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    if num_classes > 255:
        raise ValueError(f"at most 255 classes, got {num_classes}")
    regions = np.zeros(labels.shape, dtype=np.int32)
    first = 0 if background else 1
    histogram = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel()
    present = np.flatnonzero(histogram[first : num_classes + 1]) + first
    counts = np.zeros(256, dtype=np.int32)  # regions per class
    for k in present.tolist():
        class_mask = (labels == k).view(np.uint8)
        x, y, w, h = cv2.boundingRect(class_mask)
        count, local = cv2.connectedComponents(class_mask[y : y + h, x : x + w], connectivity=8, ltype=cv2.CV_32S)
        counts[k] = count - 1
        crop = regions[y : y + h, x : x + w]
        np.add(crop, local, out=crop)  # local is 0 off the class, whose pixels are still 0 here
    if len(present) > 1:
        shift = np.zeros(256, dtype=np.int32)
        shift[1:] = np.cumsum(counts)[:-1]
        shift[counts == 0] = 0  # pixels of classes not labelled keep id 0
        np.add(regions, cv2.LUT(labels, shift.reshape(1, 256)), out=regions)
    region_class = np.concatenate([[0], np.repeat(np.arange(256), counts)]).astype(np.int64)
    return regions, region_class


def absorb_small_regions(labels: np.ndarray, num_classes: int, min_region: int) -> np.ndarray:
    """The label map with every connected region (8-connectivity, background included) under
    ``min_region`` pixels given to a neighbouring region: specks disappear and small holes are
    filled, so the proposals leave no unlabelled slivers. Where regions of several classes touch
    a speck, the highest class index wins. Returns ``labels`` itself when there is nothing to do."""
    if min_region <= 1 or labels.size < min_region:
        return labels
    regions, region_class = region_map(labels, num_classes, background=True)
    areas = np.bincount(regions.reshape(-1), minlength=len(region_class))
    small = areas < min_region
    small[0] = False
    if not small[1:].any():
        return labels
    # known pixels carry class + 1, those of small regions 0; grow the known ones into the gaps
    grown = (labels.astype(np.uint16) + 1).astype(np.uint8) if num_classes < 255 else None
    if grown is None:
        return labels
    grown[small[regions]] = 0
    grow_into_gaps(grown)
    out = grown - 1
    out[grown == 0] = labels[grown == 0]
    return out


def regions_to_proposals(
    labels: np.ndarray,
    confidence: np.ndarray,
    classes: Sequence[Category],
    *,
    min_region: int,
) -> list[Proposal]:
    """One mask proposal per connected region (8-connectivity) of each foreground class.

    ``labels`` is the ``(h, w)`` argmax map (0 = background, ``k`` = ``classes[k-1]``) and
    ``confidence`` the ``(h, w)`` probability of the chosen class. Regions smaller than
    ``min_region`` pixels are dropped. A proposal's score is the mean of ``confidence`` over its
    region, i.e. the mean probability of its class there. The image is walked a fixed number of
    times whatever the number of regions (areas and scores by ``bincount``, every region's RLE in
    one pass by :func:`labeler.core.geometry.encode_regions`).
    """
    regions, region_class = region_map(labels, len(classes))
    count = len(region_class) - 1
    if count == 0:
        return []
    flat = regions.reshape(-1)
    areas = np.bincount(flat, minlength=count + 1)
    sums = np.bincount(flat, weights=confidence.reshape(-1), minlength=count + 1)
    kept = np.flatnonzero(areas >= max(1, min_region))
    kept = kept[kept > 0]
    if kept.size < count:  # renumber the kept regions 1..n so the RLE pass skips the others
        renumber = np.zeros(count + 1, dtype=np.int32)
        renumber[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
        regions = renumber[regions]
    rles = encode_regions(regions, int(kept.size))
    return [
        Proposal(
            category_id=classes[int(region_class[r]) - 1].id,
            kind=Kind.MASK,
            score=min(1.0, max(0.0, float(sums[r] / areas[r]))),
            rle=rle,
        )
        for r, rle in zip(kept.tolist(), rles, strict=True)
        if rle is not None
    ]


def prediction_from_labels(
    labels: np.ndarray, confidence: np.ndarray, *, num_outputs: int, classes: Sequence[Category], min_region: int
) -> Prediction:
    """A :class:`Prediction` from the ``(h, w)`` argmax map and its ``(h, w)`` max probability
    at the image's own size, for a softmax over ``num_outputs`` channels.

    Regions under ``min_region`` pixels (of any class, background included) are first absorbed
    by a neighbour (:func:`absorb_small_regions`). ``uncertainty`` is the mean of
    ``1 - confidence`` divided by its largest possible value ``1 - 1/num_outputs`` (so in
    [0, 1]). ``extra["label_map"]`` keeps the dense uint8 map the proposals were made from;
    :func:`evaluate` scores it.
    """
    labels = absorb_small_regions(labels, num_outputs - 1, min_region)
    proposals = regions_to_proposals(labels, confidence, classes, min_region=min_region)
    doubt = 1.0 - float(confidence.mean()) if confidence.size else 0.0
    scaled = doubt / (1.0 - 1.0 / num_outputs) if num_outputs > 1 else 0.0
    return Prediction(
        proposals=tuple(proposals), uncertainty=float(min(1.0, max(0.0, scaled))), extra={"label_map": labels}
    )


def label_map_of(prediction: Prediction, shape: tuple[int, int], classes: Sequence[Category]) -> np.ndarray:
    """The ``(h, w)`` class-index map a prediction stands for: its dense ``label_map`` when it
    has one, else its mask proposals painted in score order (higher score wins)."""
    dense = prediction.extra.get("label_map") if prediction.extra else None
    if dense is not None:
        dense = np.asarray(dense)
        if dense.shape != shape:
            raise ValueError(f"label map is {dense.shape}, image is {shape}")
        return dense
    from labeler.core.geometry import decode_rle

    index = {c.id: k for k, c in enumerate(classes, start=1)}
    out = np.zeros(shape, dtype=np.uint8)
    for p in sorted(prediction.proposals, key=lambda p: p.score):
        if p.kind is Kind.MASK and p.rle is not None and p.category_id in index:
            out[decode_rle(p.rle)] = index[p.category_id]
    return out


def confusion(target: np.ndarray, predicted: np.ndarray, num_outputs: int) -> np.ndarray:
    """``(K, K)`` int64 matrix, rows = true class, columns = predicted; ignored pixels skipped."""
    valid = target != IGNORE
    t = target[valid].astype(np.int64)
    p = np.minimum(predicted[valid].astype(np.int64), num_outputs - 1)
    return np.bincount(t * num_outputs + p, minlength=num_outputs * num_outputs).reshape(num_outputs, num_outputs)


def scores_from_confusion(matrix: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """``mean_iou``, ``pixel_accuracy`` and ``iou/<name>`` from a confusion matrix.

    IoU of class k = TP / (TP + FP + FN) over all pixels of all images together (not a mean of
    per-image IoUs). ``mean_iou`` averages over the classes that occur in the targets or the
    predictions, background (index 0) included: with a background that is a real class (the
    membrane set's cells) it counts; where every pixel has a foreground class or is ignored
    (CamVid) background only counts if the model wrongly predicts it. Classes that occur nowhere
    are left out (no ``iou/<name>`` either).
    """
    tp = np.diag(matrix).astype(np.float64)
    truth = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    union = truth + predicted - tp
    out: dict[str, float] = {}
    ious = []
    for k, name in enumerate(names):
        if union[k] > 0:
            iou = float(tp[k] / union[k])
            out[f"iou/{name}"] = iou
            ious.append(iou)
    total = float(matrix.sum())
    out["mean_iou"] = float(np.mean(ious)) if ious else 0.0
    out["pixel_accuracy"] = float(tp.sum() / total) if total > 0 else 0.0
    return out
