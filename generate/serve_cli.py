"""`nextword serve EXPORT_DIR`: the typer layer over `generate.server`.

Imports nothing heavy at module import (`--help` stays instant): TensorFlow, Starlette and uvicorn
load when the command runs. The options' defaults are ServeSettings'.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from nextword.clihelp import Command
from nextword.generate.server import ServeSettings  # no TensorFlow, Starlette or uvicorn at import

HELP = (
    "Serve an export over HTTP with an OpenAI-compatible API: POST /v1/completions (prompt, max_tokens "
    "counted in words, temperature, top_p, seed, stop, n, stream as server-sent events), GET /v1/models, "
    "GET /health. Requests that arrive together share one batched graph call; a request with a seed runs "
    "alone and gives what `gen --seed` gives. Requests past the limits below are refused with a JSON error "
    "(400/413; 503 when the queue is full), never crash the server. Ctrl-C stops it."
)


def serve_command(
    model_dir: str = typer.Argument(..., metavar="EXPORT_DIR", help="export dir, or a RUN_DIR holding export/"),
    host: str = typer.Option(ServeSettings.host, "--host", help="address to listen on (0.0.0.0: every interface; "
                             "there is no authentication)"),
    port: int = typer.Option(ServeSettings.port, "--port", help="port to listen on (0: any free port, printed at start)"),
    max_words: int = typer.Option(ServeSettings.max_words, "--max-words", help="most words (max_tokens) one completion may ask for"),
    max_n: int = typer.Option(ServeSettings.max_n, "--max-n", help="most completions (n) per prompt"),
    max_prompts: int = typer.Option(ServeSettings.max_prompts, "--max-prompts", help="most prompts in one request's list"),
    max_prompt_chars: int = typer.Option(ServeSettings.max_prompt_chars, "--max-prompt-chars", help="longest prompt, in characters"),
    max_batch: int = typer.Option(ServeSettings.max_batch, "--max-batch", help="most rows (prompts x n) in one graph call, and so in one request"),
    max_queue: int = typer.Option(ServeSettings.max_queue, "--max-queue", help="requests that may wait for the model; more get 503"),
    max_body_bytes: int = typer.Option(ServeSettings.max_body_bytes, "--max-body-bytes", help="largest request body; larger gets 413"),
    batch_wait_ms: float = typer.Option(ServeSettings.batch_wait_ms, "--batch-wait-ms", help="when idle, how long a request waits for "
                                        "others to share its graph call"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="the model id in responses and "
                                             "/v1/models (default: the run's directory name)"),
    compiled: bool = typer.Option(
        ServeSettings.compiled, "--compiled/--no-compiled", help="run graph calls of up to 8 rows with their sampling "
        "loop compiled by XLA: the same words, ~1.5-3x the words/s of a call on a CPU for the default export; larger "
        "calls run as saved. XLA compiles once per shape: rows are padded to a power of two and words rounded up "
        "to one, and the first request of each shape waits ~1.5-3.5 s (1 row x 16 words is compiled at start)"),
) -> None:
    settings = ServeSettings(**{name: value for name, value in locals().items() if name != "model_dir"})
    from nextword.generate.batching import MIN_COMPILED_WORDS
    from nextword.generate.generator import GenerateSettings, Generator
    from nextword.generate.server import COMPILED_MAX_ROWS, Server, bind_error
    from nextword.generate.session import warm_up
    from nextword.quiet import quiet_native_stderr

    with quiet_native_stderr():
        generator = Generator.load(model_dir, compiled=compiled, compiled_max_rows=COMPILED_MAX_ROWS)
    if compiled:
        print(f"compiling the sampling loop for 1 row x {MIN_COMPILED_WORDS} words (XLA, a few seconds)",
              file=sys.stderr, flush=True)
    warm_up(generator, GenerateSettings(words=MIN_COMPILED_WORDS) if compiled else None)
    try:
        server = Server(generator, settings)
    except OSError as error:
        raise bind_error(error, settings) from None
    print(f"serving {generator.export_dir} as {server.model_name!r} at {server.url} "
          f"(POST {server.url}/v1/completions; Ctrl-C stops)", file=sys.stderr, flush=True)
    server.run()


def register(app: typer.Typer) -> None:
    """Mount as `nextword serve`."""
    app.command("serve", help=HELP, cls=Command)(serve_command)
