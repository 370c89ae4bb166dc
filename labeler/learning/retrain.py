"""When to train again by itself: after every ``every`` images newly marked done.

No Qt here: the window asks :meth:`RetrainPolicy.due` each time an image is marked done; a
benchmark simulating a labelling session can ask the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrainPolicy:
    """Retrain after every ``every`` images marked done since the last training run started
    (``enabled`` False: never by itself). Unmarking an image does not count back."""

    every: int = 10
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"retrain every {self.every} images: must be at least 1")

    def due(self, *, done_since_training: int, training_running: bool = False) -> bool:
        """Whether a run should start now, ``done_since_training`` images after the last one
        started (none while one is ``training_running``)."""
        return self.enabled and not training_running and done_since_training >= self.every
