"""One tokenizer, really: the export's `tokenize` signature gives exactly the ids the real ingest
writes, for random and hostile raw bytes (issue 10, item 1).

A seeded generator mixes words with NUL, BOMs, invalid UTF-8 (lone continuation bytes, truncated
sequences, overlong forms, UTF-8-encoded surrogates, bytes past U+10FFFF), control, zero-width,
bidi and whitespace characters, combining marks, emoji (ZWJ sequences, flags, keycaps), CJK,
RTL scripts and case/compatibility oddities; plus a 1 MB document. The documents go through the
real `run_ingest` (a text file: one document per line, BOM at the start of the file; and a JSON
lines file for documents holding line breaks, NULs and lone surrogates), the ids are read back
from the shards, and compared, document by document, with the export's `tokenize` on the same
bytes. Each document carries a unique sentinel word, so its record is found by that word's id;
`windows_per_record` is large enough that every document is exactly one record holding all its ids.
"""

from __future__ import annotations

import json
import os
import random

import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

from conftest import decode_records

DOCUMENTS = 240
WINDOWS_PER_RECORD = 65536  # the most allowed: every document here is one record

ASCII_WORDS = "the cat sat on a mat don't it's O'Brien Hello WORLD naïve 3.14 e-mail x_y".split()
PUNCTUATION = list('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\'')
SPACES = [" ", "\t", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u1680",
          *map(chr, range(0x2000, 0x200B)), "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
CONTROLS = [chr(code) for code in [*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0)]]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u200e", "\u200f",
              "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
              "\u061c", "\ufe0e", "\ufe0f", "\U000e0041", "\u034f", "\u115f", "\u3164", "\u2061", "\u2063"]
COMBINING = ["\u0300", "\u0301", "\u0308", "\u0327", "\u0338", "\u036f", "\u0483", "\u0591", "\u05b4",
             "\u064b", "\u0651", "\u093c", "\u0e31", "\u20d0", "\u20e3", "\u1ab0", "\ufe20", "\U0001d167"]
EMOJI = ["😀", "🚀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "🇫🇷", "🇯🇵", "1\ufe0f\u20e3",
         "❤\ufe0f", "🧑🏿\u200d💻", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"]
SCRIPTS = ["中文字", "漢字", "ひらがな", "カタカナ", "한국어", "ﾊﾝｶｸ", "ＦＵＬＬ", "！？", "，。", "עברית", "שָׁלוֹם",
           "العربية", "ﻻ", "ﷺ", "हिन्दी", "ไทย", "Ελληνικά", "ΣΊΣΥΦΟΣ", "İstanbul", "ß", "ẞ", "ﬁ", "Å", "K",
           "ǅ", "ᾈ", "𝐀𝐁", "①", "½", "™", "\ufffd", "\ufffe", "\uffff", "\ue000", "\U0010ffff", "\U0001f600"]
INVALID_BYTES = [b"\x80", b"\xbf", b"\x80\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xf0\x9f",
                 b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\x9f\xbf", b"\xf0\x80\x80\xaf",
                 b"\xf0\x8f\xbf\xbf", b"\xed\xa0\x80", b"\xed\xaf\xbf", b"\xed\xb0\x80", b"\xed\xbf\xbf",
                 b"\xed\xa0\xbd\xed\xb8\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
                 b"\xfe", b"\xff", b"\xfe\xff", b"\xff\xfe", b"\xc0", b"\xe9", b"caf\xe9", b"\xe2\x28\xa1"]


def random_piece(rng: random.Random) -> bytes:
    kind = rng.choices(["word", "punct", "space", "control", "nul", "bom", "zero", "combining", "emoji",
                        "script", "invalid"], [6, 2, 3, 2, 1, 1, 2, 2, 1, 2, 2])[0]
    if kind == "word":
        word = rng.choice(ASCII_WORDS)
        return (word.upper() if rng.random() < 0.2 else word).encode()
    if kind == "combining":  # after a letter, or alone (a mark that begins a word)
        base = rng.choice(["e", "a", "", "ß", "ה", "ل", "क"])
        return (base + "".join(rng.choices(COMBINING, k=rng.randint(1, 3)))).encode()
    if kind == "invalid":
        return rng.choice(INVALID_BYTES)
    pool = {"punct": PUNCTUATION, "space": SPACES, "control": CONTROLS, "nul": ["\x00"], "bom": ["\ufeff"],
            "zero": ZERO_WIDTH, "emoji": EMOJI, "script": SCRIPTS}[kind]
    return rng.choice(pool).encode()


def random_document(rng: random.Random, sentinel: str, pieces: int) -> bytes:
    """Pieces glued together or apart (a control or an invalid byte next to a mark or a word
    tests the joins), with the sentinel word at the start, the end, or both."""
    parts = [random_piece(rng) + (b" " if rng.random() < 0.3 else b"") for _ in range(pieces)]
    body = b"".join(parts)
    where = rng.choice(["start", "end", "both"])
    return ((sentinel.encode() + b" " if where != "end" else b"") + body
            + (b" " + sentinel.encode() + b" end" if where != "start" else b" end"))


def line_safe(document: bytes) -> bytes:
    """A text-format document must hold no newline (it would start another document)."""
    return document.replace(b"\n", b"")


def megabyte_document(rng: random.Random, sentinel: str) -> bytes:
    """~1 MB of long words between hostile pieces: under WINDOWS_PER_RECORD words, so one record."""
    parts = [sentinel.encode(), b" "]
    size = 0
    while size < 1 << 20:
        letters = "".join(rng.choices("abcdefghijklmnopqrstuvwxyzé中😀", k=rng.randint(12, 28)))
        part = letters.encode() + line_safe(random_piece(rng)) + b" "
        parts.append(part)
        size += len(part)
    parts.append(b"end")
    return b"".join(parts)


def jsonl_value(rng: random.Random, sentinel: str) -> str:
    """A JSON string value with what a text line cannot hold: line breaks, NUL, lone surrogates."""
    extras = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x00", "\ud83d", "\udc00", "\ud800\ud800", "\ufeff"]
    parts = [rng.choice(extras) if rng.random() < 0.4 else random_piece(rng).decode("utf-8", "replace")
             for _ in range(rng.randint(1, 25))]
    return f"{sentinel} " + "".join(parts) + f" {sentinel} end"


def sentinel_name(index: int) -> str:
    return "sentinel" + "".join(chr(ord("a") + int(digit)) for digit in str(index))


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory):
    """(paths, [(sentinel, raw bytes as the ingest reads the document)])."""
    rng = random.Random(20240610)
    directory = tmp_path_factory.mktemp("hostile")
    documents = []
    lines = []
    for index in range(DOCUMENTS):
        sentinel = sentinel_name(index)
        document = line_safe(random_document(rng, sentinel, rng.randint(1, 40)))
        if index == 0:
            document = b"\xef\xbb\xbf" + document  # a BOM that starts the file (the reader strips it)
            documents.append((sentinel, document[3:]))
        else:
            documents.append((sentinel, document))
        lines.append(document)
    big_sentinel = sentinel_name(DOCUMENTS)
    big = megabyte_document(rng, big_sentinel)
    lines.append(big)
    documents.append((big_sentinel, big))
    text_path = directory / "hostile.txt"
    text_path.write_bytes(b"\n".join(lines) + b"\n")

    json_lines = []
    for index in range(DOCUMENTS + 1, DOCUMENTS + 1 + DOCUMENTS // 3):
        sentinel = sentinel_name(index)
        value = jsonl_value(rng, sentinel)
        has_surrogate = any(0xD800 <= ord(char) <= 0xDFFF for char in value)
        line = json.dumps({"text": value}, ensure_ascii=has_surrogate or rng.random() < 0.5)
        json_lines.append(line.encode("utf-8"))
        # what the JSON lines reader yields (json.loads pairs an escaped high and low surrogate)
        documents.append((sentinel, json.loads(line)["text"].encode("utf-8", "surrogatepass")))
    jsonl_path = directory / "hostile.jsonl"
    jsonl_path.write_bytes(b"\n".join(json_lines) + b"\n")
    return (str(text_path), str(jsonl_path)), documents


@pytest.fixture(scope="module")
def ingested_and_exported(hostile_corpus, tmp_path_factory):
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings
    from nextword.model.builder import build_model
    from nextword.model.config import ModelConfig
    from nextword.model.export import export_model

    paths, _ = hostile_corpus
    root = tmp_path_factory.mktemp("one_tokenizer")
    data_dir = str(root / "data")
    manifest = run_ingest(IngestSettings(inputs=paths, out=data_dir, vocab_size=1 << 20, context_length=2,
                                         windows_per_record=WINDOWS_PER_RECORD, shards=1, val_fraction=0.0,
                                         workers=1))
    config = ModelConfig(vocab_size=manifest.vocab_size, context_length=2, layers=1, units=2, embedding_dim=2)
    export_model(build_model(config), config, data_dir, str(root / "export"), {})
    loaded = tf.saved_model.load(str(root / "export" / "saved_model"))
    return data_dir, manifest, loaded


@pytest.mark.slow
def test_export_tokenize_equals_the_ids_the_real_ingest_wrote(hostile_corpus, ingested_and_exported):
    from nextword.tfrecords.manifest import load_vocabulary

    _, documents = hostile_corpus
    data_dir, manifest, loaded = ingested_and_exported
    vocabulary = load_vocabulary(data_dir, manifest)
    word_id = {word: index for index, word in enumerate(vocabulary)}
    paths = [os.path.join(data_dir, shard.file) for split in manifest.splits.values() for shard in split.shards]
    written = {}  # sentinel id -> the ids ingest wrote for that document
    for _, ids in decode_records(paths, manifest.layout):
        sentinels = {token for token in ids if vocabulary[token].startswith("sentinel")}
        assert len(sentinels) == 1, f"a record holds {len(sentinels)} sentinel words: documents were merged or split"
        written[sentinels.pop()] = ids
    assert len(written) == len(documents)

    tokenize = loaded.signatures["tokenize"]
    for first in range(0, len(documents), 64):
        chunk = documents[first:first + 64]
        if any(len(raw) > 100_000 for _, raw in chunk):  # the 1 MB document alone: padding is per batch
            batches = [[document] for document in chunk]
        else:
            batches = [chunk]
        for batch in batches:
            result = tokenize(prompts=tf.constant([raw for _, raw in batch]))
            for (sentinel, raw), row, length, words in zip(batch, result["ids"].numpy(), result["lengths"].numpy(),
                                                           result["words"].numpy()):
                exported = row[:length].tolist()
                ingested = written.get(word_id[sentinel])
                assert exported == ingested, (
                    f"document {sentinel} differs, raw bytes {raw[:300]!r}:\n"
                    f"export words {[word for word in words[:length]][:60]}\n"
                    f"ingest words {[vocabulary[token].encode() for token in (ingested or [])][:60]}")
    assert 1 not in {token for ids in written.values() for token in ids}  # every word made the vocabulary
    assert max(len(ids) for ids in written.values()) > 20_000  # the 1 MB document arrived whole


def test_gen_prompts_reach_the_graph_as_the_bytes_read(tmp_path):
    """`gen --prompts-file` and argv prompts: the generator hands the graph the bytes as read
    (the graph repairs them as ingest does), not a copy repaired in Python."""
    from nextword.generate.cli import read_prompts_file
    from nextword.generate.generator import prompt_bytes

    lines = [b"caf\xe9 \xff\x00nul \xed\xa0\x80", "line\u2028separator\x85inside".encode(), b"crlf\r", b"\xef\xbb\xbfbom"]
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    assert [prompt_bytes(prompt) for prompt in read_prompts_file(str(path))] == [*lines[:2], b"crlf", lines[3]]
    assert prompt_bytes(b"caf\xe9".decode("utf-8", "surrogateescape")) == b"caf\xe9"  # argv on POSIX
    assert prompt_bytes("lone \ud83d") == b"lone \xed\xa0\xbd"  # as the JSON lines reader encodes it
