"""labeler's detector plugin: every object of an image, its class and its box.

Registered under the entry-point group ``labeler.plugins`` as ``detector``; see
:mod:`labeler_detector.plugin` for the conventions, :mod:`labeler_detector.grid` for the box
encoding and the training targets, :mod:`labeler_detector.views` for the augmentation,
:mod:`labeler_detector.network` for the network and :mod:`labeler_detector.cocomap` for the metrics.
"""

from labeler_detector.plugin import DetectorPlugin

__all__ = ["DetectorPlugin"]
