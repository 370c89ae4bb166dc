"""Dock panels of the main window and the widgets they are made of (the image list, the training
plots): each a plain QWidget with signals; no business logic."""
