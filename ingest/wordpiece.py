"""`--tokenizer wordpiece` at ingest: learn the pieces from pass 1's word counts, then count them.

Pass 1 counts words exactly as for `--tokenizer word` (`ingest.text.split_words`, the bounded-memory
`ingest.vocab.WordCounts`). The LEARNER_WORDS most frequent words (ties by word), with their counts,
and every other character of the corpus go to TF Text's WordPiece learner (pure Python), whose
vocabulary is <pad>, <unk>, the characters, then the pieces ("##" marks a piece that continues a
word, and each character is there as "##c" too: any word of them can be spelled). The windows, their split sizes and the
shard sizes are in pieces, which only exist once the vocabulary does, so pass 1 ends with one more
streaming read of the corpus that tokenizes it as pass 2 will (`encode_arguments`) and counts the
pieces of each document. Both runners use the functions here; the Beam ingest runs that piece count
as a ParDo with the vocabulary as a side input.

The learner's time grows with the number of distinct words it is given (measured on this 2-core
machine, vim's help files, 10 MB, --vocab-size 5000: see LEARNER_WORDS in ingest/text.py); the
cap keeps it bounded whatever the corpus, and a rarer word is still spelled from the pieces.
"""

from __future__ import annotations

import collections
import concurrent.futures

import numpy as np

from nextword.ingest.text import LEARNER_PARAMS, LEARNER_WORDS, RESERVED_TOKENS, UNK_ID
from nextword.ingest.vocab import WordCounts, most_frequent, varint_length
from nextword.tfrecords.manifest import SPLITS


def learner_words(counts: WordCounts) -> tuple[list[tuple[bytes, int]], list[str]]:
    """(the LEARNER_WORDS most frequent (word, count) pairs, most frequent first, ties by word;
    every character of every word, sorted), in one pass over the counts."""
    characters: set[str] = set()

    def noting_characters(pairs):
        for word, count in pairs:
            characters.update(word.decode("utf-8"))
            yield word, count

    top_words = most_frequent(noting_characters(counts.sorted_counts()), LEARNER_WORDS)
    return top_words, sorted(characters)


def learn_vocabulary(top_words: list[tuple[bytes, int]], vocab_size: int, characters: list[str] = ()) -> list[str]:
    """(word bytes, count) pairs, most frequent first, and the corpus's characters -> tokens, line
    number = id: <pad>, <unk>, then what the WordPiece learner keeps (at most ~vocab_size in all;
    more only when the characters alone, each also as "##c", outnumber it). No words: <pad>, <unk>.

    A character that none of the top words holds (names such as "Janoušek" in vim's help) is
    given to the learner as a word of its own, count 1, so that it, and so every rarer word, can
    still be spelled (the learner keeps its 1000 most frequent characters: these come last)."""
    from tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib import learn

    pairs = [(word.decode("utf-8"), count) for word, count in top_words]
    if not pairs:
        return list(RESERVED_TOKENS)
    known = set("".join(word for word, _ in pairs))
    pairs += [(character, 1) for character in sorted(characters) if character not in known]
    vocabulary = learn(pairs, vocab_size, list(RESERVED_TOKENS), max_input_tokens=-1, **LEARNER_PARAMS)
    if vocabulary[:len(RESERVED_TOKENS)] != list(RESERVED_TOKENS):  # the learner puts them first
        raise AssertionError(f"the WordPiece learner's vocabulary starts {vocabulary[:2]}, not {RESERVED_TOKENS}")
    return vocabulary


def piece_sizes(flat_ids: np.ndarray) -> dict:
    """A batch's piece ids -> {"total", "covered" (not <unk>), "varint_bytes" (of the ids in records)}."""
    flat_ids = np.asarray(flat_ids, dtype=np.int64)
    varint_bytes = int(varint_length(flat_ids).sum())
    return {"total": len(flat_ids), "covered": int((flat_ids != UNK_ID).sum()), "varint_bytes": varint_bytes}


def counted_summary(counters: dict, word_splits: dict, piece_splits: dict, sizes: dict) -> tuple[dict, dict]:
    """Pass 1's counters (documents ... from the words) and the piece counts -> (counters with
    tokens and oov_tokens in pieces, `extra` for the manifest: each split's words, which a
    per-word metric divides by)."""
    counters = dict(counters, tokens=sizes.get("total", 0), oov_tokens=sizes.get("total", 0) - sizes.get("covered", 0))
    return counters, {"words": {name: int(word_splits[name]["tokens"]) for name in SPLITS}}


def wordpiece_count_pass(settings, specs, counts: WordCounts, counters, word_splits, tokenizer, progress, keep=None):
    """The rest of the local runner's pass 1 for wordpiece, after the words are counted:
    -> (vocabulary, per-split documents/tokens/windows in pieces, counters, extra, shard counts)."""
    from nextword.ingest.splits import refuse_empty, shard_counts_for_size

    if counts.total == 0:
        refuse_empty(settings, specs, counters, word_splits)  # no word at all: says why, as for words
    top_words, characters = learner_words(counts)
    vocabulary = learn_vocabulary(top_words, settings.vocab_size, characters)
    counts.close()  # removes the spilled runs before the corpus is read again
    piece_splits, sizes = count_pieces(settings, specs, vocabulary, tokenizer, progress, counters["documents"], keep)
    refuse_empty(settings, specs, counters, piece_splits)
    counters, extra = counted_summary(counters, word_splits, piece_splits, sizes)
    shard_counts = shard_counts_for_size(settings, sizes["varint_bytes"], sizes["total"], piece_splits)
    return vocabulary, piece_splits, counters, extra, shard_counts


def count_pieces(settings, specs, vocabulary: list[str], tokenizer, progress, documents: int,
                 keep=None) -> tuple[dict, dict]:
    """Read the corpus again, tokenized as pass 2 will: per split documents/tokens/windows in
    pieces, and `piece_sizes` summed over the corpus (over the documents `keep` keeps: --dedup)."""
    from nextword.ingest.splits import add_split_totals
    from nextword.ingest.tokenizing import encode_arguments, in_order
    from nextword.ingest.sources import iter_documents

    tokenizer.use_vocabulary(vocabulary, "wordpiece")
    per_split = {name: collections.Counter() for name in SPLITS}
    sizes: collections.Counter = collections.Counter()
    done = 0

    def tokenize(batch):  # in a thread: TensorFlow ops release the GIL
        return encode_arguments(tokenizer, None, batch.texts, settings.val_fraction)

    batches = (batch for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes, keep=keep)
               if batch.texts)
    with concurrent.futures.ThreadPoolExecutor(settings.workers) as threads:
        for _, flat_ids, lengths, _, validation in in_order(threads, tokenize, batches, depth=settings.workers):
            add_split_totals(per_split, lengths, validation, settings.stride)
            sizes.update(piece_sizes(flat_ids))
            done += len(lengths)
            progress("counting pieces", done, documents, 0)
    return {name: dict(value) for name, value in per_split.items()}, dict(sizes)
