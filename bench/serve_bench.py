"""`nextword serve`: batching (16 concurrent clients vs 1), latency, and 1,000 mixed good and bad requests.

    python bench/serve_bench.py [EXPORT_DIR] [--demo default|transformer] [--rounds 3] [--seconds 10]
    python bench/serve_bench.py EXPORT_DIR --compiled   # `serve` against `serve --compiled`, alternating each round
    python bench/serve_bench.py --library     # the HTTP library choice: requests/s of a tiny JSON POST

The server runs as `python -m nextword serve` in its own process; clients are threads with keep-alive
http.client connections, each sending its next request as soon as the last is answered (prompt
gen_bench.PROMPT, max_tokens 30 words, temperature 0.8, no seed). A round measures 1 client, then 16,
`seconds` each: words/s (usage.completion_tokens summed), p50/p99 latency, and the server's batches
(/health counters). Then 1,000 requests from 16 threads, a third of them bad (broken JSON, wrong types,
unknown fields, too long, too large, n too big), a sixth streamed, some dropped mid-stream: every good one
must get its words, every bad one a 4xx JSON error, and the server must still answer /health.

--compiled: two servers of the same export, as saved and `--compiled` (a third with --baseline DIR: the
`serve` of another checkout), all warmed up (every shape the load makes compiled first); each round times 1
and 16 clients on each, the order rotating between rounds, and reports each / saved in the same round. The
1,000 mixed requests then go to the compiled one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen_bench import PROMPT, demo_export  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = {"prompt": PROMPT, "max_tokens": 30, "temperature": 0.8}


def run_threads(target, count: int) -> float:
    """target(0) .. target(count - 1), each in a thread of its own, all at once; the wall seconds."""
    started = time.perf_counter()
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export_dir: str, port: int, *options: str, repo: str = REPO) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": repo}
    process = subprocess.Popen([sys.executable, "-m", "nextword", "serve", os.path.abspath(export_dir), "--port", str(port),
                                *options],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=repo)  # `-m` puts the working directory first on sys.path
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                return process
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read())
    raise RuntimeError("the server did not start")


def request(port: int, method: str, path: str, body: bytes | None = None, connection=None) -> tuple[int, bytes]:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
    response = conn.getresponse()
    data = response.read()
    if connection is None:
        conn.close()
    return response.status, data


def load(port: int, clients: int, seconds: float) -> dict:
    words, latencies, failures = [0] * clients, [], []
    end = time.monotonic() + seconds
    body = json.dumps(GOOD).encode()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < end:
            started = time.perf_counter()
            status, data = request(port, "POST", "/v1/completions", body, conn)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
                continue
            words[index] += json.loads(data)["usage"]["completion_tokens"]
        conn.close()

    before = json.loads(request(port, "GET", "/health")[1])
    elapsed = run_threads(client, clients)
    after = json.loads(request(port, "GET", "/health")[1])
    latencies.sort()
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": len(latencies), "failures": len(failures),
            "words_per_s": round(sum(words) / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
            "rows_per_batch": round((after["rows"] - before["rows"]) / max(batches, 1), 2)}


BAD_BODIES = [b"{oops", b"[]", b'{"prompt": 3}', b'{"prompt": "a", "max_tokens": "9"}', b'{"prompt": "a", "n": 1000}',
              b'{"prompt": "a", "colour": 1}', b'{"prompt": "a", "echo": true}', b'{"prompt": "a", "temperature": -1}',
              json.dumps({"prompt": "a" * 5000}).encode(), json.dumps({"prompt": ["a"] * 100}).encode(),
              json.dumps({"prompt": "a", "max_tokens": 10 ** 9}).encode(), b"x" * (2 << 20)]


def good_body(rng: random.Random) -> dict:
    body = {"prompt": rng.choice([PROMPT, [PROMPT, "with"], ""]), "max_tokens": rng.randint(1, 40),
            "temperature": rng.choice([0, 0.7, 1.0]), "n": rng.randint(1, 3)}
    if rng.random() < 0.3:
        body["stop"] = rng.choice(["w1", ["w2", "w3"], "night"])
    if rng.random() < 0.2:
        body["seed"] = rng.randint(0, 100)
    return body


def mixed(port: int, total: int = 1000, clients: int = 16) -> dict:
    counts = {"good": 0, "good_answered": 0, "bad": 0, "bad_4xx_json": 0, "dropped_streams": 0, "problems": []}
    lock = threading.Lock()
    jobs = list(range(total))

    def one(rng: random.Random) -> None:
        kind = rng.random()
        if kind < 1 / 3:
            body = rng.choice(BAD_BODIES)
            status, data = request(port, "POST", "/v1/completions", body)
            ok = 400 <= status < 500 and "error" in json.loads(data)
            with lock:
                counts["bad"] += 1
                counts["bad_4xx_json"] += ok
                if not ok:
                    counts["problems"].append((status, data[:200]))
            return
        body = good_body(rng)
        if kind < 0.5:  # streamed; one in four dropped after the first event
            body["stream"] = True
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
            response = conn.getresponse()
            if rng.random() < 0.25:
                response.readline()
                conn.close()
                with lock:
                    counts["dropped_streams"] += 1
                return
            text = response.read().decode()
            ok = response.status == 200 and text.endswith("data: [DONE]\n\n")
            conn.close()
        else:
            status, data = request(port, "POST", "/v1/completions", json.dumps(body).encode())
            choices = json.loads(data).get("choices", []) if status == 200 else []
            prompts = 1 if isinstance(body["prompt"], str) else len(body["prompt"])
            ok = len(choices) == prompts * body["n"] and all(
                len(choice["text"].split()) <= body["max_tokens"] for choice in choices)
        with lock:
            counts["good"] += 1
            counts["good_answered"] += ok
            if not ok:
                counts["problems"].append(body)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            with lock:
                if not jobs:
                    return
                jobs.pop()
            try:
                one(rng)
            except Exception as error:  # noqa: BLE001  (counted: the bench reports it)
                with lock:
                    counts["problems"].append(repr(error))

    counts["seconds"] = round(run_threads(worker, clients), 1)
    counts["health_after"] = request(port, "GET", "/health")[0]
    counts["problems"] = counts["problems"][:5]
    return counts


def library_round(seconds: float = 3) -> dict:
    """requests/s of a JSON POST echo: Starlette on uvicorn (httptools + uvloop; h11 + asyncio) vs the
    standard library's ThreadingHTTPServer (Nagle off), each server in its own process."""
    import multiprocessing

    results = {}
    for name in ("stdlib", "uvicorn-httptools-uvloop", "uvicorn-h11-asyncio"):
        port = free_port()
        process = multiprocessing.get_context("spawn").Process(target=_echo_server, args=(name, port), daemon=True)
        process.start()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        for clients in (1, 16):
            done = [0] * clients
            end = time.monotonic() + seconds

            def client(index: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                while time.monotonic() < end:
                    request(port, "POST", "/", b'{"prompt": "the cat", "max_tokens": 8}', conn)
                    done[index] += 1

            threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            results[f"{name} x{clients}"] = round(sum(done) / seconds)
        process.terminate()
        process.join()
    return results


def _echo_server(name: str, port: int) -> None:
    if name == "stdlib":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms for the client's delayed ACK

            def log_message(self, *arguments):
                pass

            def do_POST(self):
                out = json.dumps({"ok": len(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        return
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request):
        return JSONResponse({"ok": len(json.loads(await request.body()))})

    http, loop = ("httptools", "uvloop") if "httptools" in name else ("h11", "asyncio")
    uvicorn.run(Starlette(routes=[Route("/", echo, methods=["POST"])]), host="127.0.0.1", port=port,
                log_level="warning", http=http, loop=loop)


def compare_compiled(export_dir: str, rounds: int, seconds: float, baseline: str | None = None) -> None:
    """`serve` and `serve --compiled` (and `baseline`'s `serve`: a checkout of another commit, whose tree holds
    the nextword package as this one does), the order rotating each round; ratios to `saved` in the same round."""
    sides = {"saved": (REPO, []), "compiled": (REPO, ["--compiled"])}
    if baseline:
        sides["baseline"] = (os.path.abspath(baseline), [])
    ports = {side: free_port() for side in sides}
    servers = {side: start_server(export_dir, ports[side], *options, repo=repo) for side, (repo, options) in sides.items()}
    try:
        for side, port in ports.items():  # every shape the load makes, compiled before it is timed
            load(port, 16, 4), load(port, 1, 2)
        results = []
        for index in range(rounds):
            order = list(ports)[index % len(ports):] + list(ports)[: index % len(ports)]
            measured = {side: {"one": load(ports[side], 1, seconds), "sixteen": load(ports[side], 16, seconds)}
                        for side in order}
            ratios = {f"{side}_over_saved": {clients: round(measured[side][clients]["words_per_s"]
                                                            / max(measured["saved"][clients]["words_per_s"], 1e-9), 2)
                                             for clients in ("one", "sixteen")} for side in ports if side != "saved"}
            results.append({"round": index + 1, "order": order, **measured, **ratios})
            print(json.dumps(results[-1]), flush=True)
        print(json.dumps({"medians": {key: {clients: statistics.median(result[key][clients] for result in results)
                                            for clients in ("one", "sixteen")}
                                      for key in results[0] if key.endswith("_over_saved")}}), flush=True)
        print(json.dumps({"mixed_on_compiled": mixed(ports["compiled"]),
                          "servers_alive": all(server.poll() is None for server in servers.values())}), flush=True)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", nargs="?")
    parser.add_argument("--demo", default="default", choices=["default", "transformer"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--library", action="store_true")
    parser.add_argument("--compiled", action="store_true", help="time `serve` against `serve --compiled`")
    parser.add_argument("--baseline", help="with --compiled: a checkout of another commit whose `serve` is timed too")
    args = parser.parse_args()
    if args.library:
        for index in range(args.rounds):
            print(json.dumps({"round": index + 1, **library_round()}), flush=True)
        return
    if args.compiled:
        with tempfile.TemporaryDirectory() as scratch:
            compare_compiled(args.export_dir or demo_export(args.demo, scratch), args.rounds, args.seconds, args.baseline)
        return
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = args.export_dir or demo_export(args.demo, scratch)
        port = free_port()
        server = start_server(export_dir, port)
        try:
            rounds = []
            for index in range(args.rounds):
                one, many = load(port, 1, args.seconds), load(port, 16, args.seconds)
                rounds.append({"round": index + 1, "one": one, "sixteen": many,
                               "ratio": round(many["words_per_s"] / max(one["words_per_s"], 1e-9), 2)})
                print(json.dumps(rounds[-1]), flush=True)
            print(json.dumps({"median_ratio": statistics.median(r["ratio"] for r in rounds)}), flush=True)
            print(json.dumps({"mixed": mixed(port), "server_alive": server.poll() is None}), flush=True)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
