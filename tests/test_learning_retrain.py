"""The auto-retrain policy, on its own: after every N images newly marked done."""

from __future__ import annotations

import pytest

from labeler.learning.retrain import RetrainPolicy


def test_retrain_is_due_after_every_n_done_images() -> None:
    policy = RetrainPolicy(every=3)
    assert [policy.due(done_since_training=n) for n in range(5)] == [False, False, False, True, True]
    assert not policy.due(done_since_training=3, training_running=True)
    assert not RetrainPolicy(every=3, enabled=False).due(done_since_training=10)
    with pytest.raises(ValueError, match="at least 1"):
        RetrainPolicy(every=0)
