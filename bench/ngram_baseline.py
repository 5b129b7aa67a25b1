#!/usr/bin/env python3
"""The Kneser-Ney n-gram baseline (model/ngram.py) of a DATA_DIR: counted on its train windows,
scored on its val windows as `nextword eval` scores a model.

    python bench/ngram_baseline.py DATA_DIR [--order 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--order", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    from model.ngram import baseline

    result = baseline(arguments.data_dir, arguments.order)
    if arguments.json:
        print(json.dumps(result))
    else:
        print(f"{arguments.order}-gram Kneser-Ney on {arguments.data_dir}: perplexity {result['perplexity']:.2f}  "
              f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  ({result['windows']:,} val windows, "
              f"{result['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
