"""What the window runs besides its widgets: the training and auto-labelling runs (child
processes and worker threads, :mod:`.training_run`, :mod:`.autolabel_run`, on :mod:`.workers`) and
the undo commands through which every edit reaches the store (:mod:`.undo`). No widget here, and
no domain rule: the rules are in :mod:`labeler.core` and :mod:`labeler.learning`."""
