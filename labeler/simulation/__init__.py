"""A simulated annotator working through a project with the loop, to measure what the loop saves.

No Qt and no GUI: the annotator uses the engine as the window does (the store, training,
auto-labelling, accepting / rejecting / editing proposals, marking images done, picking the next
image), with the ground truth kept aside and "drawn" image by image.

- :mod:`~labeler.simulation.cost`: the cost model (seconds per action, with their sources) and the
  cost of tracing a region;
- :mod:`~labeler.simulation.annotator`: what the annotator does on one image, and what it costs;
- :mod:`~labeler.simulation.truth`: the ground truth of a labelled folder, read through the importers;
- :mod:`~labeler.simulation.session`: the run over a whole set on the annotator's clock, with
  training rounds that serve only the images reached after they finish.
"""
