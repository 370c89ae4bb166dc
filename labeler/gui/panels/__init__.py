"""Dock panels of the main window (each a plain QWidget with signals; no business logic)."""
