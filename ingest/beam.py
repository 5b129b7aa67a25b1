"""run_beam_ingest: the same ingest as `run_ingest`, as two Apache Beam pipelines.

Same readers (`ingest.sources`), the same TF Text tokenizer, the same vocabulary rule (most
frequent words, ties by word), the same windows and seeded shard hash (`ingest.windows.
encode_block`) and the same `dataset.json`. Shards come out byte-identical to the local
ingest's: each shard's pieces are written in document order.

    pass 1 (count):  files -> document batches -> Reshuffle -> tokenize, count
                       word counts: CombinePerKey(sum) -> Top(vocab_size - 2) = vocabulary
                       counters, split sizes: CombineGlobally(sum)      -> .partial/pass1.json
                     --tokenizer wordpiece: word counts -> Top(LEARNER_WORDS) + their characters -> the
                       learner = vocabulary;
                       batches -> CountPieces (vocabulary as side input) -> CombineGlobally(sum) = the
                       split sizes in pieces (see ingest/wordpiece.py)
                     --vocab-from: no vocabulary to count or learn; batches -> CountWithVocabulary (the
                       reused vocabulary as side input; the local runner's `count_batch`) -> counters and
                       split sizes in ids: CombineGlobally(sum)
    driver:          vocabulary + shard counts -> vocab.txt (as the local ingest)
    pass 2 (write):  files -> document batches -> Reshuffle -> ids -> encode_block
                       -> GroupByKey((split, shard)) -> pieces in document order -> order_shard
                       -> one shard file each (the local runner's bytes) -> .partial/pass2.json
    driver:          empty shards, checks against pass 1, rename shards, dataset.json last

--dedup and the leakage report run in the driver, by the local runner's own functions (a pass that
finds the duplicates before pass 1, whose bits the workers' readers then apply; a pass over the kept
documents for the leakage report after pass 2): correct and byte-identical, bounded in memory, but
not spread over workers (yet).

A worker reads whole input files (the readers stream one file in order), so reading
parallelises over files; tokenizing and encoding parallelise over document batches.
Workers write through `tf.io.gfile`, so DATA_DIR may be a URL the workers can reach.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Sequence

from nextword.ingest.output_dir import check_output_dir
from nextword.ingest.pipeline import IngestSession, Progress, build_manifest, no_progress, prepare, window_plan
from nextword.ingest.splits import summary_from_totals
from nextword.ingest.windows import WindowPlan
from nextword.ingest.settings import IngestSettings, fingerprint_of
from nextword.ingest.sources import InputSpec
from nextword.ingest.text import RESERVED_TOKENS
from nextword.ingest.vocab_source import VocabSource
from nextword.ingest.vocab import vocabulary_bytes
from nextword.ingest.writer import PARTIAL_SUFFIX, STATE_DIR, publish, read_state
from nextword import storage
from nextword.errors import ArtifactError, InputError, NextwordError, SettingsError
from nextword.tfrecords.manifest import MANIFEST_NAME, SPLITS, VOCAB_NAME, Manifest, Shard, shard_name

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _beam():
    """apache_beam, or a SettingsError saying how to install it."""
    try:
        import apache_beam
    except ImportError:
        raise SettingsError("--runner beam needs Apache Beam, which is not installed",
                            hint="pip install 'nextword[beam]'  (apache-beam[tfrecord]==2.77.0)") from None
    return apache_beam


# ------------------------------------------------------------------ options

def pipeline_flags(settings: IngestSettings, beam_options: Sequence[str]) -> list[str]:
    """`--beam-option K=V` (or a bare K for a switch) -> Beam's `--K=V` flags.

    Without a runner: DirectRunner with `settings.workers` processes (multi_processing).
    """
    flags, given = [], set()
    for option in beam_options:
        key, _, value = option.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise SettingsError(f"--beam-option expects KEY=VALUE, got {option!r}",
                                hint="e.g. --beam-option runner=FlinkRunner --beam-option direct_num_workers=4")
        given.add(key)
        flags.append(f"--{key}={value}" if "=" in option else f"--{key}")
    runner = next((flag.split("=", 1)[1] for flag in flags if flag.startswith("--runner=")), "DirectRunner")
    if "runner" not in given:
        flags.append(f"--runner={runner}")
    if runner in ("DirectRunner", "direct"):
        if "direct_num_workers" not in given:
            flags.append(f"--direct_num_workers={settings.workers}")
        if "direct_running_mode" not in given:
            flags.append(f"--direct_running_mode={'multi_processing' if settings.workers > 1 else 'in_memory'}")
        if "default_sdk_harness_log_level" not in given:
            # Local worker processes would print INFO lines, and every worker error twice (with its
            # traceback) before the driver re-raises it: the driver's error says it once.
            flags.append("--default_sdk_harness_log_level=CRITICAL")
    return flags


# ------------------------------------------------------------------ the two pipelines

def _count_pipeline(beam, flags: list[str], settings: IngestSettings, specs: list[InputSpec],
                    source: VocabSource | None = None, kept: tuple = ()) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from nextword.ingest.beam_transforms import (CountPieces, CountWithVocabulary, CountWords, coverage, read_batches,
                                                 sum_dicts, vocabulary_of)

    with beam.Pipeline(options=PipelineOptions(flags)) as pipeline:
        batches = (pipeline | "Inputs" >> beam.Create(list(enumerate(specs)))
                   | "Read" >> beam.FlatMap(read_batches, settings.on_error, settings.batch_bytes, *kept)
                   | "Spread" >> beam.Reshuffle())
        if source is not None:
            vocabulary = pipeline | "Reused" >> beam.Create([list(source.tokens)])
            counted = batches | "Count" >> beam.ParDo(
                CountWithVocabulary(settings.stride, settings.val_fraction, settings.tokenizer),
                beam.pvalue.AsSingleton(vocabulary)).with_outputs("sizes", main="counters")
            sizes = counted.sizes | "SumSizes" >> beam.CombineGlobally(sum_dicts)
            _save_summary(beam, pipeline, settings, vocabulary, sizes, counted.counters)
            return
        counted = batches | "Count" >> beam.ParDo(CountWords(settings.stride, settings.val_fraction)).with_outputs(
            "words", main="counters")
        word_counts = counted.words | "SumWords" >> beam.CombinePerKey(sum)
        if settings.tokenizer == "wordpiece":  # the pieces, learned from the top words, then counted
            from nextword.ingest.text import LEARNER_WORDS
            from nextword.ingest.wordpiece import learn_vocabulary

            characters = (word_counts
                          | "Characters" >> beam.FlatMap(lambda item: set(item[0].decode("utf-8")))
                          | "Alphabet" >> beam.Distinct() | "AllCharacters" >> beam.combiners.ToList())
            vocabulary = (word_counts
                          | "TopWords" >> beam.combiners.Top.Of(LEARNER_WORDS, key=lambda item: (-item[1], item[0]),
                                                                reverse=True)
                          | "Learn" >> beam.Map(learn_vocabulary, settings.vocab_size, beam.pvalue.AsSingleton(characters)))
            sizes = (batches
                     | "CountPieces" >> beam.ParDo(CountPieces(settings.stride, settings.val_fraction),
                                                   beam.pvalue.AsSingleton(vocabulary))
                     | "SumPieces" >> beam.CombineGlobally(sum_dicts))
        else:
            vocabulary = (word_counts
                          | "TopWords" >> beam.combiners.Top.Of(settings.vocab_size - len(RESERVED_TOKENS),
                                                                key=lambda item: (-item[1], item[0]), reverse=True)
                          | "Vocabulary" >> beam.Map(vocabulary_of))
            sizes = (word_counts
                     | "Coverage" >> beam.Map(coverage, beam.pvalue.AsSingleton(vocabulary))
                     | "SumCoverage" >> beam.CombineGlobally(sum_dicts))
        _save_summary(beam, pipeline, settings, vocabulary, sizes, counted.counters)


def _save_summary(beam, pipeline, settings: IngestSettings, vocabulary, sizes, counters) -> None:
    """The vocabulary, summed sizes and the counters (summed here) -> .partial/beam-pass1.json."""
    from nextword.ingest.beam_transforms import save_state, sum_dicts

    counters = counters | "SumCounters" >> beam.CombineGlobally(sum_dicts)
    (pipeline | "One" >> beam.Create([None])
     | "Summary" >> beam.Map(lambda _, words, size, total: {"vocabulary": words, "sizes": size, "counters": total},
                             beam.pvalue.AsSingleton(vocabulary), beam.pvalue.AsSingleton(sizes),
                             beam.pvalue.AsSingleton(counters))
     | "Save" >> beam.Map(save_state, settings.out, "beam-pass1.json"))


def _write_pipeline(beam, flags: list[str], settings: IngestSettings, specs: list[InputSpec], plan: WindowPlan,
                    kept: tuple = ()) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from nextword.ingest.beam_transforms import EncodeWindows, read_batches, save_state, write_shard

    with beam.Pipeline(options=PipelineOptions(flags)) as pipeline:
        (pipeline | "Inputs" >> beam.Create(list(enumerate(specs)))
         | "Read" >> beam.FlatMap(read_batches, settings.on_error, settings.batch_bytes, *kept)
         | "Spread" >> beam.Reshuffle()
         | "Encode" >> beam.ParDo(EncodeWindows(settings.out, plan, settings.val_fraction, settings.tokenizer))
         | "ByShard" >> beam.GroupByKey()
         | "Write" >> beam.Map(write_shard, settings.out, plan)
         | "All" >> beam.combiners.ToList()
         | "Save" >> beam.Map(save_state, settings.out, "beam-pass2.json"))


def _run(pipeline_function, *arguments) -> None:
    """Run one pipeline; a NextwordError raised on a worker comes back as itself (no traceback)."""
    beam_logger = logging.getLogger("apache_beam")
    level = beam_logger.level
    beam_logger.setLevel(logging.CRITICAL)  # its runner logs each worker error (traceback included) before raising it
    try:
        pipeline_function(*arguments)
    except Exception as error:  # Beam re-raises worker errors annotated, or wrapped in its own types
        raise _worker_error(error) from None
    finally:
        beam_logger.setLevel(level)


_KINDS = {"InputError": InputError, "ArtifactError": ArtifactError, "SettingsError": SettingsError}


def _worker_error(error: Exception) -> Exception:
    """The NextwordError inside Beam's error (same class, message and hint), else the error itself."""
    text = str(error)
    if isinstance(error, NextwordError):
        kind = type(error)
    else:
        found = re.search(r"\b(InputError|ArtifactError|SettingsError): ", text)
        if found is None:
            return error
        kind, text = _KINDS[found.group(1)], text[found.end():]
    message, _, hint = text.partition("\n  → ")  # how NextwordError prints its hint
    return kind(_one_line(message), hint=_one_line(hint) or None)


def _one_line(text: str) -> str:
    """Up to Beam's " [while running 'Step']" annotation or the end of the line."""
    return re.split(r" \[while running |\n", text, maxsplit=1)[0].strip()


# ------------------------------------------------------------------ driver

def run_beam_ingest(settings: IngestSettings, beam_options: Sequence[str] = (),
                    progress: Progress = no_progress, session: IngestSession | None = None) -> Manifest:
    """The ingest as Beam pipelines (see the module docstring); returns the manifest written.
    It does not resume: a rerun after an interruption runs both pipelines again."""
    beam = _beam()
    settings, specs, source, identity = prepare(settings, session)
    flags = pipeline_flags(settings, beam_options)
    fingerprint = fingerprint_of(identity)
    finished = check_output_dir(settings, specs, identity, session)
    if finished is not None:
        return finished
    storage.makedirs(settings.out)
    removed, kept, tokenizer = None, (), None
    if settings.dedup != "none":  # found in the driver, by the local runner's code: see the module docstring
        from nextword.ingest.dedup_pass import REMOVED_STATE, dedup_pass
        from nextword.ingest.tokenizing import BatchTokenizer

        tokenizer = BatchTokenizer()
        removed, dedup, offsets = dedup_pass(settings, specs, tokenizer, progress)
        kept = (storage.join(settings.out, STATE_DIR, REMOVED_STATE), offsets)
    progress("counting words", 0, None, 0)
    _run(_count_pipeline, beam, flags, settings, specs, source, kept)
    state = read_state(settings.out, "beam-pass1.json")
    if removed is not None and state is not None:  # `documents` counts every document read
        state["counters"]["documents"] = state["counters"].get("documents", 0) + removed.total
    summary = _pass1_summary(settings, specs, fingerprint, state)
    if removed is not None:
        summary["extra"]["dedup"] = dedup
    documents = summary["counters"]["documents"]
    progress("counting words", documents, documents, 0)
    plan = window_plan(settings, summary["shard_counts"])
    _run(_write_pipeline, beam, flags, settings, specs, plan, kept)
    shards = _collect_shards(settings.out, plan, read_state(settings.out, "beam-pass2.json") or [])
    from nextword.ingest.dedup_pass import leakage_pass  # in the driver, as the duplicates
    from nextword.ingest.tokenizing import BatchTokenizer

    summary["extra"]["leakage"] = leakage_pass(settings, specs, summary["vocabulary"], tokenizer or BatchTokenizer(),
                                               summary["splits"]["train"]["tokens"], removed)
    progress("writing windows", documents, documents, sum(shard.windows for split in shards for shard in split))
    manifest = build_manifest(settings, specs, fingerprint, summary, shards, identity, source)
    publish(settings.out, [shard.file for split in shards for shard in split])
    storage.write_atomic(storage.join(settings.out, MANIFEST_NAME), manifest.to_json())
    storage.remove(storage.join(settings.out, STATE_DIR))
    return manifest


def _pass1_summary(settings: IngestSettings, specs, fingerprint: str, state: dict | None) -> dict:
    """Pass 1's Beam output -> the summary the local ingest keeps (and vocab.txt, written here)."""
    if state is None:
        raise ArtifactError("the Beam counting pipeline finished without writing its summary",
                            hint="check the runner's logs; the workers must be able to write to --out")
    summary = summary_from_totals(settings, specs, state["counters"], state["sizes"], state["vocabulary"])
    data, _ = vocabulary_bytes(summary["vocabulary"])
    storage.write_atomic(storage.join(settings.out, VOCAB_NAME), data)
    return dict(fingerprint=fingerprint, **summary)


def _collect_shards(data_dir: str, plan: WindowPlan, written: list[dict]) -> list[list[Shard]]:
    """Every shard of the plan; one that got no window is written empty (as the local ingest does)."""
    found = {(entry["split"], entry["index"]): entry for entry in written}
    shards = []
    for split, count in enumerate(plan.shard_counts):
        split_shards = []
        for index in range(count):
            entry = found.get((split, index))
            if entry is None:
                name = shard_name(SPLITS[split], index, count)
                storage.write_atomic(storage.join(data_dir, name + PARTIAL_SUFFIX), b"")
                entry = {"file": name, "records": 0, "bytes": 0, "sha256": _EMPTY_SHA256, "windows": 0,
                         "record_windows": []}
            split_shards.append(Shard(file=entry["file"], records=entry["records"], bytes=entry["bytes"],
                                      sha256=entry["sha256"], windows=entry["windows"],
                                      record_windows=tuple(map(tuple, entry["record_windows"]))))
        shards.append(split_shards)
    return shards
