"""An interpolated Kneser-Ney n-gram model: the baseline every recipe has to beat.

Counted from the train split's windows and scored on the val split's windows exactly as
`nextword eval` scores a model: the final word of each window given the words before it
(pre-padding id 0 stands for "before the document starts"), `<unk>` an ordinary class, pad
targets not scored, the distribution over the whole vocabulary (ids 0..V-1). With stride 1
every token of a train document after the first is the final word of one window, so counting
the windows' final n-grams counts every n-gram of the train documents.

Interpolated Kneser-Ney (Chen & Goodman 1998), one discount per order D = n1 / (n1 + 2 n2):

    P_N(w | h) = max(c(h w) - D, 0) / c(h .)  +  D N1+(h .) / c(h .) * P_{N-1}(w | h')
    lower orders the same with continuation counts N1+(. h w) in place of c(h w),
    P_0(w) = 1 / V, and an unseen context h backs off whole: P_n(w | h) = P_{n-1}(w | h').

Pure numpy and Python dictionaries: no TensorFlow here (the loader below imports the reader).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict

import numpy as np


def discount(counts: Counter) -> float:
    """D = n1 / (n1 + 2 n2) from the counts' count-of-counts (0.5 when it cannot be estimated)."""
    n1 = sum(1 for value in counts.values() if value == 1)
    n2 = sum(1 for value in counts.values() if value == 2)
    return n1 / (n1 + 2 * n2) if n1 + 2 * n2 else 0.5


class KneserNey:
    """fit(contexts int[n, order-1], targets int[n]) then probabilities / score."""

    def __init__(self, vocab_size: int, order: int = 5):
        self.vocab_size, self.order = vocab_size, order

    def fit(self, contexts: np.ndarray, targets: np.ndarray) -> "KneserNey":
        rows = np.concatenate([contexts[:, -(self.order - 1):] if self.order > 1 else contexts[:, :0],
                               targets[:, None]], axis=1)
        highest = Counter(map(tuple, rows.tolist()))
        # counts[n]: n-gram (tuple of n ids) -> count; raw for the highest order, continuation below
        self.counts = {self.order: highest}
        for n in range(self.order - 1, 0, -1):
            self.counts[n] = Counter(gram[1:] for gram in self.counts[n + 1])  # distinct left extensions
        self.discounts, self.tables = {}, {}
        for n, counts in self.counts.items():
            # per context: (total, distinct continuations, {word: count})
            table: dict[tuple, list] = defaultdict(lambda: [0, 0, {}])
            for gram, count in counts.items():
                entry = table[gram[:-1]]
                entry[0] += count
                entry[1] += 1
                entry[2][gram[-1]] = count
            self.tables[n], self.discounts[n] = dict(table), discount(counts)
        return self

    def probabilities(self, context: tuple) -> np.ndarray:
        """float64[V]: P(. | the last order-1 ids of context)."""
        distribution = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for n in range(1, self.order + 1):
            history = tuple(context[len(context) - (n - 1):]) if n > 1 else ()
            entry = self.tables[n].get(history)
            if entry is None:  # unseen context: the lower order's distribution, whole
                continue
            total, distinct, words = entry
            d = self.discounts[n]
            distribution = distribution * (d * distinct / total)
            ids = np.fromiter(words.keys(), np.int64, len(words))
            distribution[ids] += np.maximum(np.fromiter(words.values(), np.float64, len(words)) - d, 0.0) / total
        return distribution

    def score(self, contexts: np.ndarray, targets: np.ndarray) -> dict:
        """{"loss", "perplexity", "top1", "top5", "windows"} over the events whose target is not pad 0."""
        nll = top1 = top5 = windows = 0
        width = self.order - 1
        for context, target in zip(contexts[:, contexts.shape[1] - width:].tolist(), targets.tolist()):
            if target == 0:
                continue
            distribution = self.probabilities(tuple(context))
            nll -= math.log(distribution[target])
            best = np.argpartition(-distribution, 5)[:5]
            top5 += int(target in best)
            top1 += int(int(np.argmax(distribution)) == target)
            windows += 1
        loss = nll / max(windows, 1)
        return {"loss": loss, "perplexity": math.exp(loss), "top1": top1 / max(windows, 1),
                "top5": top5 / max(windows, 1), "windows": windows}


def events(data_dir: str, split: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(contexts int32[n, width], targets int32[n]): the split's windows as `nextword eval` reads them."""
    from tfrecords.reader import ReaderConfig, make_dataset

    contexts, targets = [], []
    for context, target, _ in make_dataset(data_dir, split, ReaderConfig(batch_size=4096, objective="last", training=False)):
        contexts.append(context.numpy()[:, context.shape[1] - width:])
        targets.append(target.numpy())
    return np.concatenate(contexts), np.concatenate(targets)


def baseline(data_dir: str, order: int = 5) -> dict:
    """Count on the train split, score the val split: the metrics plus "order", "seconds"."""
    from tfrecords.manifest import load_manifest

    started = time.monotonic()
    manifest = load_manifest(data_dir)
    model = KneserNey(manifest.vocab_size, order).fit(*events(data_dir, "train", order - 1))
    result = model.score(*events(data_dir, "val", order - 1))
    return {**result, "order": order, "seconds": round(time.monotonic() - started, 1)}
