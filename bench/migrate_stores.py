#!/usr/bin/env python3
"""One-off: the eight JSON result files bench/ had before the one store, into it (bench/store.py), figures unchanged.

    python bench/migrate_stores.py OLD_DIR bench/results.json

OLD_DIR holds any of: results.json (bench/run's, the old format), tune_results.json, arch_results.json,
hardening_results.json, recipe_results.json, real_text_results.json, real_text_packing_results.json,
dedup_results.json. The entries they make replace those of the same (benchmark, run) in the store; the store's
other entries stay. For merging a branch that still wrote an old file: `git show BRANCH:bench/X.json > OLD/X.json`,
then this. Delete this script once no branch writes the old files.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402

SECTIONS = ("ingest", "reader", "loop", "quality", "generation", "scale", "layout", "tokenizer")
NOT_RECORDED = "not recorded"


def split_machine(machine: dict | None, code: str = NOT_RECORDED) -> tuple[dict, dict]:
    """An old store's machine dict (package versions inside) as (machine, versions)."""
    if not machine:
        return {"recorded": False}, {"code": code}
    machine = dict(machine)
    versions = machine.pop("versions", {})
    return machine, {**versions, "code": code}


def entry(date, machine, settings, figures, code: str = NOT_RECORDED, versions: dict | None = None) -> dict:
    machine, found = split_machine(machine, code)
    return {"date": date or NOT_RECORDED, "versions": versions or found, "machine": machine,
            "settings": settings, "figures": figures}


def migrate(old: str) -> dict:
    def read(name):
        with open(os.path.join(old, name)) as handle:
            return json.load(handle)

    def present(name):
        return os.path.exists(os.path.join(old, name))

    benchmarks: dict[str, dict[str, dict]] = {}

    def put(benchmark, run, value):
        benchmarks.setdefault(benchmark, {})[run] = value

    results = read("results.json") if present("results.json") else {}  # bench/run's; its tune, arch, hardening: copies
    meta = results.get("meta") or {}
    rerun = set(meta.get("rerun_sections") or SECTIONS)
    for section in SECTIONS if meta else ():
        if section in results:
            date = meta["date"] if section in rerun else meta.get("first_run", meta["date"])
            put(section, "full", entry(date, meta["machine"], {**meta["sizes"], "smoke": meta["smoke"]}, results[section]))
    if meta:
        summary = {"load_start": meta["load_start"], "load_end": meta["load_end"], "total_seconds": meta["total_seconds"],
                   "seconds": results.get("seconds", {}), "sections": [name for name in SECTIONS if name in rerun]}
        put("bench-run", "full", entry(meta["date"], meta["machine"], {**meta["sizes"], "smoke": meta["smoke"]}, summary))

    if present("tune_results.json"):
        tune = read("tune_results.json")
        settings = {"budget_seconds": tune["budget_seconds"], "final_budget_seconds": tune["final_budget_seconds"]}
        put("tune", "candidates", entry(tune["date"], tune["machine"], settings,
                                        {key: value for key, value in tune.items() if key not in ("date", "machine")}))

    arch = read("arch_results.json") if present("arch_results.json") else {}
    for run, row in arch.get("quality", {}).items():
        put("arch", run, entry(arch["quality_date"], arch["quality_machine"],
                               {"corpus": row["corpus"], "arm": row["arm"], "budget_s": row["budget_s"],
                                "flags": row.get("options", [])}, row))
    for corpus, baseline in (arch.get("baselines") or {}).items():
        put("arch", f"five_gram/{corpus}", entry(baseline.get("date"), arch["quality_machine"], {"corpus": corpus}, baseline))
    if "speed" in arch:
        speed = arch["speed"]
        put("arch", "speed", entry(arch["speed_date"], arch["speed_machine"],
                                   {key: speed[key] for key in ("words", "batch", "repeats")}, speed))

    hardening = read("hardening_results.json") if present("hardening_results.json") else {}
    for context in hardening.get("context", []):
        figures = {key: value for key, value in context.items() if key not in ("label", "date")}
        put("context", context["label"], entry(context["date"], None, {"run_dir": context["run_dir"], "corpus": context["corpus"],
                                                                       "horizon": context["horizon"]}, figures))
    if "eval_memory" in hardening:
        memory = hardening["eval_memory"]
        figures = {key: value for key, value in memory.items() if key not in ("date", "versions")}
        put("eval_memory", "latest", entry(memory["date"], None, {"vocab": sorted(int(v) for v in memory["vocab"])}, figures,
                                           versions={"summary": memory.get("versions", NOT_RECORDED), "code": NOT_RECORDED}))

    recipe = read("recipe_results.json") if present("recipe_results.json") else {}
    for row in recipe.get("rows", []):
        run = f"{row['corpus']}/{row['arm']}/{float(row['budget_s']):g}/{int(row['seed'])}"
        put("recipe", run, entry(row.get("date"), recipe.get("machine"),
                                 {key: row[key] for key in ("corpus", "arm", "flags", "budget_s", "seed")}, row,
                                 code=row.get("code", NOT_RECORDED)))
    for corpus, baseline in recipe.get("baselines", {}).items():
        put("recipe", f"five_gram/{corpus}", entry(baseline.get("date"), recipe.get("machine"), {"corpus": corpus}, baseline))
    for corpus, description in recipe.get("corpora", {}).items():
        put("recipe", f"corpus/{corpus}", entry(None, recipe.get("machine"), {"corpus": corpus}, {"description": description}))

    for name, run in (("real_text_results.json", "text-units"), ("real_text_packing_results.json", "packing")):
        if not present(name):
            continue
        real = read(name)
        figures = {key: value for key, value in real.items() if key not in ("date", "machine")}
        put("real_text", run, entry(real["date"], real["machine"], {"rounds": max(row["round"] for row in real["runs"]) + 1},
                                    figures))

    if not present("dedup_results.json"):
        return {"format": store.FORMAT, "benchmarks": benchmarks}
    dedup = read("dedup_results.json")
    after = dedup["after_fixes"]
    put("dedup", "after_fixes", entry(dedup["date"], after.get("machine"), {"command": dedup["command"]},
                                      {key: value for key, value in after.items() if key != "machine"}))
    put("dedup", "before_fixes", entry(dedup["date"], dedup["before_fixes"].get("machine"),
                                       {"command": dedup["command"], "note": "measured before the dedup fixes, same corpus"},
                                       {key: value for key, value in dedup["before_fixes"].items() if key != "machine"}))
    return {"format": store.FORMAT, "benchmarks": benchmarks}


def main() -> int:
    old, new = sys.argv[1:3]
    migrated = migrate(old)["benchmarks"]
    with store._locked(new):
        data = store.load(new)
        for benchmark, runs in migrated.items():
            data["benchmarks"].setdefault(benchmark, {}).update(runs)
        store.write(data, new)
    print({benchmark: len(runs) for benchmark, runs in migrated.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
