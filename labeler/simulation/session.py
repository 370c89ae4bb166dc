"""The loop on the annotator's clock: a whole set labelled with training rounds running beside.

:func:`run_session` makes a fresh project holding every image of the ground truth and lets the
simulated annotator (:mod:`labeler.simulation.annotator`) work through it:

1. the first ``seed_images`` (in the chosen order) are drawn by hand and marked done;
2. a training round starts (the runner behind ``labeler train``: warm start from the active
   version, activated only if better, as the window's Train does), then the new active version
   auto-labels every image not done (the code behind ``labeler auto-label``);
3. the annotator goes on, image by image in the chosen order (``sequential``: the project's;
   ``random``: shuffled once; ``uncertain``: the window's ``U``, the not-done image the models are
   least sure of, sequential while nothing is auto-labelled), reviewing the proposals shown (score
   at least the window's default threshold) and drawing the rest;
4. every ``retrain_every`` images done since the last round started, a new round starts as soon
   as no round is running (the window's auto-retrain).

Time runs as in the window: the annotator's clock advances by the seconds of its actions (the
cost model), and a round started at clock ``t`` serves only the images reached after ``t`` plus
its machine time (training and auto-labelling, measured): until then the annotator works with the
proposals it had. The simulation runs each round's training and auto-labelling for real when it
starts, keeps the new proposals aside and shows them when the clock gets there. With ``wait``,
the annotator waits for each round instead (the waiting is not effort; it is reported apart).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from labeler.core.annotation import Annotation, State
from labeler.core.proposal_filter import DEFAULT_MIN_SCORE, ProposalFilter
from labeler.core.store import Project
from labeler.core.uncertainty import uncertainty_order
from labeler.learning.retrain import RetrainPolicy
from labeler.simulation.annotator import apply_work, manual_seconds, review
from labeler.simulation.cost import COSTS, CostModel
from labeler.simulation.truth import GroundTruth

Order = Literal["uncertain", "sequential", "random"]
ORDERS: tuple[Order, ...] = ("uncertain", "sequential", "random")
SHOWN_THRESHOLD = DEFAULT_MIN_SCORE
"""The window's default score threshold: proposals scoring below it are not shown."""
Say = Callable[[str], None]


@dataclass(frozen=True)
class SessionSettings:
    """How the annotator works and the loop runs (the defaults are the issue's protocol)."""

    plugin: str
    seed_images: int = 5
    retrain_every: int = 10
    budget: float = 60.0
    order: Order = "uncertain"
    wait: bool = False
    threshold: float = SHOWN_THRESHOLD
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    costs: CostModel = COSTS


@dataclass(frozen=True)
class ImageStep:
    """One image as the annotator did it: when (clock seconds), what it cost, against by hand."""

    step: int
    image_id: int
    path: str
    clock: float
    seconds: float
    manual_seconds: float
    shown: int
    accepted: int
    accepted_unchanged: int
    rejected: int
    class_changes: int
    drawn: int
    regions_traced: int
    vertices: int
    regions_left: int
    pixels_left: int
    model_version: int | None


@dataclass(frozen=True)
class Round:
    """One training round: started at ``started`` (clock), serving from ``ready``; the version it
    made (``None`` when training was refused, with ``message``) and whether it became active."""

    number: int
    started: float
    ready: float
    done_images: int
    version_id: int | None
    activated: bool
    metrics: dict[str, float]
    train_seconds: float
    label_seconds: float
    message: str = ""


@dataclass(frozen=True)
class SessionResult:
    settings: dict[str, Any]
    steps: tuple[ImageStep, ...]
    rounds: tuple[Round, ...]
    loop_seconds: float
    manual_seconds: float
    accepted_fraction: float
    first_proposal_clock: float | None
    waited_seconds: float

    @property
    def effort_ratio(self) -> float:
        return self.loop_seconds / self.manual_seconds if self.manual_seconds > 0 else 1.0

    @property
    def train_seconds(self) -> float:
        return sum(r.train_seconds for r in self.rounds)

    @property
    def label_seconds(self) -> float:
        return sum(r.label_seconds for r in self.rounds)

    @property
    def machine_seconds(self) -> float:
        return self.train_seconds + self.label_seconds

    def summary(self) -> dict[str, Any]:
        """The figures (the ``--json`` of ``benchmarks/bench_loop.py``)."""
        return {
            "effort_ratio": self.effort_ratio,
            "loop_seconds": self.loop_seconds,
            "manual_seconds": self.manual_seconds,
            "accepted_fraction": self.accepted_fraction,
            "images": len(self.steps),
            "machine_seconds": self.machine_seconds,
            "train_seconds": self.train_seconds,
            "label_seconds": self.label_seconds,
            "first_proposal_clock": self.first_proposal_clock,
            "waited_seconds": self.waited_seconds,
            "rounds": [asdict(r) for r in self.rounds],
            "settings": self.settings,
        }


Snapshot = dict[int, tuple[list[Annotation], float | None]]


def _proposals(project: Project, plugin: str, image_id: int) -> list[Annotation]:
    """The plugin's pending proposals on an image."""
    versions = {v.id for v in project.model_versions(plugin)}
    return [a for a in project.annotations(image_id, states=[State.PROPOSED]) if a.model_version in versions]


def _snapshot(project: Project, plugin: str, image_ids: list[int]) -> Snapshot:
    return {i: (_proposals(project, plugin, i), project.image(i).uncertainty) for i in image_ids}


def _show(project: Project, plugin: str, snapshot: Snapshot) -> None:
    """Put a snapshot's proposals (and uncertainties) back on the images still not done."""
    with project.transaction():
        for image_id, (proposals, uncertainty) in snapshot.items():
            if not project.image(image_id).done:
                project.replace_proposals(image_id, plugin=plugin, proposals=proposals, uncertainty=uncertainty)


@dataclass
class _Pending:
    round: Round
    snapshot: Snapshot | None


class _Session:
    def __init__(self, project: Project, truth: GroundTruth, settings: SessionSettings, say: Say) -> None:
        from labeler.learning.plugins import get_plugin

        self.project, self.settings, self.say = project, settings, say
        self.plugin = get_plugin(settings.plugin)
        self.masks = str(getattr(self.plugin, "task", "")) == "segmentation"
        ids = {}
        for old, name in truth.categories:
            ids[old] = project.add_category(name).id
        self.truth = truth.renumbered(ids)
        image_ids = project.add_images(list(self.truth.paths))
        self.path_of = dict(zip(image_ids, self.truth.paths, strict=True))
        with project.transaction():
            for image_id, path in self.path_of.items():
                t = self.truth.truth[path]
                project.set_image_size(image_id, t.width, t.height)
        self.order = list(image_ids)
        if settings.order == "random":
            random.Random(settings.seed).shuffle(self.order)
        self.done: set[int] = set()
        self.clock = 0.0
        self.waited = 0.0
        self.rounds: list[Round] = []
        self.pending: _Pending | None = None
        self.visible_version: int | None = None
        self.first_proposal: float | None = None
        self.done_since_round = 0
        self.retrain = RetrainPolicy(every=settings.retrain_every)
        self.shown = ProposalFilter(min_score=settings.threshold, plugin=settings.plugin)

    # ---- the image order ----------------------------------------------------------------------

    def next_image(self) -> int:
        if self.settings.order == "uncertain" and len(self.done) >= self.settings.seed_images:
            order = uncertainty_order(self.project.images(done=False))
            if order:
                return order[0].id
        return next(i for i in self.order if i not in self.done)

    # ---- training rounds ----------------------------------------------------------------------

    def _not_done(self) -> list[int]:
        return [i for i in self.order if i not in self.done]

    def start_round(self) -> None:
        from labeler.learning.autolabel import auto_label, load_model
        from labeler.learning.training import TrainingError, train

        number = len(self.rounds) + 1
        before = self.project.active_model_version(self.settings.plugin)
        self.say(f"round {number}: training on {len(self.done)} done images at clock {self.clock:.0f} s ...")
        start = time.monotonic()
        try:
            result = train(
                self.project,
                self.plugin,
                overrides=dict(self.settings.overrides),
                time_budget=self.settings.budget,
                from_version="active",
                activate="better",
                seed=self.settings.seed,
            )
        except TrainingError as exc:
            train_seconds = time.monotonic() - start
            self.say(f"round {number}: no version ({exc})")
            done_round = Round(
                number,
                self.clock,
                self.clock + train_seconds,
                len(self.done),
                None,
                False,
                {},
                train_seconds,
                0.0,
                str(exc),
            )
            self.pending = _Pending(done_round, None)
            return
        train_seconds = time.monotonic() - start
        active = self.project.active_model_version(self.settings.plugin)
        snapshot: Snapshot | None = None
        label_seconds = 0.0
        targets = self._not_done()
        if active is not None and targets and (before is None or active.id != before.id):
            shown_now = _snapshot(self.project, self.settings.plugin, targets)
            start = time.monotonic()
            auto_label(self.project, load_model(self.project, self.settings.plugin), targets)
            label_seconds = time.monotonic() - start
            snapshot = _snapshot(self.project, self.settings.plugin, targets)
            _show(self.project, self.settings.plugin, shown_now)  # not shown until the clock gets there
        version = result.version
        new_round = Round(
            number,
            self.clock,
            self.clock + train_seconds + label_seconds,
            len(self.done),
            version.id if version is not None else None,
            result.activated,
            dict(result.metrics),
            train_seconds,
            label_seconds,
        )
        self.say(
            f"round {number}: version {new_round.version_id} "
            f"({'active' if result.activated else 'not better, not used'}) {_metrics_text(result.metrics)}; "
            f"trained {train_seconds:.0f} s, auto-labelled {len(targets)} images in {label_seconds:.1f} s"
        )
        self.pending = _Pending(new_round, snapshot)
        if self.settings.wait:
            self.waited += new_round.ready - self.clock
            self.clock = new_round.ready

    def land_round(self) -> None:
        """The pending round's proposals appear once the clock reaches its end."""
        pending = self.pending
        if pending is None or self.clock < pending.round.ready:
            return
        self.rounds.append(pending.round)
        if pending.snapshot is not None:
            _show(self.project, self.settings.plugin, pending.snapshot)
            self.visible_version = pending.round.version_id
            if self.first_proposal is None:
                self.first_proposal = pending.round.ready
        self.pending = None

    def round_due(self) -> bool:
        """The first round once the seeds are done; then the window's auto-retrain policy."""
        if len(self.done) < self.settings.seed_images or len(self.done) == len(self.order):
            return False
        if not self.rounds and self.pending is None:
            return True
        return self.retrain.due(done_since_training=self.done_since_round, training_running=self.pending is not None)

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> SessionResult:
        steps: list[ImageStep] = []
        costs = self.settings.costs
        while len(self.done) < len(self.order):
            self.land_round()
            if self.round_due():
                self.done_since_round = 0
                self.start_round()
                self.land_round()
            image_id = self.next_image()
            path = self.path_of[image_id]
            truth = self.truth.truth[path]
            proposals = _proposals(self.project, self.settings.plugin, image_id)
            shown = [a for a in proposals if self.shown.shows(a, plugin=self.settings.plugin)]
            work = review(image_id, truth, shown, costs=costs)
            apply_work(self.project, image_id, truth, work)
            versions = {a.model_version for a in shown}
            steps.append(
                ImageStep(
                    step=len(steps) + 1,
                    image_id=image_id,
                    path=str(path),
                    clock=self.clock,
                    seconds=work.seconds,
                    manual_seconds=manual_seconds(truth, costs=costs),
                    shown=work.shown,
                    accepted=work.accepted,
                    accepted_unchanged=work.accepted_unchanged,
                    rejected=work.rejected,
                    class_changes=work.class_changes,
                    drawn=work.drawn,
                    regions_traced=work.traced.regions,
                    vertices=work.traced.vertices,
                    regions_left=work.traced.left,
                    pixels_left=work.traced.left_pixels,
                    model_version=max((v for v in versions if v is not None), default=None),
                )
            )
            self.clock += work.seconds
            self.done.add(image_id)
            self.done_since_round += 1
        if self.pending is not None:  # a round still running when the last image is done serves nothing
            self.rounds.append(self.pending.round)
            self.pending = None
        shown_total = sum(s.shown for s in steps)
        settings = asdict(self.settings)
        settings["costs"] = asdict(self.settings.costs)
        settings["overrides"] = dict(self.settings.overrides)
        return SessionResult(
            settings=settings,
            steps=tuple(steps),
            rounds=tuple(self.rounds),
            loop_seconds=sum(s.seconds for s in steps),
            manual_seconds=sum(s.manual_seconds for s in steps),
            accepted_fraction=sum(s.accepted_unchanged for s in steps) / shown_total if shown_total else 0.0,
            first_proposal_clock=self.first_proposal,
            waited_seconds=self.waited,
        )


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in sorted(metrics.items()))


def run_session(
    root: str | os.PathLike[str], truth: GroundTruth, settings: SessionSettings, *, say: Say = print
) -> SessionResult:
    """Label every image of ``truth`` in a new project at ``root`` (see the module's docstring)."""
    if settings.seed_images < 1:
        raise ValueError("seed_images must be at least 1: a model needs labels to start from")
    if settings.retrain_every < 1:
        raise ValueError("retrain_every must be at least 1")
    if settings.order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {settings.order!r}")
    if not truth.paths:
        raise ValueError("the ground truth holds no image")
    with Project.create(Path(root)) as project:
        return _Session(project, truth, settings, say).run()
