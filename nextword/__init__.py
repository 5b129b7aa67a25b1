"""nextword: streaming data and training toolkit for next-word text generation."""

__version__ = "0.1.0"
