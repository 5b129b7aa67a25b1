"""Requests that arrive together are generated together: the one thread that calls the graph.

The export's signatures take one temperature, top_p and seed for the whole batch, so requests share
a graph call when those agree: requests without a seed, grouped by (temperature, top_p), share one
fresh seed (each row still draws its own noise: rows are seeded by (seed, row, step)). A request with
a seed runs in a call of its own, its rows first, so it draws exactly what `gen --seed S --words N
--num-samples n` draws for its prompts. max_tokens and stop strings may differ inside a call: the
call runs to the largest max_tokens, and each row is cut at its own limit or stop string (a word's
draw does not depend on how many words the call will draw).

One worker thread owns the graph: it gathers what is queued (waiting `wait_seconds` for companions
when idle), starts a group per compatible set (`generate_start`), then advances every group under way
by one chunk (`generate_continue`) in turn, so a request arriving during a long generation starts
within `join_seconds` instead of waiting for the end. A group is dropped as soon as all its rows are cut.

Compiled (`serve --compiled`): XLA compiles the loop once per shape of its state, its rows and its history's
length (the call's words), ~1.5-3.5 s each. So a group that runs compiled has its rows padded with empty
prompts to a power of two and its words rounded up to one (`compiled_shape`): a few shapes compile, not one
per request's n and max_tokens. Neither changes a real row's words: row r draws the noise of (seed, r, step),
and a word's draw does not depend on how many words the call will draw. A request with a seed keeps its rows
unpadded, as `gen --seed --compiled` runs them.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from nextword.generate.generator import FIRST_CHUNK_STEPS, STREAM_CHUNK_STEPS, GenerateSettings
from nextword.generate.openai_api import CompletionRequest, RequestError, find_stop, safe_length

MIN_COMPILED_WORDS = 16  # OpenAI's default max_tokens: the smallest words a compiled call is shaped for


def compiled_shape(rows: int, words: int, seeded: bool, max_rows: int | None) -> tuple[int, int]:
    """(rows, words) a compiled call of `rows` rows drawing `words` words runs at: rows up to the next power
    of two (at most max_rows; a seeded request's rows as they are), words up to the next power of two (at
    least MIN_COMPILED_WORDS)."""
    padded_rows = rows if seeded else min(1 << (rows - 1).bit_length(), max(rows, max_rows or rows))
    return padded_rows, max(MIN_COMPILED_WORDS, 1 << (words - 1).bit_length())


# A job's events, emitted from the worker thread in this order per choice:
#   ("text", choice, delta) ... ("finish", choice, "stop"|"length"); then once ("done", prompt_words,
#   completion_words), or ("error", RequestError) instead of anything not yet sent.


@dataclass(frozen=True)
class BatchSettings:
    max_rows: int = 64  # rows (prompts x n) in one graph call
    max_queue: int = 256  # requests waiting for the worker; more are refused with 503
    wait_seconds: float = 0.003  # when idle, how long the first request waits for companions
    join_seconds: float = 0.03  # while calls are under way, the longest a request waits for companions


class Job:
    """One request under way. `emit(event)` is called from the worker thread; set `cancelled` when
    the client has gone, and its rows stop counting."""

    def __init__(self, request: CompletionRequest, emit: Callable[[tuple], None]):
        self.request, self.emit = request, emit
        self.cancelled = False
        self.finished = False
        self.arrived = time.monotonic()


class _Row:
    """One choice: its words so far, cut at its request's max_tokens or first stop string; the text
    sent holds back any end that could still become a stop string."""

    def __init__(self, job: Job, choice: int, prompt: str):
        self.job, self.choice = job, choice
        # the completion continues the prompt: a space first, unless the prompt is empty or ends in one
        self.prefix = " " if prompt.strip() and not prompt[-1].isspace() else ""
        self.words: list[str] = []
        self.sent = 0  # characters of " ".join(words) sent
        self.final: str | None = None  # set once the row is finished

    def add(self, new_words: list[str], graph_done: bool) -> None:
        if self.final is not None:
            return
        request = self.job.request
        self.words += new_words[: request.max_words - len(self.words)]
        text = " ".join(self.words)
        cut = find_stop(text, request.stop) if request.stop else None
        if cut is not None:
            self._send(text[:cut], "stop")
        elif len(self.words) >= request.max_words or graph_done:
            self._send(text, "length")
        else:
            self._send(text[: safe_length(text, request.stop)], None)

    def close(self) -> None:
        """The call ended without finishing this row (it cannot, but never leave a client waiting)."""
        if self.final is None:
            self._send(" ".join(self.words), "length")

    def _send(self, text: str, reason: str | None) -> None:
        if len(text) > self.sent:
            self.job.emit(("text", self.choice, ("" if self.sent else self.prefix) + text[self.sent:]))
            self.sent = len(text)
        if reason is not None:
            self.final = text
            self.job.emit(("finish", self.choice, reason))

    @property
    def words_kept(self) -> int:
        return len((self.final or "").split())


class _Group:
    """Jobs sharing one graph call: rows in job order, each job's rows in its choice order."""

    def __init__(self, generator, jobs: list[Job], counters: dict):
        self.jobs, self.counters = jobs, counters
        first = jobs[0].request
        prompts = [prompt for job in jobs for prompt in job.request.row_prompts()]
        words = max(job.request.max_words for job in jobs)
        padding = 0
        if generator.compiles(len(prompts)):
            padded_rows, words = compiled_shape(len(prompts), words, first.seed is not None, generator.compiled_max_rows)
            padding = padded_rows - len(prompts)
        settings = GenerateSettings(
            words=words, greedy=first.greedy,
            temperature=1.0 if first.greedy else first.temperature, top_p=None if first.top_p == 1.0 else first.top_p,
            seed=first.seed)
        # A streamed request's first words come after a short first chunk; a group that streams nothing draws
        # STREAM_CHUNK_STEPS a call from the start: each generate_continue call costs ~1.5 ms besides its words
        # (~0.65 ms of it the call of a function of 23 state tensors), 5 calls for 30 words otherwise
        # (bench/RESULTS.md "Serve: `serve --compiled`").
        first_steps = FIRST_CHUNK_STEPS if any(job.request.stream for job in jobs) else STREAM_CHUNK_STEPS
        # the padding rows come last: the real rows keep their places (and so their noise)
        self.stream = generator.stream(prompts + [""] * padding, settings, first_steps=first_steps)  # generate_start
        counters["graph_calls"] += 1
        self.progress = iter(self.stream)
        self.rows = [_Row(job, choice, prompt) for job in jobs for choice, prompt in enumerate(job.request.row_prompts())]

    def step(self) -> bool:
        """One generate_continue call for every row; False once every job is answered."""
        try:
            progress = next(self.progress)
        except StopIteration:
            progress = None
        self.counters["graph_calls"] += progress is not None
        for index, row in enumerate(self.rows):
            if row.job.cancelled:
                continue
            if progress is None:
                row.close()
            else:
                row.add(progress.words[index], progress.done[index])
        return self._answer_finished()

    def _answer_finished(self) -> bool:
        under_way = False
        for job in self.jobs:
            if job.finished or job.cancelled:
                continue
            rows = [(index, row) for index, row in enumerate(self.rows) if row.job is job]
            if all(row.final is not None for _, row in rows):
                job.finished = True
                # each prompt counts once, however many choices it has (as OpenAI counts it)
                prompt_words = sum(self.stream.prompt_words[index] for index, row in rows if row.choice % job.request.n == 0)
                job.emit(("done", prompt_words, sum(row.words_kept for _, row in rows)))
            else:
                under_way = True
        return under_way


def fail_jobs(jobs: list[Job], error: RequestError) -> None:
    for job in jobs:
        if not job.finished:
            job.finished = True
            job.emit(("error", error))


def group_key(request: CompletionRequest, job: Job):
    """Requests with the same key can share a graph call."""
    if request.seed is not None:
        return ("seed", id(job))  # alone: its rows must be the call's first rows
    return (True,) if request.greedy else (False, request.temperature, request.top_p)


def make_groups(jobs: list[Job], max_rows: int) -> list[list[Job]]:
    """Jobs (in arrival order) -> lists of compatible jobs, each at most max_rows rows."""
    by_key: dict = {}
    for job in jobs:
        by_key.setdefault(group_key(job.request, job), []).append(job)
    groups = []
    for same in by_key.values():
        current, rows = [], 0
        for job in same:
            if current and rows + job.request.rows > max_rows:
                groups.append(current)
                current, rows = [], 0
            current.append(job)
            rows += job.request.rows
        groups.append(current)
    return groups


class Batcher:
    """Owns the generator: `submit` jobs from any thread; `start()` / `stop()` the worker."""

    def __init__(self, generator, settings: BatchSettings = BatchSettings()):
        self.generator, self.settings = generator, settings
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=settings.max_queue)
        self._stopping = threading.Event()
        self._pending: list[Job] = []  # taken from the queue, not started yet (worker thread only)
        self._thread = threading.Thread(target=self._run, name="nextword-batcher", daemon=True)
        self.counters = dict(requests=0, batches=0, graph_calls=0, rows=0, largest_batch=0, failed_batches=0)
        self.active_groups = 0

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    @property
    def queued(self) -> int:
        return self._queue.qsize() + len(self._pending)

    def submit(self, job: Job) -> None:
        if self._stopping.is_set():
            raise RequestError(503, "the server is shutting down", code="server_shutting_down", kind="server_error")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise RequestError(503, f"the server is busy: {self.settings.max_queue} requests are already waiting; "
                               "retry shortly (or start it with a larger --max-queue)", code="server_overloaded",
                               kind="server_error") from None
        self.counters["requests"] += 1

    def _take(self, idle: bool) -> list[Job]:
        """The jobs to start now. Idle: the first to arrive and those within wait_seconds after it.
        While calls are under way, arrivals wait (in `_pending`) until they fill half a batch or the
        oldest has waited join_seconds: a group started for each straggler would split the clients into
        cohorts taking turns, each call with half the rows (measured: 8 rows a call, not 16)."""
        if idle and not self._pending:
            try:
                self._pending.append(self._queue.get(timeout=0.1))
            except queue.Empty:
                return []
            deadline = time.monotonic() + self.settings.wait_seconds
            while self._rows_pending() < self.settings.max_rows and (left := deadline - time.monotonic()) > 0:
                try:
                    self._pending.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not self._pending:
            return []
        if idle or self._rows_pending() * 2 >= self.settings.max_rows or \
                time.monotonic() - self._pending[0].arrived >= self.settings.join_seconds:
            jobs, self._pending = self._pending, []
            return jobs
        return []

    def _rows_pending(self) -> int:
        return sum(job.request.rows for job in self._pending)

    def _run(self) -> None:
        active: list[_Group] = []
        while not self._stopping.is_set():
            for jobs in make_groups([job for job in self._take(idle=not active) if not job.cancelled],
                                    self.settings.max_rows):
                group = self._guarded(lambda: _Group(self.generator, jobs, self.counters), jobs)
                if group is not None:
                    active.append(group)
                    rows = len(group.rows)
                    self.counters["batches"] += 1
                    self.counters["rows"] += rows
                    self.counters["largest_batch"] = max(self.counters["largest_batch"], rows)
            for group in list(active):
                if not self._guarded(group.step, group.jobs):
                    active.remove(group)
            self.active_groups = len(active)

    def _guarded(self, call, jobs: list[Job]):
        """call(); a failure fails these jobs only (500 for a bug, 400 for a setting the export refuses):
        the worker goes on with the others."""
        try:
            return call()
        except Exception as error:  # noqa: BLE001  (one request's failure must not stop the server)
            from nextword.errors import NextwordError

            self.counters["failed_batches"] += 1
            if isinstance(error, NextwordError):
                failure = RequestError(400, error.message, code="invalid_value")
            else:
                failure = RequestError(500, f"generation failed: {type(error).__name__}: {error}",
                                       code="internal_error", kind="server_error")
            fail_jobs(jobs, failure)
            return None
