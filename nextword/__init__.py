"""nextword: streaming data and training toolkit for next-word text generation."""

# 0.1.0: format-1 datasets (one Example per window); 0.2: span records; 0.3: best-checkpoint runs.
__version__ = "0.3.0"
