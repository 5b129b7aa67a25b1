"""`nextword serve` (issue 24 item 4): the real `openai` client against a server on a free localhost port,
the same words as `gen` for a seeded request, OpenAI's stop semantics, bad requests answered with 4xx
JSON (the server going on), and requests that arrive together sharing one graph call."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from _launch import launched
from nextword.generate.batching import compiled_shape, make_groups, Job
from nextword.generate.generator import GenerateSettings, Generator
from nextword.generate.openai_api import CompletionRequest, find_stop, safe_length
from nextword.generate.server import COMPILED_MAX_ROWS, Server, ServeSettings
from nextword.model.export import export_model
from test_export_fixtures import model_config_for, random_model, tiny_data_dir  # noqa: F401

LIMITS = dict(max_words=64, max_n=4, max_prompts=4, max_prompt_chars=200, max_batch=12, max_body_bytes=4096)


@pytest.fixture(scope="module")
def generator(tiny_data_dir, tmp_path_factory) -> Generator:  # noqa: F811  (the fixture imported above)
    directory = str(tmp_path_factory.mktemp("serve") / "export")
    config = model_config_for(tiny_data_dir, layers=1)
    export_model(random_model(config, seed=3), config, tiny_data_dir, directory, {"steps": 0})
    return Generator.load(directory)


@pytest.fixture(scope="module")
def server(generator):
    running = Server(generator, ServeSettings(port=0, model_name="tiny", **LIMITS)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    with OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60) as client:
        yield client


def post(server, body, path="/v1/completions", method="POST") -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data if method == "POST" else None, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def gen_texts(generator, prompts, **settings) -> list[str]:
    samples, _ = generator.generate(prompts, GenerateSettings(**settings))
    return [sample.text for sample in samples]


# ---- the real client ---------------------------------------------------------------------------
def test_the_openai_client_gets_gens_words_for_a_seed(client, generator):
    completion = client.completions.create(model="anything", prompt="the cat", max_tokens=7, seed=3)
    expected = gen_texts(generator, ["the cat"], words=7, seed=3)[0]
    assert completion.object == "text_completion" and completion.model == "tiny" and completion.id.startswith("cmpl-")
    choice = completion.choices[0]
    assert choice.text == " " + expected and choice.finish_reason == "length" and choice.index == 0
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 7)


def test_the_openai_client_streams_the_same_words(client, generator):
    settings = dict(model="tiny", prompt=["the cat", "a b"], max_tokens=9, seed=5, n=2, temperature=0.8, top_p=0.9)
    whole = client.completions.create(**settings)
    chunks = list(client.completions.create(**settings, stream=True, stream_options={"include_usage": True}))
    texts, reasons = ["", "", "", ""], [None] * 4
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert len(chunks) > 8  # the words came in pieces, not at the end
    assert texts == [choice.text for choice in whole.choices] and reasons == ["length"] * 4
    expected = gen_texts(generator, ["the cat", "a b"], words=9, seed=5, num_samples=2, temperature=0.8, top_p=0.9)
    assert texts == [" " + text for text in expected]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 36 and chunks[-1].usage.prompt_tokens == 4


def test_temperature_zero_is_greedy(client, generator):
    completion = client.completions.create(model="tiny", prompt=["the", ""], max_tokens=5, temperature=0)
    greedy = gen_texts(generator, ["the", ""], words=5, greedy=True)
    assert [choice.text for choice in completion.choices] == [" " + greedy[0], greedy[1]]  # no space after ""


# ---- stop strings --------------------------------------------------------------------------------
def test_a_stop_string_ends_the_text_before_it(client, generator):
    for seed in (1, 2):
        words = gen_texts(generator, ["the cat"], words=30, seed=seed)[0].split(" ")
        stop = words[4][1:] or words[4]  # inside a word: OpenAI cuts there, in the middle of the word
        full = " " + " ".join(words)
        expected = full[: full.find(stop)]
        completion = client.completions.create(model="tiny", prompt="the cat", max_tokens=30, seed=seed,
                                               stop=[stop, "zzz"])
        assert completion.choices[0].text == expected and completion.choices[0].finish_reason == "stop"
        streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
            model="tiny", prompt="the cat", max_tokens=30, seed=seed, stop=stop, stream=True))
        assert streamed == expected


def test_stop_matching_and_holding_back():
    assert find_stop("the cat sat", ("at", "sat")) == 5  # the match completed first wins
    assert find_stop("the cat", ("dog",)) is None
    assert safe_length("the ca", ("cat sat",)) == 4  # "ca" may become "cat sat": held back
    assert safe_length("the cat", ("dog",)) == 7


# ---- bad requests ---------------------------------------------------------------------------------
BAD = [
    (b"{not json", 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_json", None),
    ({"max_tokens": 4}, 400, "missing_parameter", "prompt"),
    ({"prompt": 3}, 400, "invalid_type", "prompt"),
    ({"prompt": [1, 2, 3]}, 400, "invalid_type", "prompt"),
    ({"prompt": "a", "max_tokens": "5"}, 400, "invalid_type", "max_tokens"),
    ({"prompt": "a", "max_tokens": True}, 400, "invalid_type", "max_tokens"),
    ({"prompt": "a", "max_tokens": 65}, 400, "invalid_value", "max_tokens"),
    ({"prompt": "a", "n": 5}, 400, "invalid_value", "n"),
    ({"prompt": ["a"] * 4, "n": 4}, 400, "too_many_completions", "n"),
    ({"prompt": ["a"] * 5}, 400, "invalid_value", "prompt"),
    ({"prompt": "a", "temperature": 3}, 400, "invalid_value", "temperature"),
    ({"prompt": "a", "top_p": 0}, 400, "invalid_value", "top_p"),
    ({"prompt": "a", "seed": -1}, 400, "invalid_value", "seed"),
    ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value", "stop"),
    ({"prompt": "a", "stop": 7}, 400, "invalid_type", "stop"),
    ({"prompt": "a", "stream": "yes"}, 400, "invalid_type", "stream"),
    ({"prompt": "a", "stream_options": {"include_usage": True}}, 400, "invalid_value", "stream_options"),
    ({"prompt": "a", "colour": "red"}, 400, "unknown_parameter", "colour"),
    ({"prompt": "a", "echo": True}, 400, "unsupported_parameter", "echo"),
    ({"prompt": "a", "logprobs": 2}, 400, "unsupported_parameter", "logprobs"),
    ({"prompt": "x" * 201}, 400, "prompt_too_long", "prompt"),
    ({"prompt": "x" * 5000}, 413, "request_too_large", None),
]


@pytest.mark.parametrize("body, status, code, param", BAD, ids=[f"{case[2]}-{index}" for index, case in enumerate(BAD)])
def test_a_bad_request_gets_a_4xx_json_error_and_the_server_goes_on(server, body, status, code, param):
    got_status, got = post(server, body)
    assert got_status == status, got
    error = got["error"]
    assert error["code"] == code and error["param"] == param and error["type"] == "invalid_request_error"
    assert len(error["message"]) > 20  # says what was wrong (and what is accepted)
    assert post(server, {"prompt": "the", "max_tokens": 2})[0] == 200


def test_neutral_values_of_unsupported_fields_are_accepted(server):
    status, got = post(server, {"prompt": "the", "max_tokens": 2, "echo": False, "logprobs": None, "best_of": 1,
                                "frequency_penalty": 0.0, "presence_penalty": 0, "user": "me", "model": "x"})
    assert status == 200 and len(got["choices"][0]["text"].split()) == 2


def test_unknown_routes_and_methods_answer_json(server):
    assert post(server, None, "/v1/nothing", "GET")[1]["error"]["code"] == "not_found"
    status, got = post(server, None, "/v1/completions", "GET")
    assert status == 405 and got["error"]["code"] == "method_not_allowed"


def test_the_openai_client_raises_on_a_bad_request(client):
    import openai

    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="tiny", prompt="the", n=99)
    assert "n" == error.value.body["param"]


# ---- batching -------------------------------------------------------------------------------------
def test_requests_that_arrive_together_share_one_graph_call(server, monkeypatch):
    batcher = server.batcher
    original = batcher._take

    def wait_for_eight(idle):  # hold the worker until the 8 requests are queued: the test must not race
        deadline = time.monotonic() + 10
        while batcher.queued < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        monkeypatch.setattr(batcher, "_take", original)
        return original(idle)

    before = dict(batcher.counters)
    monkeypatch.setattr(batcher, "_take", wait_for_eight)
    time.sleep(0.3)  # the worker's own _take returns within 0.1 s when idle; then it waits in ours
    results = [None] * 8
    threads = [threading.Thread(target=lambda index=index: results.__setitem__(
        index, post(server, {"prompt": f"the cat {index}", "max_tokens": 6 + index, "temperature": 0.9})))
        for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    after = batcher.counters
    assert all(status == 200 for status, _ in results)
    assert [len(body["choices"][0]["text"].split()) for _, body in results] == [6 + index for index in range(8)]
    assert after["batches"] - before["batches"] == 1 and after["largest_batch"] >= 8
    # one generate_start, then (no request streams) one generate_continue of up to 64 tokens: 13 words in 2 calls
    assert after["graph_calls"] - before["graph_calls"] == 2


def test_grouping_policy():
    def job(**settings):
        return Job(CompletionRequest(prompts=("a",), **settings), lambda event: None)

    jobs = [job(), job(temperature=0.5), job(), job(seed=1), job(seed=1), job(n=3, max_words=9), job(temperature=0)]
    groups = make_groups(jobs, max_rows=4)
    assert [[jobs.index(member) for member in group] for group in groups] == [[0, 2], [5], [1], [3], [4], [6]]


def test_health_and_models(server):
    status, health = post(server, None, "/health", "GET")
    assert status == 200 and health["status"] == "ok" and health["model"] == "tiny" and health["requests"] >= 1
    status, models = post(server, None, "/v1/models", "GET")
    assert status == 200 and models["data"][0]["id"] == "tiny"


@pytest.mark.slow
def test_the_command_serves_until_interrupted_and_a_taken_port_is_refused_with_a_message(generator):
    """`nextword serve` as a user starts it: the address on stderr, answers, Ctrl-C ends it cleanly;
    a second server on the same port says why it cannot start, without a traceback."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "nextword", "serve", generator.export_dir]
    # SIGINT at its default, as in a terminal's foreground job (a CI shell's background jobs ignore it)
    first = subprocess.Popen(launched([*command, "--port", "0"], sigint_default=True), stderr=subprocess.PIPE, text=True,
                             env=env)
    try:
        lines = []
        for line in first.stderr:  # the export loads and warms up first
            lines.append(line)
            if line.startswith("serving "):
                break
        url = re.search(r" at (http://127\.0\.0\.1:\d+) ", lines[-1] if lines else "")
        assert url, "".join(lines)
        with urllib.request.urlopen(url.group(1) + "/health", timeout=30) as response:
            assert response.status == 200 and json.loads(response.read())["status"] == "ok"
        status, body = post(type("Up", (), {"url": url.group(1)}), {"prompt": "w1", "max_tokens": 3, "temperature": 0})
        assert status == 200 and len(body["choices"][0]["text"].split()) == 3
        taken = subprocess.run([*command, "--port", url.group(1).rsplit(":", 1)[1]], capture_output=True, text=True,
                               env=env, timeout=120)
        assert taken.returncode == 2 and "cannot listen on 127.0.0.1:" in taken.stderr and "--port" in taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        first.send_signal(signal.SIGINT)
        rest = first.communicate(timeout=60)[1]
    assert first.returncode == 130 and "Traceback" not in rest, rest  # the CLI's documented exit for Ctrl-C


# ---- serve --compiled ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled_server(generator):
    """The same export served with its loop compiled by XLA for calls of up to COMPILED_MAX_ROWS rows."""
    compiled = Generator.load(generator.export_dir, compiled=True, compiled_max_rows=COMPILED_MAX_ROWS)
    running = Server(compiled, ServeSettings(port=0, model_name="tiny", compiled=True, **LIMITS)).start()
    yield running
    running.stop()


def test_compiled_shapes_are_powers_of_two_and_a_seeded_request_keeps_its_rows():
    assert compiled_shape(1, 7, seeded=False, max_rows=8) == (1, 16)
    assert compiled_shape(3, 16, seeded=False, max_rows=8) == (4, 16)
    assert compiled_shape(5, 17, seeded=False, max_rows=8) == (8, 32)
    assert compiled_shape(5, 100, seeded=False, max_rows=6) == (6, 128)  # never past the compiled rows' limit
    assert compiled_shape(3, 9, seeded=True, max_rows=8) == (3, 16)


def test_padding_rows_and_rounding_words_up_leave_a_compiled_rows_words_alone(generator):
    """What the compiled server relies on: the rows it appends and the words it adds change no real row."""
    compiled = Generator.load(generator.export_dir, compiled=True)
    prompts = ["the cat", "a b", ""]
    settings = GenerateSettings(words=7, seed=4, temperature=0.9)
    expected = [sample.text for sample in compiled.generate(prompts, settings)[0]]
    padded = compiled.generate(prompts + [""], settings)[0]
    assert [sample.text for sample in padded[:3]] == expected
    longer = compiled.generate(prompts, GenerateSettings(words=16, seed=4, temperature=0.9))[0]
    assert [" ".join(sample.text.split()[:7]) for sample in longer] == expected
    assert expected == gen_texts(generator, prompts, words=7, seed=4, temperature=0.9)  # and uncompiled draws them too


def test_the_compiled_server_answers_what_gen_draws_in_padded_shapes(compiled_server, generator, monkeypatch):
    compiled = compiled_server.batcher.generator
    shapes, stream = [], compiled.stream

    def recorded(prompts, settings, *args, **kwargs):
        shapes.append((len(prompts), settings.words, compiled.compiles(len(prompts))))
        return stream(prompts, settings, *args, **kwargs)

    monkeypatch.setattr(compiled, "stream", recorded)
    status, body = post(compiled_server, {"prompt": "the cat", "max_tokens": 7, "seed": 3})
    assert status == 200 and body["choices"][0]["text"] == " " + gen_texts(generator, ["the cat"], words=7, seed=3)[0]
    status, body = post(compiled_server, {"prompt": ["the", "a b", "w1"], "max_tokens": 5, "temperature": 0})
    assert status == 200
    greedy = gen_texts(generator, ["the", "a b", "w1"], words=5, greedy=True)
    assert [choice["text"] for choice in body["choices"]] == [" " + text for text in greedy]
    assert body["usage"]["completion_tokens"] == 15
    status, body = post(compiled_server, {"prompt": ["the", "a", "b"], "max_tokens": 3, "n": 4, "temperature": 0})
    assert status == 200 and len(body["choices"]) == 12  # past COMPILED_MAX_ROWS: uncompiled, unpadded
    assert shapes == [(1, 16, True), (4, 16, True), (12, 3, False)]  # seeded: its rows; 3 rows -> 4; 12: as saved
