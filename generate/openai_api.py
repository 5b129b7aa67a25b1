"""The OpenAI completions API as `nextword serve` speaks it: requests checked, responses shaped.

Pure Python (no TensorFlow, no HTTP library): `parse_completion_request` turns a request body into a
`CompletionRequest` or raises `RequestError` (status + OpenAI's error shape); the `*_body` and
`*_chunk` functions build the JSON of a response or of one server-sent event.

Words, not tokens: `max_tokens` counts whole words (as `gen --words`), and so does `usage`.
Fields of OpenAI's API that nextword does not implement (echo, logprobs, penalties, ...) are accepted
at their neutral value only; a field OpenAI does not know is refused, as OpenAI refuses it.

Stop strings follow OpenAI, not `gen --stop`: the text ends just before the first stop string
found in the generated text (words joined by single spaces), and the stop string is left out;
drawing stops at the word that completes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

ACCEPTED_FIELDS = ("model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream",
                   "stream_options", "user")
# OpenAI fields that nextword does not implement -> the values that ask for nothing (accepted)
NEUTRAL_FIELDS = {"echo": (False, None), "logprobs": (None,), "frequency_penalty": (0, None),
                  "presence_penalty": (0, None), "logit_bias": (None, {}), "suffix": (None, ""), "best_of": (None, 1)}
DEFAULT_MAX_TOKENS = 16  # OpenAI's default
MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_STOP_CHARS = 200


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`nextword serve` options map onto these)."""

    max_words: int = 512  # max_tokens
    max_n: int = 16
    max_prompts: int = 64
    max_prompt_chars: int = 4000
    max_rows: int = 64  # prompts x n of one request, which is also the most rows of one graph call
    max_body_bytes: int = 1 << 20


class RequestError(Exception):
    """A request the server refuses: HTTP status, what was wrong and what is accepted."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class CompletionRequest:
    prompts: tuple[str, ...]
    max_words: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    model: str | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.n

    def row_prompts(self) -> list[str]:
        """One prompt per row, in OpenAI's choice order: prompt-major, its n samples together (as `gen
        --num-samples n` orders its rows)."""
        return [prompt for prompt in self.prompts for _ in range(self.n)]


def _invalid(param: str, message: str, code: str = "invalid_value", status: int = 400) -> RequestError:
    return RequestError(status, message, param=param, code=code)


def _same(value, neutral) -> bool:
    # JSON's false is not 0, and 0.0 is 0
    if neutral is None or isinstance(neutral, bool):
        return value is neutral
    return not isinstance(value, bool) and type(value) in (int, float, dict, str) and value == neutral


def _integer(body: dict, name: str, default, low: int, high: int, limit_hint: str = "") -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, f"'{name}' must be a whole number from {low} to {high}, got {json.dumps(value)}",
                       code="invalid_type")
    if not low <= value <= high:
        raise _invalid(name, f"'{name}' must be from {low} to {high}, got {value}{limit_hint}")
    return value


def _number(body: dict, name: str, default: float, accepted: str, ok) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, f"'{name}' must be a number ({accepted}), got {json.dumps(value)}", code="invalid_type")
    if not (math.isfinite(value) and ok(value)):
        raise _invalid(name, f"'{name}' must be {accepted}, got {value}")
    return float(value)


def _strings(value, name: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    if name == "prompt" and isinstance(value, list) and value and all(isinstance(item, (int, list)) for item in value):
        raise _invalid(name, "'prompt' as token ids is not accepted: nextword tokenizes text itself",
                       code="invalid_type")
    raise _invalid(name, f"'{name}' must be {what}, got {json.dumps(value)[:80]}", code="invalid_type")


def parse_completion_request(raw: bytes, limits: Limits) -> CompletionRequest:
    """A POST /v1/completions body -> CompletionRequest; RequestError (4xx) says what is wrong."""
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"the request body holds {len(raw)} bytes; this server accepts at most "
                           f"{limits.max_body_bytes}", code="request_too_large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the request body is not valid JSON ({error}); send a JSON object such as "
                           '{"prompt": "the cat", "max_tokens": 16}', code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, got a {type(body).__name__}",
                           code="invalid_json")
    for name in body:
        if name in NEUTRAL_FIELDS:
            if not any(_same(body[name], neutral) for neutral in NEUTRAL_FIELDS[name]):
                accepted = " or ".join(json.dumps(value) for value in NEUTRAL_FIELDS[name])
                raise _invalid(name, f"'{name}' is not supported by nextword serve: only {accepted} is accepted, "
                               f"got {json.dumps(body[name])[:80]}", code="unsupported_parameter")
        elif name not in ACCEPTED_FIELDS:
            raise _invalid(name, f"Unrecognized request argument supplied: {name}. Accepted: "
                           f"{', '.join(ACCEPTED_FIELDS)} (and {', '.join(NEUTRAL_FIELDS)} at their defaults)",
                           code="unknown_parameter")
    if "prompt" not in body:
        raise _invalid("prompt", "'prompt' is required: a string, or a list of strings", code="missing_parameter")
    prompts = _strings(body["prompt"], "prompt", "a string or a list of strings")
    if not 1 <= len(prompts) <= limits.max_prompts:
        raise _invalid("prompt", f"'prompt' must hold 1 to {limits.max_prompts} prompts, got {len(prompts)}")
    for index, prompt in enumerate(prompts):
        if len(prompt) > limits.max_prompt_chars:
            raise RequestError(400, f"prompt {index} holds {len(prompt)} characters; this server accepts at most "
                               f"{limits.max_prompt_chars} (the model reads only its last words anyway)",
                               param="prompt", code="prompt_too_long")
    n = _integer(body, "n", 1, 1, limits.max_n)
    if len(prompts) * n > limits.max_rows:
        raise _invalid("n", f"{len(prompts)} prompts x n={n} = {len(prompts) * n} completions; this server makes at "
                       f"most {limits.max_rows} a request", code="too_many_completions")
    stop = _stop_strings(body.get("stop"))
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model", f"'model' must be a string, got {json.dumps(model)[:80]}", code="invalid_type")
    if "user" in body and not isinstance(body["user"], str):
        raise _invalid("user", "'user' must be a string", code="invalid_type")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("stream", f"'stream' must be true or false, got {json.dumps(stream)}", code="invalid_type")
    return CompletionRequest(
        prompts=prompts,
        max_words=_integer(body, "max_tokens", DEFAULT_MAX_TOKENS, 1, limits.max_words,
                           " (max_tokens counts whole words here)"),
        temperature=_number(body, "temperature", 1.0, "from 0 to 2 (0 = always the most likely word)",
                            lambda value: 0 <= value <= 2),
        top_p=_number(body, "top_p", 1.0, "above 0 and at most 1", lambda value: 0 < value <= 1),
        seed=_integer(body, "seed", None, 0, 2**63 - 1),
        stop=stop,
        n=n,
        stream=stream,
        include_usage=_include_usage(body.get("stream_options"), stream),
        model=model,
    )


def _stop_strings(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stop = _strings(value, "stop", f"a string or a list of up to {MAX_STOP_STRINGS} strings")
    if len(stop) > MAX_STOP_STRINGS:
        raise _invalid("stop", f"'stop' holds {len(stop)} strings; at most {MAX_STOP_STRINGS} are accepted")
    for string in stop:
        if not 1 <= len(string) <= MAX_STOP_CHARS:
            raise _invalid("stop", f"each stop string must hold 1 to {MAX_STOP_CHARS} characters, got {json.dumps(string)[:80]}")
    return stop


def _include_usage(options, stream: bool) -> bool:
    if options is None:
        return False
    if not stream:
        raise _invalid("stream_options", "'stream_options' is only allowed when 'stream' is true")
    if not isinstance(options, dict) or set(options) - {"include_usage"} or not isinstance(
            options.get("include_usage", False), bool):
        raise _invalid("stream_options", 'stream_options accepts {"include_usage": true|false} only', code="invalid_type")
    return options.get("include_usage", False)


# ---- stop strings in a growing text ----------------------------------------------------------------
def find_stop(text: str, stop: tuple[str, ...]) -> int | None:
    """Where `text` must end because of a stop string (the start of the match completed first,
    earliest start on a tie), or None."""
    found = []
    for string in stop:
        start = text.find(string)
        if start >= 0:
            found.append((start + len(string), start))
    return min(found)[1] if found else None


def safe_length(text: str, stop: tuple[str, ...]) -> int:
    """How much of `text` (no stop string in it) can be sent already: all but its longest end that
    begins some stop string, which the next words could complete."""
    held = 0
    for string in stop:
        for size in range(min(len(string) - 1, len(text)), held, -1):
            if text.endswith(string[:size]):
                held = size
                break
    return len(text) - held


# ---- responses -------------------------------------------------------------------------------------
def usage(prompt_words: int, completion_words: int) -> dict:
    return {"prompt_tokens": prompt_words, "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words}


def completion_body(completion_id: str, created: int, model: str, choices: list[tuple[str, str]],
                    prompt_words: int, completion_words: int) -> dict:
    """choices: (text, finish_reason) in choice order."""
    return {
        "id": completion_id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": reason}
                    for index, (text, reason) in enumerate(choices)],
        "usage": usage(prompt_words, completion_words),
    }


def stream_chunk(completion_id: str, created: int, model: str, index: int | None, text: str = "",
                 finish_reason: str | None = None, usage_record: dict | None = None) -> str:
    """One server-sent event of a streamed completion (index None: the closing usage chunk)."""
    chunk = {"id": completion_id, "object": "text_completion", "created": created, "model": model,
             "choices": [] if index is None else [
                 {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}]}
    if usage_record is not None:
        chunk["usage"] = usage_record
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


STREAM_END = "data: [DONE]\n\n"
