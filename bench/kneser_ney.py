#!/usr/bin/env python3
"""The interpolated modified Kneser-Ney n-gram baseline (model/ngram.py) of a DATA_DIR: counted on
its train windows, scored on its val windows as `nextword eval` scores a model.

    python bench/kneser_ney.py DATA_DIR [--order 5] [--json] [--no-cache] [--cache-dir DIR]

The figures are cached in bench/work/kneser-ney by the dataset's fingerprint (--no-cache recounts
and writes nothing). Benchmarks run it through bench/arms.py `five_gram`, in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.path.join(BENCH, "work", "kneser-ney")

if os.path.dirname(BENCH) not in sys.path:
    sys.path.insert(1, os.path.dirname(BENCH))  # the repository, for model, tfrecords and nextword

from nextword.model import ngram  # noqa: E402 - numpy only: TensorFlow comes with the first dataset read


def baseline(data_dir: str, order: int = 5, cache_dir: str | None = CACHE_DIR) -> dict:
    """model.ngram.baseline, cached in bench/work/kneser-ney unless cache_dir says otherwise (None: no cache)."""
    return ngram.baseline(data_dir, order, cache_dir)


def main(argv: list[str] | None = None) -> int:
    from nextword.errors import NextwordError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--no-cache", action="store_true", help="recount, and write no cache")
    parser.add_argument("--cache-dir", default=CACHE_DIR, help=f"where the figures are cached (default {CACHE_DIR})")
    arguments = parser.parse_args(argv)
    if arguments.order < 1:
        parser.error(f"--order must be at least 1, got {arguments.order}")
    try:
        result = baseline(arguments.data_dir, arguments.order, None if arguments.no_cache else arguments.cache_dir)
    except NextwordError as error:
        print(f"error: {error}")
        return error.exit_code
    print(json.dumps(result) if arguments.json else ngram.summary_line(result, arguments.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
