"""Undo commands for every change the GUI makes to the annotations of a project.

Each command writes to the store at once (no Save button): ``redo()`` applies the change in one
store transaction, ``undo()`` puts the old annotations back, also in one transaction. A deleted
annotation comes back with its old id (``Project.add_annotation`` with ``id`` set), so anything
that refers to it by id keeps working after undo.

The one general command is :class:`ChangeAnnotations`: a list of ``(before, after)`` pairs where
``before is None`` means "add ``after``", ``after is None`` means "delete ``before``", and both set
means "overwrite with ``after``". The helpers below build it for the common actions (add, delete,
edit, accept, reject) with a readable undo text.

``notify(image_id)`` is called after every redo and undo for each image touched, so the canvas can
re-read the store and tell the rest of the window (``annotationsChanged``).

Undo undoes this window's own edits only. Every write names the revision of the annotation that
this window last left in the store (:class:`OwnRevisions`, shared by all commands on one project):
if someone else has saved it since, the store refuses the write
(:class:`~labeler.core.store.StaleAnnotationError`) and the command says so and leaves the stack.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar

from PySide6.QtGui import QUndoCommand

from labeler.core.annotation import Annotation, State, as_human
from labeler.core.store import Project

Notify = Callable[[int], None]
OnError = Callable[[str], None]
Pair = tuple[Annotation | None, Annotation | None]


class OwnRevisions:
    """The revision this window last wrote, per annotation id, for one project: what an undo or a
    redo expects to find stored (a later command's undo changes the revision an earlier one
    left, so a command cannot keep the figure itself)."""

    # keyed weakly: a closed project's figures go with it
    _by_project: ClassVar[weakref.WeakKeyDictionary[Project, dict[int, int]]] = weakref.WeakKeyDictionary()

    @classmethod
    def expected(cls, project: Project, ann: Annotation) -> Annotation:
        """``ann`` with the revision we last left stored (its own where we never wrote it)."""
        known = cls._by_project.get(project, {})
        if ann.id is None or ann.id not in known:
            return ann
        return replace(ann, revision=known[ann.id])

    @classmethod
    def wrote(cls, project: Project, anns: Sequence[Annotation]) -> None:
        known = cls._by_project.setdefault(project, {})
        for ann in anns:
            if ann.id is not None and ann.revision is not None:
                known[ann.id] = ann.revision

    @classmethod
    def deleted(cls, project: Project, annotation_id: int) -> None:
        cls._by_project.get(project, {}).pop(annotation_id, None)


class ChangeAnnotations(QUndoCommand):
    """Add, delete and overwrite annotations as one undoable step.

    ``pairs`` are ``(before, after)``: ``(None, new)`` adds (``new.id`` may be ``None``; the id the
    store gives it is kept, so redo after undo brings back the same id), ``(old, None)`` deletes,
    ``(old, new)`` overwrites ``old.id`` with ``new``. ``action`` names the edit in the store's edit
    log for overwrites (``edit``, ``accepted``, ``rejected`` ...). ``draw_seconds``, if given, is the
    time the user spent drawing the added or edited labels by hand: it is logged once, as
    ``draw``, on the first redo (the shell compares it with the time accepted proposals took).
    ``state_only`` says every pair differs in its review state alone (accept, reject, reopen): then
    redo and undo are one UPDATE each (:meth:`Project.set_states`), with nothing read back.

    If the store refuses the change (an annotation deleted meanwhile by another process, say),
    nothing is written (one transaction), ``error`` holds the message, ``on_error`` hears it, and
    the command marks itself obsolete so the undo stack drops it.
    """

    def __init__(
        self,
        project: Project,
        pairs: Sequence[Pair],
        text: str,
        *,
        notify: Notify | None = None,
        on_error: OnError | None = None,
        action: str = "edit",
        draw_seconds: float | None = None,
        state_only: bool = False,
    ) -> None:
        super().__init__(text)
        for before, after in pairs:
            if before is None and after is None:
                raise ValueError("a change needs a before or an after annotation")
            if before is not None and before.id is None:
                raise ValueError("the annotation to change or delete must be stored (id set)")
        self._project = project
        self._pairs: list[Pair] = list(pairs)
        self._notify = notify
        self._on_error = on_error
        self.error: str | None = None
        self._action = action
        self._draw_seconds = draw_seconds
        self._done_once = False
        # every pair differs in its review state alone: one UPDATE each way, nothing re-read
        self._state_only = state_only and all(b is not None and a is not None for b, a in self._pairs)

    # ---- queries ------------------------------------------------------------------------

    def added_ids(self) -> list[int]:
        """Ids of the annotations this command added (known after the first redo)."""
        return [a.id for b, a in self._pairs if b is None and a is not None and a.id is not None]

    def image_ids(self) -> list[int]:
        ids: list[int] = []
        for before, after in self._pairs:
            ann = after if after is not None else before
            assert ann is not None
            if ann.image_id not in ids:
                ids.append(ann.image_id)
        return ids

    # ---- QUndoCommand -------------------------------------------------------------------

    def redo(self) -> None:
        try:
            self._apply_redo()
        except Exception as exc:  # noqa: BLE001 - the store refused: nothing was written (one transaction)
            self._fail(f"{self.text()}: {exc}")
            return
        self._announce()

    def undo(self) -> None:
        try:
            self._apply_undo()
        except Exception as exc:  # noqa: BLE001 - as in redo: the store refused, nothing was written
            self._fail(f"Undo {self.text()}: {exc}")
            return
        self._announce()

    def _apply_redo(self) -> None:
        project = self._project
        pairs = list(self._pairs)
        if self._state_only:
            befores = [self._expected(b) for b, _ in pairs if b is not None]
            state = pairs[0][1].state if pairs[0][1] is not None else State.ACCEPTED
            afters = project.set_states(befores, state, action=self._action)
            OwnRevisions.wrote(project, afters)
            self._pairs = list(zip(befores, afters, strict=True))
            self._done_once = True
            return
        with project.transaction():
            for i, (before, after) in enumerate(pairs):
                if after is None:
                    assert before is not None and before.id is not None
                    project.delete_annotation(before.id)
                    OwnRevisions.deleted(project, before.id)
                elif before is None:
                    pairs[i] = (None, project.add_annotation(after))
                else:  # over the version we last left (a newer one by someone else is refused)
                    expected = self._expected(before).revision
                    pairs[i] = (
                        before,
                        project.update_annotation(replace(after, id=before.id, revision=expected), action=self._action),
                    )
            if not self._done_once and self._draw_seconds is not None:
                for _, after in pairs:
                    if after is not None:
                        project.log_edit(
                            "draw",
                            image_id=after.image_id,
                            annotation_id=after.id,
                            kind=after.kind.value,
                            seconds=self._draw_seconds,
                        )
        # Keep the stored versions: redo after undo re-adds the same ids.
        OwnRevisions.wrote(project, [a for _, a in pairs if a is not None])
        self._pairs = pairs
        self._done_once = True

    def _apply_undo(self) -> None:
        project = self._project
        if self._state_only:
            with project.transaction():
                for state in {b.state for b, _ in self._pairs if b is not None}:
                    mine = [
                        OwnRevisions.expected(project, a)
                        for b, a in self._pairs
                        if a is not None and b is not None and b.state is state
                    ]
                    OwnRevisions.wrote(project, project.set_states(mine, state, action="undo"))
            return
        pairs = list(self._pairs)
        with project.transaction():
            for i in reversed(range(len(pairs))):
                before, after = pairs[i]
                if before is None:
                    assert after is not None and after.id is not None
                    project.delete_annotation(after.id)
                    OwnRevisions.deleted(project, after.id)
                elif after is None:
                    OwnRevisions.wrote(project, [project.add_annotation(before)])
                else:  # only over our own edit: if someone changed it since, the store refuses
                    expected = OwnRevisions.expected(project, after).revision
                    restored = project.update_annotation(replace(before, revision=expected), action="undo")
                    OwnRevisions.wrote(project, [restored])
                    pairs[i] = (restored, after)
        self._pairs = pairs

    def _expected(self, before: Annotation) -> Annotation:
        """What a redo writes over: the first time, the copy the user edited (as they saw it, which
        may be someone else's newer version); after an undo, the version we left."""
        return OwnRevisions.expected(self._project, before) if self._done_once else before

    def _fail(self, message: str) -> None:
        self.error = message
        self.setObsolete(True)
        if self._on_error is not None:
            self._on_error(message)

    def _announce(self) -> None:
        if self._notify is not None:
            for image_id in self.image_ids():
                self._notify(image_id)


# ---- builders for the usual actions ---------------------------------------------------------


def add_annotations(
    project: Project,
    anns: Sequence[Annotation],
    *,
    text: str | None = None,
    notify: Notify | None = None,
    on_error: OnError | None = None,
    draw_seconds: float | None = None,
) -> ChangeAnnotations:
    """Add new annotations (``id`` ``None``)."""
    label = text or (f"Add {anns[0].kind.value}" if len(anns) == 1 else f"Add {len(anns)} labels")
    return ChangeAnnotations(
        project, [(None, a) for a in anns], label, notify=notify, on_error=on_error, draw_seconds=draw_seconds
    )


def delete_annotations(
    project: Project, anns: Sequence[Annotation], *, notify: Notify | None = None, on_error: OnError | None = None
) -> ChangeAnnotations:
    """Delete stored annotations; undo brings them back with the same ids."""
    label = f"Delete {anns[0].kind.value}" if len(anns) == 1 else f"Delete {len(anns)} labels"
    return ChangeAnnotations(
        project, [(a, None) for a in anns], label, notify=notify, on_error=on_error, action="delete"
    )


def edit_annotations(
    project: Project,
    pairs: Sequence[tuple[Annotation, Annotation]],
    *,
    text: str,
    notify: Notify | None = None,
    on_error: OnError | None = None,
) -> ChangeAnnotations:
    """Overwrite annotations; an edited proposal becomes a human label
    (:func:`labeler.core.annotation.as_human`)."""
    return ChangeAnnotations(
        project, [(old, as_human(new)) for old, new in pairs], text, notify=notify, on_error=on_error, action="edit"
    )


def set_states(
    project: Project,
    anns: Sequence[Annotation],
    state: State,
    *,
    notify: Notify | None = None,
    on_error: OnError | None = None,
) -> ChangeAnnotations:
    """Accept or reject proposals (they keep model version and score, so the log knows their source)."""
    state = State(state)
    verb = {State.ACCEPTED: "Accept", State.REJECTED: "Reject", State.PROPOSED: "Reopen"}[state]
    label = f"{verb} proposal" if len(anns) == 1 else f"{verb} {len(anns)} proposals"
    return ChangeAnnotations(
        project,
        [(a, replace(a, state=state)) for a in anns],
        label,
        notify=notify,
        on_error=on_error,
        action=state.value,
        state_only=True,
    )
