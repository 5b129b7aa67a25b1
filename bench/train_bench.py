"""Reader, training-loop, quality and generation sections (the orchestrating side; workers run them).

Each section returns a plain dict of figures; bench/run collects them and writes the report.
"""

from __future__ import annotations

import json
import os

from arms import five_gram, train_arm
from common import BENCH, PYTHON, median, python_script, run_checked, run_measured


def reader_section(data_dir: str, windows: int, repeats: int, log=print) -> dict:
    measured = run_checked(python_script("train_worker", "reader", data_dir, "--windows", str(windows),
                                         "--repeats", str(repeats)))
    result = measured.json()
    result["share_of_ceiling"] = result["reader_windows_per_second"] / result["raw_windows_per_second"]
    log(f"  reader {result['reader_windows_per_second']:,.0f} windows/s = {result['share_of_ceiling']:.0%} of the raw "
        f"TFRecordDataset ceiling {result['raw_windows_per_second']:,.0f}")
    return result


def loop_section(data_dir: str, steps: int, fit_windows: int, repeats: int, log=print) -> dict:
    """The notebook's network at batch 512: our Trainer + reader vs the notebook's model.fit on one-hot arrays.

    The two sides alternate, one process each per round, so a change of load on the shared
    machine hits both; the ratio is of the medians over the rounds.
    """
    rounds = {"ours": [], "fit": []}
    for _ in range(repeats):
        rounds["ours"].append(run_checked(python_script(
            "train_worker", "loop", data_dir, "--preset", "notebook", "--batch-size", "512",
            "--steps", str(steps), "--repeats", "1")).json())
        rounds["fit"].append(run_checked(python_script(
            "notebook_recipe", "fit", data_dir, "--batch-size", "512", "--windows", str(fit_windows),
            "--repeats", "1")).json())
    default = run_checked(python_script("train_worker", "loop", data_dir, "--steps", str(steps),
                                        "--repeats", str(repeats))).json()
    ours, fit = dict(rounds["ours"][0]), dict(rounds["fit"][0])
    ours["windows_per_second_runs"] = [run["windows_per_second"] for run in rounds["ours"]]
    ours["windows_per_second"] = median(ours["windows_per_second_runs"])
    ours["input_wait_share"] = median(run["input_wait_share"] for run in rounds["ours"])
    fit["windows_per_second_runs"] = [median(run["windows_per_second_runs"]) for run in rounds["fit"]]
    fit["windows_per_second"] = median(fit["windows_per_second_runs"])
    ratio = ours["windows_per_second"] / fit["windows_per_second"]
    log(f"  notebook network: our loop {ours['windows_per_second']:,.0f} windows/s vs model.fit "
        f"{fit['windows_per_second']:,.0f} ({ratio:.2f}x, medians of {repeats} alternating rounds); input wait "
        f"{ours['input_wait_share']:.1%} (notebook net), {default['input_wait_share']:.1%} (default recipe)")
    for name, row in (("notebook network", ours), ("default recipe", default)):
        if "utilisation" in row:
            log(f"  {name}: {row['training_flops_per_window'] / 1e6:,.1f} MFLOP a window x {row['windows_per_second']:,.0f} "
                f"windows/s = {row['utilisation']:.0%} of the {row['peak_flops_per_second'] / 1e9:,.0f} GFLOP/s peak")
    return {"ours": ours, "fit": fit, "ratio": ratio, "target_ratio": 1.5, "default_recipe": default}


def quality_section(data_dir: str, work: str, budget: float, log=print) -> dict:
    """Equal training budget on the same data: --preset notebook vs the default recipe (exported), beside
    the interpolated modified Kneser-Ney 5-gram counted on the same train windows (arms.five_gram, cached)."""
    baseline = five_gram(data_dir, log=log)
    rows = {}
    for name, options in (("notebook", ["--preset", "notebook"]), ("default", [])):
        run_dir = os.path.join(work, f"quality-{name}")
        row = train_arm(data_dir, run_dir, budget, options, export=name == "default", keep=True)
        rows[name] = {"val": row["val"], "steps": row["steps"], "windows_per_second": row["windows_per_second"],
                      "parameters": row["parameters"], "model": row["model"], "batch_size": row["batch_size"],
                      "optimizer": row["optimizer"], "learning_rate": row["learning_rate"], "run_dir": run_dir}
        log(f"  {name}: perplexity {row['perplexity']:.1f}, top-1 {row['top1']:.3f} ({row['steps']} steps)")
    notebook, default = rows["notebook"]["val"], rows["default"]["val"]
    return {
        "budget_seconds": budget, "rows": rows,
        "accuracy_ratio": default["top1"] / notebook["top1"],
        "perplexity_ratio": default["perplexity"] / notebook["perplexity"],
        "baseline": baseline,  # {"error": ...} when it could not be counted: the report says not measured
        "vs_baseline": {} if "error" in baseline else {
            name: {"accuracy_ratio": row["val"]["top1"] / baseline["top1"],
                   "perplexity_ratio": row["val"]["perplexity"] / baseline["perplexity"]} for name, row in rows.items()},
        "reference": {"accuracy_ratio": 2.7, "perplexity_ratio": 0.2,
                      "note": "unidirectional LSTM, objective all, the issue's quick test"},
        "export_dir": os.path.join(rows["default"]["run_dir"], "export"),
    }


def generation_section(export_dir: str, notebook_words: int, words: int, batch: int, log=print) -> dict:
    """bench/gen_bench.py on the quality section's default-recipe export, in its own process."""
    code = (
        "import json, sys; sys.path.insert(0, %r); from gen_bench import benchmark_generation; "
        "print(json.dumps(benchmark_generation(%r, %d, %d, %d)))" % (BENCH, export_dir, notebook_words, words, batch)
    )
    result = run_checked([PYTHON, "-c", code]).json()
    result["words"], result["batch"] = words, batch
    log(f"  gen: 1 x {words} = {result['speedup_1_sample']:,.0f}x the notebook loop, {batch} x {words} = "
        f"{result[f'speedup_{batch}_samples']:,.0f}x; first word after {result['time_to_first_word_s']:.1f} s")
    return result


def scale_section(corpus: str | None, data_dir: str, timeout: float, worker_steps: int, log=print) -> dict:
    """Hook for bench/scale_bench.py (issue 6, another engineer's file): its
    `benchmark_beam_ingest(corpus_path)` (Beam DirectRunner vs local ingest windows/s) and
    `benchmark_workers(data_dir)` (training windows/s with 1 vs 2 workers), each in a subprocess.
    corpus None skips the Beam run (--smoke: DirectRunner alone takes a minute)."""
    if not os.path.exists(os.path.join(BENCH, "scale_bench.py")):
        log("  bench/scale_bench.py does not exist yet: section skipped")
        return {"skipped": "bench/scale_bench.py does not exist yet"}
    results = {}
    calls = (("benchmark_beam_ingest", f"{corpus!r}"), ("benchmark_workers", f"{data_dir!r}, steps={worker_steps}"))
    for name, arguments in calls:
        if name == "benchmark_beam_ingest" and corpus is None:
            continue
        code = ("import json, sys; sys.path.insert(0, %r); import scale_bench; "
                "print(json.dumps(scale_bench.%s(%s), default=str))" % (BENCH, name, arguments))
        measured = run_measured([PYTHON, "-c", code], timeout=timeout)
        if measured.returncode != 0:
            results[name] = {"error": f"exit {measured.returncode} after {measured.seconds:.0f} s: {measured.stderr[-1500:]}"}
        else:
            results[name] = measured.json()
        log(f"  {name}: {json.dumps(results[name])[:300]}")
    return results
