"""The annotation canvas: view (zoom / pan), image layer, annotation items, tools.

Modules: :mod:`.view` (QGraphicsView: zoom, pan, fit), :mod:`.image_layer` (decoding in a worker,
drawing big images from a small pyramid), :mod:`.items` (box, polygon, mask items and their look,
with :mod:`.style`), :mod:`.tools` (select, box, polygon, brush, eraser) and :mod:`.assist_tools`,
which reach the canvas only through :class:`.host.ToolHost`, :mod:`.edits` (the pure
geometry the tools compute), :mod:`.canvas` (the widget the main window embeds).
"""

from labeler.gui.canvas.canvas import LAYERS, AnnotationCanvas

__all__ = ["LAYERS", "AnnotationCanvas"]
