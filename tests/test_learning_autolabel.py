"""Auto-labelling: proposals tagged with version and score; human labels never touched."""

from __future__ import annotations

import functools
import operator
from pathlib import Path

import pytest
from learning_support import install_minimal_plugin, minimal_plugin, synthetic_project, trained_project

from labeler.core.annotation import Annotation, Kind, State
from labeler.core.duplicates import DUPLICATE_IOU, overlap
from labeler.core.uncertainty import uncertainty_order
from labeler.learning.autolabel import (
    auto_label,
    in_shard,
    iter_auto_label,
    load_model,
    parse_shard,
    select_images,
)
from labeler.learning.training import train


@pytest.fixture
def trained(backend, tmp_path: Path):
    yield from trained_project(backend, tmp_path / "proj", images=10)


def test_auto_label_writes_proposals_and_uncertainty(trained):
    project, loaded = trained
    ids = select_images(project, scope="undone")
    assert ids == [7, 8, 9, 10]
    steps = []
    result = auto_label(project, loaded, ids, progress=steps.append)
    assert result.images == 4 and not result.cancelled and not result.failed
    assert [s.done for s in steps] == [1, 2, 3, 4] and steps[-1].total == 4
    proposals = project.annotations(states=[State.PROPOSED])
    assert result.proposals == len(proposals) > 0
    assert {a.image_id for a in proposals} <= set(ids)
    assert all(
        a.model_version == loaded.version.id and 0.0 <= a.score <= 1.0 and a.kind is Kind.MASK for a in proposals
    )
    assert all(project.image(i).uncertainty is not None for i in ids)
    assert uncertainty_order(project.images())


def test_auto_label_never_touches_accepted_and_replaces_own_older_proposals(trained):
    project, loaded = trained
    human = project.add_annotation(Annotation(image_id=7, category_id=1, kind=Kind.BOX, box_xywh=(1, 1, 5, 5)))
    auto_label(project, loaded, [7, 8])
    first = {a.id for a in project.annotations(7, states=[State.PROPOSED])}
    accepted_proposal = project.annotations(8, states=[State.PROPOSED])[0]
    project.set_state(accepted_proposal.id, State.ACCEPTED)
    auto_label(project, loaded, [7, 8])
    second = {a.id for a in project.annotations(7, states=[State.PROPOSED])}
    assert first and second and not first & second  # older proposals replaced, not piled up
    assert project.annotation(human.id).state is State.ACCEPTED and project.annotation(human.id).is_human
    assert project.annotation(accepted_proposal.id).state is State.ACCEPTED
    # the first six done images' accepted labels are all still there
    assert all(a.state is State.ACCEPTED for i in range(1, 7) for a in project.annotations(i))


def test_generator_cancel_writes_what_was_done(trained):
    project, loaded = trained
    gen = iter_auto_label(project, loaded, [7, 8, 9, 10], write_every=100)
    next(gen)
    next(gen)
    gen.close()
    labelled = {a.image_id for a in project.annotations(states=[State.PROPOSED])}
    assert labelled <= {7, 8} and project.image(7).uncertainty is not None
    assert project.image(9).uncertainty is None and project.image(10).uncertainty is None


def test_should_stop_cancels(trained):
    project, loaded = trained
    result = auto_label(project, loaded, [7, 8, 9, 10], should_stop=lambda: True)
    assert result.cancelled and result.images == 1


def test_unreadable_image_is_reported_and_skipped(trained):
    project, loaded = trained
    (project.root / project.image(8).path).write_bytes(b"not an image")
    result = auto_label(project, loaded, [7, 8, 9])
    assert result.images == 2 and set(result.failed) == {8}


def test_shards_split_by_id_and_cover_everything(trained):
    project, _ = trained
    shards = [select_images(project, scope="all", shard=(k, 3)) for k in (1, 2, 3)]
    assert sorted(functools.reduce(operator.iadd, shards, [])) == list(range(1, 11))
    assert all(not set(a) & set(b) for a in shards for b in shards if a is not b)
    assert all(in_shard(i, (k + 1, 3)) for k, s in enumerate(shards) for i in s)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_load_model_uses_the_active_version_and_explains_when_none(backend, tmp_path):
    install_minimal_plugin()
    from labeler.core.store import ProjectError

    with synthetic_project(backend, tmp_path / "p", images=4, done=2) as project:
        with pytest.raises(ProjectError, match="no trained model"):
            load_model(project, "minimal")
        version = train(project, minimal_plugin(), epochs=1).version
        assert load_model(project, "minimal").version.id == version.id


def test_plugin_failing_in_inputs_is_named_and_earlier_images_are_kept(trained):
    from dataclasses import replace

    from labeler.learning.api import PluginError

    project, loaded = trained
    calls = {"n": 0}
    inner = loaded.plugin.inputs

    class Flaky:
        name, task, metric, settings = "minimal", loaded.plugin.task, loaded.plugin.metric, loaded.plugin.settings

        def __getattr__(self, attr):
            return getattr(loaded.plugin, attr)

        def inputs(self, image, *, settings):
            calls["n"] += 1
            if calls["n"] == 3:
                raise ValueError("odd pixels")
            return inner(image, settings=settings)

    with pytest.raises(PluginError, match=r"'minimal'.*inputs raised ValueError: odd pixels"):
        auto_label(project, replace(loaded, plugin=Flaky()), [7, 8, 9, 10], workers=1)
    assert project.image(7).uncertainty is not None and project.image(8).uncertainty is not None
    assert project.image(9).uncertainty is None


def test_batched_forward_matches_one_by_one(trained):
    import numpy as np
    import torch

    from labeler.learning.autolabel import _forward_group, _Loaded, _split_outputs

    project, loaded = trained
    images = [project.read_image(i) for i in (7, 8, 9)]
    group = [_Loaded(shape=im.shape[:2], x=loaded.plugin.inputs(im, settings=loaded.settings)) for im in images]
    together = _forward_group(loaded, group)
    alone = [_forward_group(loaded, [g])[0] for g in group]
    assert len(together) == 3
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    assert _forward_group(loaded, [_Loaded(error="unreadable")]) == [None]

    t = torch.arange(6.0).reshape(3, 2)
    parts = _split_outputs({"a": t, "b": (t, t * 2)}, 3)
    assert np.allclose(parts[1]["b"][1].numpy(), [[4.0, 6.0]])
    assert _split_outputs({"a": t, "scalar": torch.tensor(1.0)}, 3) is None
    assert _split_outputs(t, 2) is None and _split_outputs("text", 3) is None


def test_runs_of_any_size_on_any_number_of_streams_give_the_same_proposals_in_order(trained, monkeypatch):
    """One image per run on one stream, one per run on two streams, or the first ones alone and the
    rest in one run: the same proposals, reported in the order asked. The first runs hold one image
    each (two per stream are queued); later ones as many as ``chunk_seconds`` allows."""
    project, loaded = trained
    ids = [10, 8, 7, 9]

    from labeler.learning import autolabel

    runs: list[int] = []
    run_task = autolabel._run_task

    def recording(loaded, paths, side, **kwargs):
        runs.append(len(paths))
        return run_task(loaded, paths, side, **kwargs)

    monkeypatch.setattr(autolabel, "_run_task", recording)

    def run(**kwargs):
        runs.clear()
        steps = list(iter_auto_label(project, loaded, ids, **kwargs))
        assert [s.image_id for s in steps] == ids and [s.done for s in steps] == [1, 2, 3, 4]
        return {
            i: sorted(
                (a.category_id, a.rle["counts"], round(a.score, 6))
                for a in project.annotations(i, states=[State.PROPOSED])
            )
            for i in ids
        }

    one_by_one = run(workers=1, chunk_seconds=0.0)
    assert runs == [1, 1, 1, 1]
    two_streams = run(workers=2, chunk_seconds=0.0)
    assert sorted(runs) == [1, 1, 1, 1]
    rest_together = run(workers=1, chunk_seconds=1e9)
    assert runs == [1, 1, 2]
    assert one_by_one == two_streams == rest_together and all(one_by_one.values())

    # what is left is shared out between the streams, so none idles while another has a long run
    runs.clear()
    steps = list(iter_auto_label(project, loaded, list(range(1, 11)), workers=2, chunk_seconds=1e9))
    assert [s.image_id for s in steps] == list(range(1, 11))
    assert runs == [1, 1, 1, 1, 3, 2, 1]


def test_streams_share_torchs_threads_and_give_them_back(trained, monkeypatch):
    """On the CPU, two streams run their networks on half of torch's threads each; one stream (one
    image) leaves them alone; afterwards they are as they were."""
    import torch

    from labeler.learning import autolabel

    project, loaded = trained
    seen: list[int] = []
    run_task = autolabel._run_task

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return run_task(*args, **kwargs)

    monkeypatch.setattr(autolabel, "_run_task", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        list(iter_auto_label(project, loaded, [7, 8, 9], workers=2))
        assert set(seen) == {2} and torch.get_num_threads() == 4
        seen.clear()
        list(iter_auto_label(project, loaded, [7], workers=2))
        assert seen == [4] and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_batches_group_small_inputs_of_one_shape():
    import torch

    from labeler.learning.autolabel import CPU_BATCH_IMAGE_ELEMENTS, _batches, _Loaded

    small = [_Loaded(shape=(8, 8), x=torch.zeros(1, 3, 8, 8)) for _ in range(3)]
    other = _Loaded(shape=(8, 9), x=torch.zeros(1, 3, 8, 9))
    side = int((CPU_BATCH_IMAGE_ELEMENTS // 3) ** 0.5) + 1  # just over the CPU's per-image limit
    large = [_Loaded(shape=(side, side), x=torch.zeros(1, 3, side, side)) for _ in range(2)]
    broken = _Loaded(error="unreadable")
    ready = [*small, other, broken, *large]

    def sizes(groups):
        return [len(g) for g in groups]

    assert sizes(_batches(ready, batch_size=16, on_gpu=False)) == [3, 1, 1, 1, 1]
    assert sizes(_batches(ready, batch_size=2, on_gpu=False)) == [2, 1, 1, 1, 1, 1]
    assert sizes(_batches(ready, batch_size=16, on_gpu=True)) == [3, 1, 1, 2]
    assert [g[0] for g in _batches(ready, batch_size=16, on_gpu=False)][1:3] == [other, broken]


def test_auto_label_does_not_propose_again_what_is_accepted(trained):
    project, loaded = trained
    auto_label(project, loaded, [8])
    accepted = project.annotations(8, states=[State.PROPOSED])[0]
    project.set_state(accepted.id, State.ACCEPTED)
    steps = list(iter_auto_label(project, loaded, [8]))
    record = project.image(8)
    # what the run reports is what it stored: the repeat it left out is not counted
    assert [s.proposals for s in steps if s.image_id == 8][-1] == len(project.annotations(8, states=[State.PROPOSED]))
    again = [p for p in project.annotations(8, states=[State.PROPOSED]) if p.category_id == accepted.category_id]
    assert all(
        overlap(p, project.annotation(accepted.id), height=record.height, width=record.width) < DUPLICATE_IOU
        for p in again
    )
