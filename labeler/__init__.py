"""labeler: label images with small CNNs that learn from your own labels."""

__version__ = "0.1.0"
