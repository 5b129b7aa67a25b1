"""Streaming (`gen --stream`, `gen -i`): what the chunked loop costs, and the first word's latency.

    python bench/stream_bench.py [EXPORT_DIR] [--demo default|transformer] [--repeats 5]

- words/s of 1 x 200 words: one `generate` call vs the chunked loop (`generate_start` +
  `generate_continue`) at fixed chunk sizes k and at gen's schedule (FIRST_CHUNK_STEPS doubling up
  to STREAM_CHUNK_STEPS); every figure the median of `repeats` runs (a noisy 2-core machine);
- in-process time to the first streamed word (start call + first chunk);
- `gen -i` in a subprocess: time from sending the second prompt's line (Enter) to the first byte of
  its sample on stdout, median over 3 sessions (each session also times prompts 3-5).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen_bench import PROMPT, demo_export  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: the first call builds kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def chunk_figures(generator, words: int, repeats: int, chunks=(1, 2, 4, 8, 16, 32, 64, 200)) -> dict:
    from nextword.generate.generator import FIRST_CHUNK_STEPS, STREAM_CHUNK_STEPS, GenerateSettings

    settings = GenerateSettings(words=words, seed=1)
    whole = median_seconds(lambda: generator.generate([PROMPT], settings), repeats)
    results = {"whole_call_words_per_s": round(words / whole, 1)}
    for k in chunks:
        seconds = median_seconds(lambda: list(generator.stream([PROMPT], settings, first_steps=k, steps=k)), repeats)
        results[f"chunk_{k}_words_per_s"] = round(words / seconds, 1)
    schedule = median_seconds(lambda: list(generator.stream([PROMPT], settings)), repeats)
    results[f"schedule_{FIRST_CHUNK_STEPS}_to_{STREAM_CHUNK_STEPS}_words_per_s"] = round(words / schedule, 1)

    def first_word():
        for progress in generator.stream([PROMPT], settings):
            if progress.words[0]:
                return

    results["in_process_first_word_ms"] = round(1000 * median_seconds(first_word, repeats), 2)
    return results


def read_line(process, timeout: float = 120) -> tuple[bytes, float]:
    """One line of the session's stdout, and the seconds to its first byte."""
    started = time.perf_counter()
    fd = process.stdout.fileno()
    first, line = None, b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no output from gen -i after {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise EOFError("gen -i ended")
        first = first if first is not None else time.perf_counter() - started
        line += chunk
    return line, first


def interactive_latencies(export_dir: str, prompts: int = 5) -> list[float]:
    """Seconds from Enter to the first byte of each prompt's sample (prompt 1 included)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nextword.generate.cli", export_dir, "-i", "--words", "30", "--seed", "1", "--stream"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO})
    latencies = []
    try:
        for index in range(prompts):
            process.stdin.write(f"{PROMPT} {index}\n".encode())
            process.stdin.flush()
            _, first = read_line(process)
            latencies.append(first)
        process.stdin.close()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", nargs="?")
    parser.add_argument("--demo", choices=["default", "transformer", "notebook"], default="default")
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=3)
    arguments = parser.parse_args()
    from nextword.generate.generator import Generator

    with tempfile.TemporaryDirectory() as scratch:
        export_dir = arguments.export_dir or demo_export(arguments.demo, scratch)
        generator = Generator.load(export_dir)
        results = {"export": arguments.export_dir or f"demo {arguments.demo} (random weights)",
                   "model": generator.card["model"]["arch"], "vocab_size": generator.card["vocab_size"],
                   **chunk_figures(generator, arguments.words, arguments.repeats)}
        sessions = [interactive_latencies(export_dir) for _ in range(arguments.sessions)]
    results["interactive_sessions_ms"] = [[round(1000 * seconds, 1) for seconds in session] for session in sessions]
    results["interactive_second_prompt_first_word_ms_median"] = round(
        1000 * statistics.median(session[1] for session in sessions), 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
