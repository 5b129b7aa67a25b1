"""`gen` as people use generators (issue 24): words printed as they are generated, stop strings and
sentence ends at word boundaries that stop the drawing early, the fallback for exports written before
streaming, and the interactive session `gen -i` through a pipe and a pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest

from nextword.generate import cli as gen_cli
from nextword.generate.generator import STREAM_CHUNK_STEPS, GenerateSettings, Generator
from nextword.generate.stopping import words_to_keep
from nextword.model.export import export_model
from test_export_fixtures import WORDS, model_config_for, random_model, tiny_data_dir, write_data_dir  # noqa: F401
from test_gen_cli import run_gen
from test_wordpiece_export import export_dirs, wordpiece_dir  # noqa: F401
from nextword.tfrecords.manifest import join_pieces


@pytest.fixture(scope="module")
def export_dir(tiny_data_dir, tmp_path_factory):  # noqa: F811
    directory = str(tmp_path_factory.mktemp("stream") / "export")
    config = model_config_for(tiny_data_dir, layers=1)
    export_model(random_model(config, seed=3), config, tiny_data_dir, directory, {"steps": 0})
    return directory


@pytest.fixture(scope="module")
def generator(export_dir) -> Generator:
    return Generator.load(export_dir)


@pytest.fixture
def loaded_once(generator, monkeypatch):
    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, model_dir, compiled=False: generator))
    return generator


class OldLoaded:
    """An export as written before streaming: the same graph without the chunked signatures."""

    def __init__(self, loaded):
        self.signatures = {name: function for name, function in loaded.signatures.items()
                           if name not in ("generate_start", "generate_continue")}


def words_of(generator, prompt="the cat", **settings) -> list[str]:
    samples, _ = generator.generate([prompt], GenerateSettings(**settings))
    return samples[0].text.split(" ")


# ---- streaming -------------------------------------------------------------------------------
def test_words_reach_stdout_before_the_generation_ends(export_dir, loaded_once, capsys, monkeypatch):
    events = []
    original = loaded_once._continue
    monkeypatch.setattr(loaded_once, "_continue", lambda **kwargs: events.append("call") or original(**kwargs))

    class Recorder(io.StringIO):
        def write(self, text):
            if text.strip():
                events.append("word")
            return super().write(text)

    recorder, captured_stdout = Recorder(), sys.stdout
    monkeypatch.setattr(sys, "stdout", recorder)
    monkeypatch.setattr(sys, "argv", ["gen", export_dir, "the cat", "--words", "40", "--seed", "2", "--stream"])
    with pytest.raises(SystemExit) as exit_:
        gen_cli.main()
    assert exit_.value.code in (0, None) and events.count("call") >= 3
    assert events.index("word") < len(events) - 1 - events[::-1].index("call")  # a word before the last call
    monkeypatch.setattr(sys, "stdout", captured_stdout)
    assert recorder.getvalue() == run_gen([export_dir, "the cat", "--words", "40", "--seed", "2", "--no-stream"],
                                          capsys, monkeypatch)[1]


@pytest.mark.parametrize("extra", [["--num-samples", "3"], ["--greedy"], ["--top-k", "3", "--no-repeat-ngram", "2"]])
def test_streamed_output_equals_the_unstreamed(export_dir, loaded_once, capsys, monkeypatch, extra):
    base = [export_dir, "the cat", "a b", "", "--words", "17", "--seed", "5", *extra]
    streamed = run_gen([*base, "--stream"], capsys, monkeypatch)[1]
    assert streamed == run_gen([*base, "--no-stream"], capsys, monkeypatch)[1]
    assert len(streamed.splitlines()) == 3 * (3 if "--num-samples" in extra else 1)


def test_an_export_without_streaming_is_generated_whole_and_said_once(export_dir, generator, capsys, monkeypatch):
    old = Generator(generator.export_dir, generator.card, OldLoaded(generator.loaded))
    assert not old.can_stream
    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, model_dir, compiled=False: old))
    args = [export_dir, "the cat", "a b", "--words", "9", "--seed", "4"]
    code, out, err = run_gen([*args, "--stream"], capsys, monkeypatch)
    assert code == 0 and err.count("written before streaming") == 1
    code, unstreamed, err = run_gen([*args, "--no-stream"], capsys, monkeypatch)
    assert out == unstreamed and "streaming" not in err
    words = unstreamed.splitlines()[0].split()
    cut = next(index for index in range(3, len(words)) if words[index] not in words[2:index])  # its first time
    code, stopped, _ = run_gen([*args, "--stop", words[cut], "--no-stream"], capsys, monkeypatch)
    assert stopped.splitlines()[0] == " ".join(words[: cut + 1])  # stop strings work, by cutting


# ---- stop conditions ---------------------------------------------------------------------------
@pytest.mark.parametrize("words, new_from, stop, expected", [
    (["the", "cat", "sat"], 0, ("cat",), 2),
    (["the", "café", "sat"], 0, ("ca",), 2),  # inside a word: the word is finished
    (["the", "cat", "sat", "on"], 2, ("cat sat",), 3),  # across words and calls
    (["the", "cat", "sat"], 0, ("sat", "the"), 1),  # the earliest match wins
    (["the", "cat", "sat"], 2, ("cat ",), 2),  # a trailing space: confirmed by the next word
    (["the", "cat", "sat"], 0, ("dog",), None),
    (["the", "cat", "sat"], 0, ("e c",), 2),
])
def test_words_to_keep_ends_at_the_word_completing_the_stop_string(words, new_from, stop, expected):
    assert words_to_keep(words, new_from, stop, False) == expected


def test_sentence_end_keeps_the_first_word_that_ends_one():
    assert words_to_keep(["a", "b。", "c."], 0, (), True) == 2
    assert words_to_keep(["a", "b", "c?"], 1, (), True) == 3
    assert words_to_keep(["a", "b"], 0, (), True) is None


def first_cut(words: list[str], stop: str) -> int:
    """Words kept: up to the first word at which the text so far holds the stop string."""
    return next((index + 1 for index in range(len(words)) if stop in " ".join(words[: index + 1])), len(words))


def test_a_stop_string_ends_the_output_at_a_word_and_stops_drawing(generator, monkeypatch):
    steps_after_each_call = []
    original = generator._continue

    def counting(**kwargs):
        out = original(**kwargs)
        steps_after_each_call.append(int(out["state_step"]))
        return out

    monkeypatch.setattr(generator, "_continue", counting)
    for seed in (8, 9):
        unstopped = words_of(generator, words=200, seed=seed)
        stop = unstopped[4][:2]  # a word's first letters: the output still ends at the end of a word
        cut = first_cut(unstopped, stop)
        assert cut <= 5
        settings = GenerateSettings(words=200, seed=seed, stop=(stop,))
        steps_after_each_call.clear()
        stream = generator.stream(["the cat"], settings)
        list(stream)
        assert stream.samples[0].text == " ".join(unstopped[:cut]) and len(stream.samples[0].ids) == cut
        # chunks of 2 then 4 tokens: the drawing stopped within one chunk of the stop, not at 200
        assert steps_after_each_call[-1] <= 6 and steps_after_each_call == [2, 6][: len(steps_after_each_call)]
        steps_after_each_call.clear()
        samples, _ = generator.generate(["the cat"], settings)
        assert samples[0].text == " ".join(unstopped[:cut]) and steps_after_each_call == [STREAM_CHUNK_STEPS]


def test_stop_strings_from_the_command_line_and_json(export_dir, loaded_once, capsys, monkeypatch):
    args = [export_dir, "the cat", "--words", "30", "--seed", "6", "--num-samples", "3"]
    full = run_gen([*args, "--no-stream"], capsys, monkeypatch)[1].splitlines()
    stop = full[0].split()[2 + 3]  # the 4th generated word of the first sample
    expected = [" ".join(line.split()[: 2 + first_cut(line.split()[2:], stop)]) for line in full]
    for mode in ("--stream", "--no-stream"):
        code, out, _ = run_gen([*args, mode, "--stop", stop, "--stop", "zzz"], capsys, monkeypatch)
        assert code == 0 and out.splitlines() == expected
    code, out, _ = run_gen([*args, "--stop", stop, "--stop", "zzz", "--json"], capsys, monkeypatch)
    records = [json.loads(line) for line in out.splitlines()]
    assert ["the cat " + record["text"] for record in records] == expected
    assert records[0]["settings"]["stop"] == [stop, "zzz"]


@pytest.fixture(scope="module")
def sentence_export(tmp_path_factory):
    """A hand-made vocabulary with words ending a sentence (another tokenizer could keep them)."""
    data = write_data_dir(str(tmp_path_factory.mktemp("sentences")), words=WORDS + ["end.", "why?", "fin。"])
    directory = str(tmp_path_factory.mktemp("sentences-export") / "export")
    config = model_config_for(data, layers=1)
    export_model(random_model(config, seed=1), config, data, directory, {"steps": 0})
    return Generator.load(directory)


def test_until_sentence_end_stops_after_the_first_sentence_end(sentence_export):
    for seed in range(3):
        whole = words_of(sentence_export, words=60, seed=seed)
        ends = [index for index, word in enumerate(whole) if word[-1] in ".?。"]
        got = words_of(sentence_export, words=60, seed=seed, until_sentence_end=True)
        assert got == (whole[: ends[0] + 1] if ends else whole)
        assert ends and ends[0] < 59  # the tiny vocabulary makes a sentence end likely: the test stops early


def test_until_sentence_end_is_refused_when_no_word_can_end_a_sentence(export_dir, capsys, monkeypatch):
    code, out, err = run_gen([export_dir, "the", "--until-sentence-end"], capsys, monkeypatch)
    assert code == 2 and out == "" and "turns . ! ? into spaces" in err and "Traceback" not in err


# ---- gen -i --------------------------------------------------------------------------------------
def test_interactive_session_through_a_pipe(export_dir, loaded_once, capsys, monkeypatch):
    lines = ["the cat", ":seed 3", ":words 5", "the cat", ":temperature -1", ":bogus", ":words x", "",
             ":stop " + "{stop}", "the cat", ":settings", "a b"]
    once = run_gen([export_dir, "the cat", "--words", "5", "--seed", "3", "--no-stream"], capsys, monkeypatch)[1]
    stop = once.split()[2 + 2]
    session = "\n".join(lines).replace("{stop}", stop) + "\n"
    code, out, err = run_gen([export_dir, "-i", "--words", "8"], capsys, monkeypatch, stdin=session)
    assert code == 0
    out_lines = out.splitlines()
    assert len(out_lines[0].split()) == 2 + 8  # the first prompt, with the options given
    assert out_lines[1] == once.strip()  # :seed 3 and :words 5 reached the next prompt
    assert out_lines[2] == " ".join(once.split()[: 2 + first_cut(once.split()[2:], stop)])
    assert "seed: 3" in out and "words: 5" in out  # :settings
    assert out_lines[-1].startswith("a b ") and ">" not in out  # no prompt decoration in a pipe
    assert "error: :temperature must be a positive number" in err
    assert "error: unknown command :bogus" in err and "error: :words expected a whole number" in err
    assert err.count("seed ") >= 1 and "Traceback" not in err


def test_interactive_refuses_prompts_on_the_command_line(export_dir, capsys, monkeypatch):
    code, _, err = run_gen([export_dir, "-i", "the cat"], capsys, monkeypatch)
    assert code == 2 and "-i reads its prompts" in err


def read_until(fd: int, wanted: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"timed out waiting for {wanted!r}; got {seen!r}")
        seen += os.read(fd, 4096)
    return seen


@pytest.mark.slow
def test_interactive_session_on_a_terminal(export_dir):
    controller, terminal = pty.openpty()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, "-m", "nextword.generate.cli", export_dir, "-i", "--words", "4"],
                               stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    try:
        read_until(controller, b"> ")
        os.write(controller, b":seed 7\n")
        read_until(controller, b"> ")
        os.write(controller, b"the cat\n")
        first = read_until(controller, b"> ")
        os.write(controller, b"\x1b[A\n")  # readline: the arrow up brings back "the cat"
        again = read_until(controller, b"> ")
        os.write(controller, b"\x04")  # Ctrl-D leaves
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)

    # the terminal echoes the line readline brought back: "the cat" again, and the same sample (seed 7)
    assert first == again and first.startswith(b"the cat\r\n")
    sample = first.decode().splitlines()[1]
    assert sample.startswith("the cat ") and len(sample.split()) == 2 + 4


@pytest.mark.parametrize("streaming_export", [True, False], ids=["chunked", "old-export"])
def test_a_stop_string_cuts_a_wordpiece_sample_after_the_pieces_of_a_whole_word(export_dirs, streaming_export):  # noqa: F811
    generator = Generator.load(export_dirs["lstm"][1])
    if not streaming_export:
        generator = Generator(generator.export_dir, generator.card, OldLoaded(generator.loaded))
    vocabulary = generator.vocabulary()
    checked = 0
    for seed in range(6):
        samples, _ = generator.generate(["the river"], GenerateSettings(words=40, seed=seed))
        words, ids = samples[0].text.split(" "), samples[0].ids
        long_words = [word for word in words[:20] if len(word) > 3]
        if not long_words:
            continue
        stop = long_words[0][1:-1]  # inside a word: the sample still ends at that word's end
        cut = first_cut(words, stop)
        stopped, _ = generator.generate(["the river"], GenerateSettings(words=40, seed=seed, stop=(stop,)))
        assert stopped[0].text == " ".join(words[:cut])
        pieces = stopped[0].ids
        assert pieces == ids[: len(pieces)] and join_pieces([vocabulary[token] for token in pieces]) == words[:cut]
        checked += 1
    assert checked >= 3
