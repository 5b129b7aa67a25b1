"""`nextword serve EXPORT_DIR`: the typer layer over `generate.server`.

Imports nothing heavy at module import (`--help` stays instant): TensorFlow, Starlette and uvicorn
load when the command runs.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from nextword.clihelp import Command

HELP = (
    "Serve an export over HTTP with an OpenAI-compatible API: POST /v1/completions (prompt, max_tokens "
    "counted in words, temperature, top_p, seed, stop, n, stream as server-sent events), GET /v1/models, "
    "GET /health. Requests that arrive together share one batched graph call; a request with a seed runs "
    "alone and gives what `gen --seed` gives. Requests past the limits below are refused with a JSON error "
    "(400/413; 503 when the queue is full), never crash the server. Ctrl-C stops it."
)


def serve_command(
    model_dir: str = typer.Argument(..., metavar="EXPORT_DIR", help="export dir, or a RUN_DIR holding export/"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface; "
                             "there is no authentication)"),
    port: int = typer.Option(8000, "--port", help="port to listen on (0: any free port, printed at start)"),
    max_words: int = typer.Option(512, "--max-words", help="most words (max_tokens) one completion may ask for"),
    max_n: int = typer.Option(16, "--max-n", help="most completions (n) per prompt"),
    max_prompts: int = typer.Option(64, "--max-prompts", help="most prompts in one request's list"),
    max_prompt_chars: int = typer.Option(4000, "--max-prompt-chars", help="longest prompt, in characters"),
    max_batch: int = typer.Option(64, "--max-batch", help="most rows (prompts x n) in one graph call, and so in one request"),
    max_queue: int = typer.Option(256, "--max-queue", help="requests that may wait for the model; more get 503"),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", help="largest request body; larger gets 413"),
    batch_wait_ms: float = typer.Option(3.0, "--batch-wait-ms", help="when idle, how long a request waits for "
                                        "others to share its graph call"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="the model id in responses and "
                                             "/v1/models (default: the run's directory name)"),
) -> None:
    from nextword.generate.server import ServeSettings

    settings = ServeSettings(host=host, port=port, max_words=max_words, max_n=max_n, max_prompts=max_prompts,
                             max_prompt_chars=max_prompt_chars, max_batch=max_batch, max_queue=max_queue,
                             max_body_bytes=max_body_bytes, batch_wait_ms=batch_wait_ms, model_name=model_name)
    from nextword.generate.generator import Generator
    from nextword.generate.server import Server, bind_error
    from nextword.generate.session import warm_up
    from nextword.quiet import quiet_native_stderr

    with quiet_native_stderr():
        generator = Generator.load(model_dir)
    warm_up(generator)
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
