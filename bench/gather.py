"""The figures bench/report.py renders, gathered from the results store (bench/store.py).

The report's functions take one dict per section, in the shape each benchmark measured it; the store
holds them as entries keyed by benchmark and run. This module is the only place that knows which runs
make up a section (e.g. the arch table is every `CORPUS/ARM/BUDGET` run of "arch" plus its `five_gram/CORPUS`
runs), so a script that records through the store shows up in RESULTS.md without a change here unless
it adds a section.
"""

from __future__ import annotations

from store import entries

SECTIONS = ("ingest", "reader", "loop", "quality", "generation", "scale", "layout", "tokenizer")
FIVE_GRAM = "five_gram/"  # run-name prefix of a benchmark's 5-gram of one corpus
CORPUS = "corpus/"  # run-name prefix of a benchmark's description of one corpus


def run_sections(data: dict, run: str) -> dict:
    """bench/run's sections of `run` ("full" or "smoke") and the header's "meta", as bench/run measured them."""
    results, dates = {}, {}
    for section in SECTIONS:
        entry = entries(section, data=data).get(run)
        if entry is not None:
            results[section], dates[section] = entry["figures"], entry["date"]
    summary = entries("bench-run", data=data).get(run)
    if summary is None:
        return results
    figures = summary["figures"]
    meta = {"date": summary["date"], "smoke": summary["settings"].get("smoke", run == "smoke"),
            "load_start": figures["load_start"], "load_end": figures["load_end"],
            "total_seconds": figures["total_seconds"], "sizes": summary["settings"],
            "machine": {**summary["machine"], "versions": summary["versions"]}}
    older = sorted(date for section, date in dates.items() if section not in figures["sections"])
    if older:  # a partial rerun: the other sections' figures come from earlier runs
        meta["rerun_sections"], meta["first_run"] = list(figures["sections"]), older[0]
    results["meta"], results["seconds"] = meta, figures.get("seconds", {})
    return results


def tune(data: dict) -> dict | None:
    """bench/tune_defaults.py's candidates table (its latest run)."""
    runs = entries("tune", data=data)
    if not runs:
        return None
    entry = max(runs.values(), key=lambda entry: entry["date"])
    return {**entry["figures"], "date": entry["date"]}


def arch(data: dict) -> dict | None:
    """bench/arch_bench.py: its quality rows, each corpus's 5-gram, and the generation speed."""
    runs = entries("arch", data=data)
    quality = {run: entry for run, entry in runs.items() if run.count("/") == 2 and not run.startswith(FIVE_GRAM)}
    if not quality:
        return None
    gathered = {"quality": {run: entry["figures"] for run, entry in quality.items()},
                "quality_date": max(entry["date"] for entry in quality.values()),
                "baselines": {run[len(FIVE_GRAM):]: entry["figures"] for run, entry in runs.items() if run.startswith(FIVE_GRAM)}}
    if "speed" in runs:
        gathered["speed"], gathered["speed_date"] = runs["speed"]["figures"], runs["speed"]["date"]
    return gathered


def hardening(data: dict) -> dict | None:
    """bench/eval_memory.py's latest run and every labelled run of bench/context_bench.py."""
    gathered = {}
    memory = entries("eval_memory", data=data)
    if memory:
        entry = max(memory.values(), key=lambda entry: entry["date"])
        versions = entry["versions"]
        said = versions.get("summary") or f"TensorFlow {versions.get('tensorflow')}, Keras {versions.get('keras')}"
        gathered["eval_memory"] = {**entry["figures"], "date": entry["date"], "versions": said}
    context = entries("context", data=data)
    if context:
        gathered["context"] = [{"label": label, "date": entry["date"], **entry["figures"]} for label, entry in context.items()]
    return gathered or None


def recipe(data: dict) -> dict:
    """bench/recipe_bench.py's rows, each corpus's 5-gram and description, as its report reads them."""
    gathered: dict = {"rows": [], "baselines": {}, "corpora": {}}
    for run, entry in entries("recipe", data=data).items():
        if run.startswith(FIVE_GRAM):
            gathered["baselines"][run[len(FIVE_GRAM):]] = entry["figures"]
        elif run.startswith(CORPUS):
            gathered["corpora"][run[len(CORPUS):]] = entry["figures"]["description"]
        else:
            gathered["rows"].append(entry["figures"])
    return gathered


def everything(sections: dict, standalone: dict, run: str) -> dict:
    """What RESULTS.md renders: bench/run's sections of `run` from `sections` (a smoke run's own store, or the
    committed one), and the standalone scripts' figures from `standalone` (the committed store)."""
    return {**run_sections(sections, run), "tune": tune(standalone), "arch": arch(standalone),
            "hardening": hardening(standalone)}


def generated_tables(data: dict) -> dict:
    """name -> a function rendering that table from the store, for the `<!-- table: NAME -->` markers of the
    sections written by hand (bench/report.py `fill_generated_tables`)."""
    def recipe_report() -> str:
        from recipe_bench import report_markdown

        return report_markdown(recipe(data))

    def stored(benchmark: str, run: str, render: str):
        """The table `render` of bench/BENCHMARK_bench.py draws from the store's BENCHMARK/RUN entry."""
        def table() -> str:
            import importlib

            entry = entries(benchmark, data=data).get(run)
            if entry is None:
                return f"(no `{benchmark}/{run}` run stored)"
            return "\n".join(getattr(importlib.import_module(f"{benchmark}_bench"), render)(entry["figures"]))
        return table

    return {"recipe": recipe_report,
            "dedup-quality": stored("dedup", "eager-final", "quality_table"),
            "dedup-rounds": stored("dedup", "eager-final", "rounds_table"),
            "blend-shares": stored("blend", "bible-vim", "shares_table"),
            "blend-throughput": stored("blend", "bible-vim", "throughput_table"),
            "blend-throughput-quiet": stored("blend", "quiet", "throughput_table")}
