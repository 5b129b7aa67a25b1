#!/usr/bin/env python3
"""The seed notebook's recipe, as close to its cells as a script can be (bench/run runs it in a subprocess).

    python bench/notebook_recipe.py ingest CORPUS.txt --vocab-size 20000 --context 44
        pandas reads the corpus, lowercases it, `text_to_word_sequence`, Keras `Tokenizer(num_words=...)`
        fit + `texts_to_sequences`, then EVERY sliding window built in RAM and `keras.utils.pad_sequences`
        (the notebook's "all windows" variant that ran out of memory; keras_preprocessing's pad_sequences
        breaks on numpy 2). Prints one JSON line: windows, seconds per stage, bytes per window of the
        notebook's CSV of padded windows (written for a sample, as the notebook's `to_csv` cell).

    python bench/notebook_recipe.py fit DATA_DIR --batch-size 512 --repeats 3
        The notebook's model (Embedding 8, 3 x Bidirectional LSTM 50, Flatten, Dense softmax,
        rmsprop, categorical cross-entropy) and `model.fit` on numpy arrays with one-hot targets
        (`to_categorical`), on the train windows of a nextword DATA_DIR. Prints steady-state windows/s.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import string
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def notebook_ingest(corpus: str, vocab_size: int, context_length: int, csv_sample: int) -> dict:
    import numpy as np
    import pandas as pd
    # Keras 3 keeps the notebook's Tokenizer (keras.preprocessing.text in Keras 2) only here.
    from keras.src.legacy.preprocessing.text import Tokenizer, text_to_word_sequence
    from keras.utils import pad_sequences

    stages, started = {}, time.perf_counter()
    # One document per line; the notebook read a CSV column. No quoting: a line is a document.
    train_text = pd.read_csv(corpus, header=None, names=["text"], sep="\t", quoting=csv.QUOTE_NONE,
                             dtype=str, keep_default_na=False)
    raw_text = train_text["text"].dropna()
    raw_text = raw_text.apply(lambda x: x.replace("[{}]".format(string.punctuation), "").lower())
    sentences = [text_to_word_sequence(sentence) for sentence in raw_text]
    stages["read_and_split_s"] = time.perf_counter() - started
    tokenizer = Tokenizer(num_words=vocab_size)
    tokenizer.fit_on_texts(sentences)
    tokenized_sentences = tokenizer.texts_to_sequences(sentences)
    stages["tokenizer_s"] = time.perf_counter() - started - sum(stages.values())
    # Every window: context = the previous <= context_length ids, target = the id at i.
    windows = [sequence[max(0, i - context_length):i + 1]
               for sequence in tokenized_sentences for i in range(1, len(sequence))]
    stages["windows_s"] = time.perf_counter() - started - sum(stages.values())
    padded = pad_sequences(windows, maxlen=context_length + 1, padding="pre")
    stages["pad_s"] = time.perf_counter() - started - sum(stages.values())
    seconds = time.perf_counter() - started
    # The notebook saved padded windows with DataFrame.to_csv; measure its bytes per window on a sample.
    sample = padded[: min(csv_sample, len(padded))]
    buffer = io.StringIO()
    pd.DataFrame(sample).to_csv(buffer, header=False, index=False)
    csv_bytes_per_window = len(buffer.getvalue().encode()) / max(len(sample), 1)
    return {"windows": int(len(padded)), "seconds": seconds, **stages,
            "array_bytes_per_window": padded.nbytes / max(len(padded), 1),
            "csv_bytes_per_window": csv_bytes_per_window, "dtype": str(np.asarray(padded).dtype)}


def train_arrays(data_dir: str, limit: int | None = None):
    """The train split's windows as numpy (X int32[N, C], last-word targets int32[N])."""
    import numpy as np

    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(data_dir)
    config = ReaderConfig(batch_size=4096, objective="last", training=False)
    contexts, targets = [], []
    for context, target, _ in make_dataset(data_dir, "train", config, manifest=manifest):
        contexts.append(context.numpy())
        targets.append(target.numpy())
    x, y = np.concatenate(contexts), np.concatenate(targets)
    return (x[:limit], y[:limit], manifest.vocab_size) if limit else (x, y, manifest.vocab_size)


def notebook_model(vocab_size: int, context_length: int, units: int = 50, embedding_dim: int = 8):
    from keras.layers import LSTM, Bidirectional, Dense, Embedding, Flatten, Input
    from keras.models import Sequential

    model = Sequential()
    model.add(Input(shape=(context_length,)))
    model.add(Embedding(input_dim=vocab_size, output_dim=embedding_dim))
    model.add(Bidirectional(LSTM(units, return_sequences=True)))
    model.add(Bidirectional(LSTM(units, return_sequences=True)))
    model.add(Bidirectional(LSTM(units)))
    model.add(Flatten())
    model.add(Dense(vocab_size, activation="softmax"))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
    return model


def notebook_fit(data_dir: str, batch_size: int, repeats: int, windows: int | None) -> dict:
    import keras.utils as ku

    x_t, targets, vocab_size = train_arrays(data_dir, windows)
    y_t = ku.to_categorical(targets.reshape(-1, 1), num_classes=vocab_size)
    model = notebook_model(vocab_size, x_t.shape[1])
    warm = min(len(x_t), 4 * batch_size)
    model.fit(x_t[:warm], y_t[:warm], batch_size=batch_size, epochs=1, verbose=0)  # trace + compile
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(x_t, y_t, batch_size=batch_size, epochs=1, verbose=0)
        rates.append(len(x_t) / (time.perf_counter() - started))
    return {"windows": int(len(x_t)), "batch_size": batch_size, "windows_per_second_runs": rates,
            "onehot_bytes": int(y_t.nbytes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest")
    ingest.add_argument("corpus")
    ingest.add_argument("--vocab-size", type=int, default=20000)
    ingest.add_argument("--context", type=int, default=44)
    ingest.add_argument("--csv-sample", type=int, default=20000)
    fit = commands.add_parser("fit")
    fit.add_argument("data_dir")
    fit.add_argument("--batch-size", type=int, default=512)
    fit.add_argument("--repeats", type=int, default=3)
    fit.add_argument("--windows", type=int, default=None)
    arguments = parser.parse_args()
    if arguments.command == "ingest":
        result = notebook_ingest(arguments.corpus, arguments.vocab_size, arguments.context, arguments.csv_sample)
    else:
        result = notebook_fit(arguments.data_dir, arguments.batch_size, arguments.repeats, arguments.windows)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
