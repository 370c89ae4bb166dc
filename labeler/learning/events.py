"""The events a training or auto-labelling child process reports to the window, one JSON line each.

``labeler train --progress json`` and ``labeler auto-label --progress json`` print these (see
:mod:`labeler.cli.learning` for when each comes); the window's controllers read them back with
:func:`parse_line`. Both sides go through this module, so the wire format is written down once:

- every line is a JSON object with ``"v"`` (:data:`PROTOCOL_VERSION`), ``"job"`` (``"train"`` or
  ``"auto-label"``) and ``"event"`` (the kind), plus the fields of the dataclass for that kind;
- numbers that are not finite travel as ``null`` (the reader turns a ``null`` ETA back into NaN);
- fields a reader does not know are ignored (a newer writer may add some); a missing field, a
  wrong type, an unknown kind or another protocol version make the line :class:`Unreadable`,
  which says why: the reader reports it and carries on.

Seconds are wall-clock seconds; ``fraction`` is the share of the run done, in [0, 1].
No Qt and no torch here.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Union

PROTOCOL_VERSION = 1
TRAIN = "train"
AUTO_LABEL = "auto-label"


# ---- the events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainStart:
    """The run is set up: what it trains on, with which settings."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "start"
    plugin: str
    train_images: int
    validation_images: int
    skipped: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    parent: int | None = None
    time_budget: float | None = None
    epochs: float | None = None
    world_size: int = 1
    refit: bool = False
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainProgress:
    """A report during training (``validation``: right after a validation pass). ``epoch`` counts
    passes over the images of the current ``phase`` (``"train"``, then ``"refit"``); ``step``,
    ``fraction``, ``elapsed`` and ``eta`` run on over both phases. ``losses`` are means since the
    last report, with ``"total"``; ``metric`` is the plugin's ranking metric once validated."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "progress"
    step: int
    elapsed: float
    eta: float | None = None
    fraction: float | None = None
    epoch: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    images_per_second: float | None = None
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    phase: str = "train"

    @property
    def loss(self) -> float | None:
        """The total loss of this report (``losses["total"]``, else the sum of the parts)."""
        if "total" in self.losses:
            return float(self.losses["total"])
        return float(sum(self.losses.values())) if self.losses else None

    @property
    def done_fraction(self) -> float | None:
        """How far the run is, in [0, 1]: ``fraction``, else from ``elapsed`` and ``eta``."""
        if self.fraction is not None:
            return max(0.0, min(1.0, self.fraction))
        return fraction_from_eta(elapsed=self.elapsed, eta=self.eta)


@dataclass(frozen=True)
class TrainValidation(TrainProgress):
    """A :class:`TrainProgress` sent right after a validation pass."""

    KIND: ClassVar[str] = "validation"


@dataclass(frozen=True)
class TrainEvaluating:
    """Training ended; the new version and the active one are being measured."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "evaluating"
    validation_images: int


@dataclass(frozen=True)
class TrainRefit:
    """The last part of the run trains on the validation images too."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "refit"
    images: int
    validation_images: int
    seconds: float | None = None
    epochs: float | None = None
    lr: float | None = None


@dataclass(frozen=True)
class TrainDone:
    """The run stored model version ``version`` (``activated``: it is now the active one)."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "done"
    version: int | None
    activated: bool
    metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    previous_metric: float | None = None
    checkpoint: str | None = None
    messages: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None
    refit: dict[str, Any] | None = None
    selection_checkpoint: str | None = None


@dataclass(frozen=True)
class TrainCancelled:
    """Stopped by SIGTERM / Ctrl+C after ``steps`` steps; nothing was written."""

    JOB: ClassVar[str] = TRAIN
    KIND: ClassVar[str] = "cancelled"
    steps: int = 0


@dataclass(frozen=True)
class AutoLabelStart:
    """``total`` images will be auto-labelled with model version ``version`` of ``plugin``."""

    JOB: ClassVar[str] = AUTO_LABEL
    KIND: ClassVar[str] = "start"
    version: int | None
    plugin: str
    total: int


@dataclass(frozen=True)
class AutoLabelProgress:
    """``done`` of ``total`` images have their proposals; the last was ``image_id`` (``error``:
    why it could not be read, else None)."""

    JOB: ClassVar[str] = AUTO_LABEL
    KIND: ClassVar[str] = "progress"
    done: int
    total: int
    image_id: int | None = None
    proposals: int = 0
    uncertainty: float | None = None
    images_per_second: float | None = None
    eta: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class AutoLabelDone:
    """The run ended (``cancelled`` when stopped early); ``failed`` maps image ids to reasons."""

    JOB: ClassVar[str] = AUTO_LABEL
    KIND: ClassVar[str] = "done"
    images: int
    proposals: int
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    cancelled: bool = False


@dataclass(frozen=True)
class JobError:
    """The run failed: ``message`` in one line; ``plugin`` when a plugin is at fault. ``job`` is
    the job that failed (``train`` or ``auto-label``)."""

    JOB: ClassVar[str] = ""  # either job
    KIND: ClassVar[str] = "error"
    message: str
    plugin: str | None = None
    job: str = TRAIN


@dataclass(frozen=True)
class Unreadable:
    """A line that looked like an event but could not be read: ``reason`` says why."""

    line: str
    reason: str


Event = (
    TrainStart
    | TrainProgress
    | TrainValidation
    | TrainEvaluating
    | TrainRefit
    | TrainDone
    | TrainCancelled
    | AutoLabelStart
    | AutoLabelProgress
    | AutoLabelDone
    | JobError
)
_KINDS: dict[tuple[str, str], type[Any]] = {
    (cls.JOB, cls.KIND): cls
    for cls in (
        TrainStart,
        TrainProgress,
        TrainValidation,
        TrainEvaluating,
        TrainRefit,
        TrainDone,
        TrainCancelled,
        AutoLabelStart,
        AutoLabelProgress,
        AutoLabelDone,
    )
}


# ---- the one ETA formula ----------------------------------------------------------------------


def eta_seconds(*, elapsed: float, fraction: float) -> float:
    """Seconds left at the average rate so far: ``elapsed / fraction * (1 - fraction)``; NaN
    before anything is done. ``fraction`` is the share done, e.g. ``done / total`` images."""
    if not fraction > 0 or not math.isfinite(elapsed):
        return math.nan
    fraction = min(1.0, fraction)
    return max(0.0, elapsed / fraction * (1.0 - fraction))


def fraction_from_eta(*, elapsed: float, eta: float | None) -> float | None:
    """The share done that ``elapsed`` and ``eta`` imply (the inverse of :func:`eta_seconds`), or
    None when the ETA is unknown."""
    if eta is None or not math.isfinite(eta) or not math.isfinite(elapsed):
        return None
    total = elapsed + eta
    return max(0.0, min(1.0, elapsed / total)) if total > 0 else None


def format_eta(seconds: float | None) -> str:
    """``'about 1 min 15 s left'``, ``'about 9 s left'``, or that it is still being estimated."""
    if seconds is None or not math.isfinite(seconds):
        return "estimating time left…"
    s = round(seconds)
    return f"about {s // 60} min {s % 60:02d} s left" if s >= 60 else f"about {s} s left"


# ---- writing ----------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_line(event: Event) -> str:
    """One JSON line (no newline) for ``event``: version, job, kind and its fields."""
    job = event.job if isinstance(event, JobError) else event.JOB
    body = asdict(event)
    body.pop("job", None)
    head = {"v": PROTOCOL_VERSION, "job": job, "event": event.KIND}
    return json.dumps(_finite(head | body))


def train_event(info: Mapping[str, Any]) -> Event:
    """The typed event for one report of :func:`labeler.learning.training.train`'s ``progress``
    callback (a mapping with ``"event"`` and the fields); ``ValueError`` if it does not fit."""
    return _decode(TRAIN, dict(info))


# ---- reading ----------------------------------------------------------------------------------


def parse_line(line: str) -> Event | Unreadable:
    """The event on one line of a child's stdout, or :class:`Unreadable` saying what is wrong."""
    text = line.strip()
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return Unreadable(text, f"not JSON ({exc})")
    if not isinstance(obj, dict):
        return Unreadable(text, "not a JSON object")
    version = obj.get("v")
    if version != PROTOCOL_VERSION:
        return Unreadable(text, f"protocol version {version!r}; this labeler reads version {PROTOCOL_VERSION}")
    job = obj.get("job")
    if job not in (TRAIN, AUTO_LABEL):
        return Unreadable(text, f"unknown job {job!r}")
    try:
        return _decode(str(job), obj)
    except ValueError as exc:
        return Unreadable(text, str(exc))


def _decode(job: str, obj: dict[str, Any]) -> Event:
    kind = obj.get("event")
    if kind == "error":
        cls: type[Any] = JobError
        obj = obj | {"job": job}
    else:
        found = _KINDS.get((job, str(kind)))
        if found is None:
            raise ValueError(f"unknown {job} event {kind!r}")
        cls = found
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{job} event {kind!r} lacks {f.name!r}")
            continue
        try:
            values[f.name] = _coerce(obj[f.name], hints[f.name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{job} event {kind!r}: field {f.name!r}: {exc}") from None
    event: Event = cls(**values)
    return event


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (the JSON shapes of the fields above), or TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors))
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if value is None:  # a non-finite number on the wire
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): _coerce(v, args[1]) for k, v in value.items()}
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_coerce(v, args[0]) for v in value)
    else:  # pragma: no cover - a field type this module does not use
        raise TypeError(f"cannot read {hint!r}")
    raise TypeError(f"expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")
