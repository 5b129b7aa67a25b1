"""Imported once by the forkserver of the ingest's worker processes (ingest/worker_pool.py):
TensorFlow, TF Text and the tokenizer's modules load here, before any op runs, and are frozen out
of the garbage collector, so every worker forked from it shares these pages instead of importing
them again (~0.27 GB of private memory a worker)."""

import gc
import importlib
import os

from nextword.ingest.heap import limit_malloc_arenas
from nextword.ingest.worker_pool import die_with_parent
from nextword.quiet import quiet_native_stderr

die_with_parent()  # the main process's kill -9 takes the forkserver with it (and the workers with that)
limit_malloc_arenas()  # before TensorFlow starts a thread: the workers forked from here inherit the cap
# The workers run string ops only, never a oneDNN kernel; with oneDNN on, TensorFlow's CPU allocator is
# oneDNN's pool, which keeps what a worker's largest batch needed for good (--dedup exact, 2 workers:
# 191-215 MB private a worker with it, 140-159 without; bench/RESULTS.md, issue 22).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

with quiet_native_stderr():  # TensorFlow's C++ start-up lines stay off the user's terminal
    for name in ("tensorflow", "tensorflow_text", "nextword.ingest.text", "nextword.ingest.tokenizing",
                 "nextword.ingest.worker_pool", "nextword.ingest.writer", "nextword.ingest.text_blocks"):
        importlib.import_module(name)

gc.collect()
gc.freeze()
