"""The app's data files, shipped in the wheel as ``labeler.resources`` (see ``setup.py``).

Nothing here is code: icons (``icons/*.svg``, drawn for this project: 24 px line icons on a
2 px stroke, ``currentColor`` replaced by the palette's text colour when loaded), the desktop
entry and AppStream metadata, the class palette (``palette.json``) and the table of every
command and its keys (``shortcuts.toml``). Read them with :mod:`labeler.core.resources`.
"""
