"""Load TensorFlow without its C++ start-up chatter on the user's terminal."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_native_stderr(always: bool = False):
    """Silence TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) while it loads.

    They go straight to file descriptor 2, past TF_CPP_MIN_LOG_LEVEL. Python errors are
    unaffected: they are printed after the descriptor is restored. NEXTWORD_TF_LOGS=1
    keeps them. always: also once TensorFlow is loaded (for one known line, see absorb_onednn_note).
    """
    if os.environ.get("NEXTWORD_TF_LOGS") or ("tensorflow" in sys.modules and not always):
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
    return tf


_ONEDNN_NOTE_ABSORBED = False


def absorb_onednn_note() -> None:
    """The first integer transpose of a process (ragged concat and window framing in the span
    reader use them) makes oneDNN log, once and at ERROR level, "oneDNN supports DT_INT64 only
    on platforms with AVX-512. Falling back to the default Eigen-based implementation": noise on
    the user's terminal. Run that first transpose here, eagerly, with native stderr silenced.
    Call it after the devices are configured (it initialises TensorFlow's runtime)."""
    global _ONEDNN_NOTE_ABSORBED
    if _ONEDNN_NOTE_ABSORBED:
        return
    import tensorflow as tf

    with tf.init_scope(), quiet_native_stderr(always=True):
        tf.transpose(tf.zeros([2, 2], tf.int64)).numpy()
    _ONEDNN_NOTE_ABSORBED = True
