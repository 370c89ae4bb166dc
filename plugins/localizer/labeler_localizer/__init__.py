"""labeler's localizer plugin: one object per image, its class and its box.

Registered under the entry-point group ``labeler.plugins`` as ``localizer``; see
:mod:`labeler_localizer.plugin` for the conventions and :mod:`labeler_localizer.network` for
the network.
"""

from labeler_localizer.plugin import LocalizerPlugin

__all__ = ["LocalizerPlugin"]
