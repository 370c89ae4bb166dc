"""Auto-labelling one image at a time, as the window does when the user asks for proposals on the
image in front of them: the plugin's active model version, loaded once and kept while it stays
the active one.

No Qt here: the window runs :meth:`OneImageLabeller.label` on a worker thread; a script or a
benchmark calls it directly.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labeler.core.store import Project
    from labeler.learning.checkpoints import LoadedModel


class OneImageLabeller:
    """Writes the proposals of a plugin's active model version onto single images.

    The loaded model is cached, keyed by plugin and model version id: the next image with the same
    active version starts at once; a new active version (after training, or chosen by the user),
    or another plugin, replaces it. ``loads`` counts the models loaded so far.
    """

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self.loads = 0
        self._key: tuple[str, int] | None = None
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()  # one load at a time, whichever thread asks

    def model(self, project: Project, plugin: str) -> LoadedModel:
        """The loaded active version of ``plugin`` (from the cache when it is still the active one).

        Raises :class:`~labeler.core.store.ProjectError` when the plugin has no trained version."""
        from labeler.core.store import ProjectError
        from labeler.learning.autolabel import load_model

        version = project.active_model_version(plugin)
        if version is None or version.id is None:
            raise ProjectError(f"plugin {plugin!r} has no trained model in this project yet; train it first")
        key = (plugin, version.id)
        with self._lock:
            if self._key != key or self._model is None:
                self._key, self._model = None, None  # never keep two models in memory
                self._model = load_model(project, plugin, version_id=version.id, device=self.device)
                self._key = key
                self.loads += 1
            return self._model

    def label(self, project: Project, plugin: str, image_id: int) -> int:
        """Store the proposals of ``plugin``'s active version on image ``image_id`` (replacing its
        earlier proposals of that plugin; accepted and human labels stay); returns how many were
        written. An image that cannot be read raises :class:`~labeler.core.images.ImageError`."""
        from labeler.core.images import ImageError
        from labeler.learning.autolabel import iter_auto_label

        loaded = self.model(project, plugin)
        count = 0
        for step in iter_auto_label(project, loaded, [image_id]):
            if step.error is not None:
                raise ImageError(step.error)
            count = step.proposals
        return count

    def clear(self) -> None:
        """Drop the cached model (a project was closed, say)."""
        with self._lock:
            self._key, self._model = None, None
