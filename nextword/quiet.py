"""Load TensorFlow without its C++ start-up chatter on the user's terminal."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) while it loads.

    They go straight to file descriptor 2, past TF_CPP_MIN_LOG_LEVEL. Python errors are
    unaffected: they are printed after the descriptor is restored. NEXTWORD_TF_LOGS=1
    keeps them.
    """
    if os.environ.get("NEXTWORD_TF_LOGS") or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_tensorflow():
    """Import TensorFlow (+ TF Text) and probe devices once, quietly; returns the tf module."""
    with quiet_native_stderr():
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

        tf.config.list_physical_devices()  # the CUDA probe prints its failure here
        # The first integer transpose (the span reader frames windows with one) logs, once per
        # process and at ERROR level, that oneDNN falls back to Eigen on CPUs without AVX-512.
        tf.transpose(tf.zeros([2, 2], tf.int32))
    return tf
