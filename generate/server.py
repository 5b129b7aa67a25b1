"""`nextword serve EXPORT_DIR`: the export behind an OpenAI-compatible HTTP API.

Starlette on uvicorn (httptools + uvloop when installed). The HTTP layer is not the bottleneck: a small
JSON POST is answered 2,400-12,900 times a second by it and 2,300-8,700 by the standard library's
ThreadingHTTPServer on this noisy 2-core machine (bench/serve_bench.py --library, bench/RESULTS.md "Serve":
uvicorn ahead on the idle machine, level under load), while a batched graph call takes milliseconds. Chosen for what else it gives:
server-sent events from an async generator, bodies read with a cap, keep-alive timeouts, and waiting
requests that cost an event-loop task each rather than a thread, while the graph runs in the batcher's
thread.

Routes: POST /v1/completions (generate/openai_api.py), GET /v1/models, GET /health. Every error is
a JSON body in OpenAI's shape ({"error": {"message", "type", "param", "code"}}); a request's failure
never stops the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from nextword.errors import SettingsError
from nextword.generate.batching import Batcher, BatchSettings, Job
from nextword.generate.openai_api import (STREAM_END, CompletionRequest, Limits, RequestError, completion_body,
                                          parse_completion_request, stream_chunk, usage)


# `serve --compiled` compiles calls of at most this many rows; larger ones run the saved loop. Measured on the
# default export mixed with the 5-gram and cache (bench/RESULTS.md "Compiled generation with the n-gram"):
# compiling gains x2.8 / x1.6 at 1 / 8 rows on the KJV, x1.7 at 1 row on Vim's help, and loses at 64 rows
# there (x0.61: the sampling noise and the widest follower spans cost more compiled).
COMPILED_MAX_ROWS = 8


@dataclass(frozen=True)
class ServeSettings:
    """`nextword serve` options, one to one."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_words: int = 512
    max_n: int = 16
    max_prompts: int = 64
    max_prompt_chars: int = 4000
    max_batch: int = 64
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    batch_wait_ms: float = 3.0
    model_name: str | None = None
    compiled: bool = False

    def __post_init__(self) -> None:
        for name in ("max_words", "max_n", "max_prompts", "max_prompt_chars", "max_batch", "max_queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port must be from 0 (any free port) to 65535, got {self.port}")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise SettingsError(f"--batch-wait-ms must be from 0 to 1000, got {self.batch_wait_ms}")
        if self.max_n > self.max_batch:
            raise SettingsError(f"--max-n {self.max_n} is above --max-batch {self.max_batch}",
                                hint="one request's completions must fit in one batch: raise --max-batch or lower --max-n")

    @property
    def limits(self) -> Limits:
        return Limits(max_words=self.max_words, max_n=self.max_n, max_prompts=self.max_prompts,
                      max_prompt_chars=self.max_prompt_chars, max_rows=self.max_batch, max_body_bytes=self.max_body_bytes)

    @property
    def batching(self) -> BatchSettings:
        return BatchSettings(max_rows=self.max_batch, max_queue=self.max_queue, wait_seconds=self.batch_wait_ms / 1000)


def create_app(batcher: Batcher, settings: ServeSettings, model_name: str):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    limits = settings.limits
    started = int(time.time())

    def error_response(error: RequestError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    async def completions(request):
        try:
            parsed = parse_completion_request(await read_body(request, limits.max_body_bytes), limits)
            events: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            job = Job(parsed, lambda event: _post(loop, events, event))
            batcher.submit(job)
        except RequestError as error:
            return error_response(error)
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if parsed.stream:
            return StreamingResponse(_sse(job, events, completion_id, created, model_name),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        texts, reasons = [""] * parsed.rows, ["length"] * parsed.rows
        try:
            while True:
                event = await events.get()
                if event[0] == "text":
                    texts[event[1]] += event[2]
                elif event[0] == "finish":
                    reasons[event[1]] = event[2]
                elif event[0] == "error":
                    return error_response(event[1])
                else:
                    return JSONResponse(completion_body(completion_id, created, model_name,
                                                        list(zip(texts, reasons)), event[1], event[2]))
        finally:
            job.cancelled = True  # answered, or the client went away: its rows stop counting

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": model_name, "object": "model", "created": started, "owned_by": "nextword"}]})

    async def health(request):
        return JSONResponse({"status": "ok", "model": model_name, "queued": batcher.queued,
                             "batches_under_way": batcher.active_groups, **batcher.counters})

    async def http_error(request, error: HTTPException):
        message = {404: f"no route {request.url.path}: this server answers POST /v1/completions, GET /v1/models "
                        "and GET /health",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
        return error_response(RequestError(error.status_code, message, code="not_found" if error.status_code == 404
                                           else "method_not_allowed"))

    async def bug(request, error: Exception):
        return error_response(RequestError(500, f"internal error: {type(error).__name__}: {error}",
                                           code="internal_error", kind="server_error"))

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"]),
                             Route("/health", health, methods=["GET"])],
                     exception_handlers={HTTPException: http_error, Exception: bug})


def _post(loop, events: asyncio.Queue, event: tuple) -> None:
    try:
        loop.call_soon_threadsafe(events.put_nowait, event)
    except RuntimeError:  # the event loop has closed (server stopping)
        pass


async def read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body holds {declared} bytes; this server accepts at most {limit}",
                           code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body passed {limit} bytes, the most this server accepts",
                               code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _sse(job: Job, events: asyncio.Queue, completion_id: str, created: int, model: str):
    """OpenAI's stream: a chunk per piece of text, a chunk with each choice's finish_reason, the usage
    chunk when asked for, then `data: [DONE]`. An error after the start arrives as an error event."""
    request: CompletionRequest = job.request
    try:
        while True:
            event = await events.get()
            if event[0] == "text":
                yield stream_chunk(completion_id, created, model, event[1], event[2])
            elif event[0] == "finish":
                yield stream_chunk(completion_id, created, model, event[1], "", event[2])
            elif event[0] == "error":
                yield f"data: {json.dumps(event[1].body())}\n\n"
                break
            else:
                if request.include_usage:
                    yield stream_chunk(completion_id, created, model, None, usage_record=usage(event[1], event[2]))
                break
        yield STREAM_END
    finally:
        job.cancelled = True  # the client may have gone: its rows stop counting


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), IPv4 or IPv6 as the host is."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def default_model_name(export_dir: str) -> str:
    """RUN_DIR/export -> RUN_DIR's name; any other export dir -> its own name."""
    path = os.path.abspath(export_dir)
    return os.path.basename(os.path.dirname(path) if os.path.basename(path) == "export" else path) or "nextword"


def bind_error(error: OSError, settings: ServeSettings) -> SettingsError:
    """The message for a socket that cannot be bound (port in use, address not on this machine)."""
    return SettingsError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}",
                         hint="choose another --port (0 picks a free one), or stop the program holding it")


class Server:
    """A generator served on a socket: `run()` until Ctrl-C, or `start()` in a thread and `stop()`
    (tests, bench). `url` is http://host:port with the port actually bound."""

    def __init__(self, generator, settings: ServeSettings):
        import uvicorn

        self.settings = settings
        self.batcher = Batcher(generator, settings.batching)
        self.model_name = name = settings.model_name or default_model_name(generator.export_dir)
        self.socket = bind(settings.host, settings.port)
        host, port = self.socket.getsockname()[:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        config = uvicorn.Config(create_app(self.batcher, settings, name), log_level="warning", access_log=False,
                                timeout_keep_alive=30, timeout_graceful_shutdown=5)
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self.batcher.start()
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.batcher.stop()

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.run, name="nextword-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.socket.close()
