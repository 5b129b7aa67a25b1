#!/usr/bin/env python3
"""The training recipe's defaults chosen by measurement, and the recipe issue's targets checked.

    python bench/recipe_bench.py arms                    # each arm's flags and what they change (no training)
    python bench/recipe_bench.py run --corpora builtin,kjv,vim --arms default,notebook --budgets 180,720 --seeds 0
    python bench/recipe_bench.py run --smoke             # 3 s and 6 s arms on the embedded corpus, into a temp file
    python bench/recipe_bench.py report                  # markdown from the results store (bench/results.json)

One arm run = `nextword train DATA --out RUN --epochs 100000 --time-budget B --seed S --no-progress
--export [flags]`, then `nextword eval RUN/export DATA --json` (what `gen` samples from: the best
checkpoint's network, mixed with its 5-gram unless the arm turns that off; rows keep the network
alone's figures too, `network_perplexity`), each in its own process (bench/arms.py `train_arm`). Corpora: bench/real_corpora.py. Beside
them, the interpolated modified Kneser-Ney 5-gram (model/ngram.py, through bench/arms.py `five_gram`,
cached in bench/work/kneser-ney) counted on the same train windows and scored on the
same val windows. Each row is one entry of the results store (bench/results.json, benchmark "recipe",
run CORPUS/ARM/BUDGET/SEED); a rerun of one (corpus, arm, budget, seed) replaces its row. The grid runs corpus by corpus; inside a
corpus every round (seed) runs all (budget, arm) cells, reversed on odd rounds, so the shared
machine's drift spreads over arms instead of landing on one.

Before anything trains, every planned arm's flags go through `nextword train`'s own parser and
settings (no TensorFlow): an arm that resolves to the same recipe as `default` is skipped and said
so (e.g. `--learning-rate 1e-3` while 1e-3 is the default; `--weight-decay` without
`--optimizer adamw`, which the settings ignore).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from arms import five_gram, train_arm  # noqa: E402
from common import REPO, WORK, median  # noqa: E402
from gather import recipe as gathered  # noqa: E402
from markdown import Column  # noqa: E402
from markdown import table as markdown_table  # noqa: E402

sys.path.insert(1, REPO)  # nextword.model.cli for resolving arms

BENCHMARK = "recipe"  # its runs in the results store: CORPUS/ARM/BUDGET/SEED, five_gram/CORPUS, corpus/CORPUS

# name -> extra `nextword train` flags. Transformer arms change one thing from the default recipe
# (whatever it is at run time); both directions are listed where the default may sit at either end.
ARMS = {
    "default": [],
    "notebook": ["--preset", "notebook"],
    "alibi": ["--positions", "alibi"],
    "learned-positions": ["--positions", "learned"],
    "lstm": ["--arch", "lstm"],
    "lstm-lr-3e-3": ["--arch", "lstm", "--learning-rate", "3e-3"],
    "lstm-dropout-0.3": ["--arch", "lstm", "--dropout", "0.3"],
    "lr-3e-4": ["--learning-rate", "3e-4"],
    "lr-1e-3": ["--learning-rate", "1e-3"],
    "lr-2e-3": ["--learning-rate", "2e-3"],
    "lr-4e-3": ["--learning-rate", "4e-3"],
    "dropout-0": ["--dropout", "0"],
    "dropout-0.3": ["--dropout", "0.3"],
    "dropout-0.5": ["--dropout", "0.5"],
    # weight decay is adamw's (the settings refuse --weight-decay under another optimizer), so these name it
    "adamw": ["--optimizer", "adamw"],
    "adamw-wd-0": ["--optimizer", "adamw", "--weight-decay", "0"],
    "adamw-wd-0.3": ["--optimizer", "adamw", "--weight-decay", "0.3"],
    "tied": ["--tie-embeddings"],
    "untied": ["--no-tie-embeddings"],
    "cosine": ["--schedule", "cosine"],
    "constant": ["--schedule", "constant"],
    "wsd": ["--schedule", "wsd"],
    "wsd-lr-2e-3": ["--schedule", "wsd", "--learning-rate", "2e-3"],
    "batch-64": ["--batch-size", "64"],
    "batch-256": ["--batch-size", "256"],
    "units-256": ["--units", "256", "--heads", "4"],
    "units-64": ["--units", "64", "--heads", "4"],
    "layers-4": ["--layers", "4"],
    "clip-1": ["--clip-norm", "1.0"],
    "no-clip": ["--clip-norm", "0"],
    "no-early-stop": ["--patience", "0"],
    # 0.2's transformer: window positions, pads attended (model/transformer.py says why it changed)
    "see-padding": ["--no-ignore-padding"],
    # the embedded corpus (65K words) overfits after ~12 passes: is it short of regularisation?
    "tied-dropout-0.3": ["--tie-embeddings", "--dropout", "0.3"],
    "tied-dropout-0.5": ["--tie-embeddings", "--dropout", "0.5"],
    "units-64-dropout-0.3": ["--units", "64", "--heads", "4", "--dropout", "0.3"],
    "dropout-0.3-lr-3e-4": ["--dropout", "0.3", "--learning-rate", "3e-4"],
    # the export's n-gram (model/ngram_graph.py): the network alone, and other orders
    "ngram-0": ["--ngram-order", "0"],
    "ngram-3": ["--ngram-order", "3"],
    # the mixture without its context cache (model/context_cache.py): every export before 2026-12-06
    "no-cache": ["--no-context-cache"],
}
SMOKE_ARMS = ("default", "notebook", "lstm")
SMOKE_BUDGETS = (3.0, 6.0)  # stand-ins for 180 s and 720 s, so the report's target lines are exercised
TARGET_PERPLEXITY_RATIO = 1 / 3  # vs the notebook preset, at 180 s
TARGET_TOP1_RATIO = 1.5
SHORT, LONG = 180.0, 720.0  # the budgets the targets name
OVERHEAD_S = 45  # per run on 2 cores: two TensorFlow start-ups, validations, the final whole-split score, eval


# ---- plan and resolution (no training) --------------------------------------------------------

def plan(corpora: list[str], arms: list[str], budgets: list[float], seeds: list[int]) -> list[tuple]:
    """(corpus, budget, seed, arm) in run order: corpus by corpus; per round (seed) every
    (budget, arm) cell, the order reversed on odd rounds (ABBA), so drift spreads over arms."""
    order = []
    for corpus in corpora:
        cells = [(budget, arm) for budget in budgets for arm in arms]
        for round_index, seed in enumerate(seeds):
            for budget, arm in (cells if round_index % 2 == 0 else cells[::-1]):
                order.append((corpus, budget, seed, arm))
    return order


def resolve(flags: list[str], vocab_size: int = 500, context_length: int = 44) -> dict:
    """The recipe `nextword train [flags]` would use, through its own parser and settings (no TF):
    {"model": ModelConfig fields, "optimization": Optimization fields}. Raises on rejected flags."""
    import typer
    import typer.main

    from nextword.model.cli import register, train_settings

    app = typer.Typer()
    register(app)
    command = typer.main.get_command(app).commands["train"]
    settings = train_settings(command.make_context("train", ["DATA", "--out", "RUN", *flags]).params)
    return {"model": settings.model_config(vocab_size, context_length).to_dict(),
            "optimization": settings.optimization().to_dict(),
            "export": {"ngram_order": settings.export_ngram_order(),
                       "context_cache": settings.context_cache and settings.export_ngram_order() > 0}}


def changes(recipe: dict, default: dict) -> str:
    """"learning_rate 0.001 → 0.004, dropout 0.1 → 0.3": what `recipe` changes from `default`."""
    parts = []
    for group in ("model", "optimization", "export"):
        for name, value in recipe.get(group, {}).items():
            was = default.get(group, {}).get(name)
            if value != was and name not in ("vocab_size", "context_length"):
                parts.append(f"{name} {was:g} → {value:g}" if isinstance(value, float) and isinstance(was, float)
                             else f"{name} {was} → {value}")
    return ", ".join(parts) or "same as default"


def resolve_arms(arms: list[str], vocab_size: int = 500, context_length: int = 44) -> dict[str, dict]:
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    resolved = {}
    for arm in dict.fromkeys(["default", *arms]):
        try:
            resolved[arm] = resolve(ARMS[arm], vocab_size, context_length)
        except Exception as error:  # noqa: BLE001 - typer's usage errors and SettingsError alike
            raise SystemExit(f"arm {arm}: `nextword train` rejects {' '.join(ARMS[arm])}: {error}") from error
    return resolved


# ---- running ------------------------------------------------------------------------------------

def run_name(row: dict) -> str:
    """The row's run in the store: a rerun of one (corpus, arm, budget, seed) replaces it, other cells stay."""
    return f"{row['corpus']}/{row['arm']}/{float(row['budget_s']):g}/{int(row['seed'])}"


ROW = ("flags", "budget_s", "steps", "stopped_by", "best_step", "wall_seconds", "process_seconds", "windows_per_second",
       "parameters", "utilisation", "model", "optimization", "perplexity", "top1", "top5", "val_windows", "scored",
       "network_perplexity", "network_top1", "export", "ngram_network_weight", "ngram_cache_weight",
       "ngram_sample_perplexity", "load_before", "dataset_fingerprint", "date", "code")  # what a row keeps of the arm runner's


def one_run(corpus: str, data_dir: str, arm: str, budget: float, seed: int, scratch: str, keep: bool = False) -> dict:
    run_dir = os.path.join(scratch, f"{corpus}-{arm}-{budget:g}s-seed{seed}")
    row = train_arm(data_dir, run_dir, budget, ["--seed", str(seed), *ARMS[arm]], score_export=True, keep=keep)
    return {"corpus": corpus, "arm": arm, "seed": seed, **{key: row[key] for key in ROW}, "flags": ARMS[arm]}


def run(arguments) -> int:
    from real_corpora import CorpusUnavailable, build

    path = arguments.store
    dirs = {}
    for corpus in arguments.corpora:
        try:
            dirs[corpus], description = build(corpus, arguments.work)
        except CorpusUnavailable as error:
            raise SystemExit(f"{corpus}: {error}") from error
        store.record(BENCHMARK, f"corpus/{corpus}", {"description": description}, {"data_dir": dirs[corpus]}, path)
        print(f"{corpus}: {description}", flush=True)
    recipes = resolve_arms(arguments.arms)
    arms = [arm for arm in arguments.arms if arm == "default" or recipes[arm] != recipes["default"]]
    for arm in sorted(set(arguments.arms) - set(arms)):
        print(f"skipped arm {arm} ({' '.join(ARMS[arm])}): the same recipe as default at this checkout", flush=True)
    order = plan(arguments.corpora, arms, arguments.budgets, arguments.seeds)
    hours = sum(budget + OVERHEAD_S for _, budget, _, _ in order) / 3600
    print(f"plan: {len(order)} runs, about {hours:.1f} h of this machine; results: {path}", flush=True)
    os.makedirs(arguments.work, exist_ok=True)
    scratch = arguments.keep_runs or tempfile.mkdtemp(prefix="recipe-runs-", dir=None if arguments.smoke else arguments.work)
    os.makedirs(scratch, exist_ok=True)
    failed = []
    for index, (corpus, budget, seed, arm) in enumerate(order):
        if index == 0 or order[index - 1][0] != corpus:
            known = store.figures(BENCHMARK, f"five_gram/{corpus}", path)
            counted = five_gram(dirs[corpus], known, recount=arguments.refresh_baseline)
            if counted is not known:
                store.record(BENCHMARK, f"five_gram/{corpus}", counted, {"data_dir": dirs[corpus]}, path)
        measured = store.stamp()
        try:
            row = one_run(corpus, dirs[corpus], arm, budget, seed, scratch, keep=bool(arguments.keep_runs))
        except RuntimeError as error:
            failed.append((corpus, arm, budget, seed))
            print(f"{corpus} {arm} {budget:g} s seed {seed} FAILED: {str(error)[-1500:]}", file=sys.stderr, flush=True)
            continue
        store.record(BENCHMARK, run_name(row), row, {key: row[key] for key in ("corpus", "arm", "flags", "budget_s", "seed")},
                     path, measured)
        print(f"[{index + 1}/{len(order)}] {corpus:8} {arm:18} {budget:5g} s seed {seed}  ppl {row['perplexity']:8.2f}  "
              f"top-1 {row['top1'] or 0:.4f}  {row['steps']:6,} steps ({row['stopped_by']})  "
              f"{row['windows_per_second']:6,.0f} windows/s  (load {row['load_before']})", flush=True)
    if not arguments.keep_runs:
        shutil.rmtree(scratch, ignore_errors=True)
    results = gathered(store.load(path))
    print("\n" + report_markdown(results, min(arguments.budgets), max(arguments.budgets)) if arguments.smoke
          else "\n" + report_markdown(results))
    if failed:
        print(f"{len(failed)} run(s) failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


# ---- the report (pure: results dict in, markdown out) ------------------------------------------

def cells(rows: list[dict]) -> dict[tuple, dict]:
    """(corpus, arm, budget) -> medians over seeds, with the seeds' spread and how runs stopped."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["corpus"], row["arm"], float(row["budget_s"])), []).append(row)
    out = {}
    for key, group in grouped.items():
        def mid(name):
            values = [row[name] for row in group if row.get(name) is not None]
            return median(values) if values else None

        stops = {}
        for row in group:
            stops[row["stopped_by"]] = stops.get(row["stopped_by"], 0) + 1
        out[key] = {"seeds": len(group), "by_seed": {row.get("seed"): row for row in group},
                    "perplexity": mid("perplexity"), "top1": mid("top1"), "top5": mid("top5"),
                    "network_perplexity": mid("network_perplexity"), "network_top1": mid("network_top1"),
                    "ngram_weight": mid("ngram_network_weight"),
                    "steps": mid("steps"), "windows_per_second": mid("windows_per_second"),
                    "perplexity_range": (min(r["perplexity"] for r in group), max(r["perplexity"] for r in group)),
                    "stopped_by": stops, "recipe": {"model": group[0].get("model", {}),
                                                    "optimization": group[0].get("optimization", {}),
                                                    "export": group[0].get("export", {})},
                    "flags": group[0].get("flags", [])}
    return out


def beats(model: dict, baseline: dict) -> tuple[bool, bool]:
    """(lower perplexity, higher top-1): the model against the 5-gram."""
    return model["perplexity"] < baseline["perplexity"], (model["top1"] or 0) > baseline["top1"]


def matched(longer: dict, shorter: dict) -> tuple[dict, dict]:
    """The two cells over the seeds both budgets ran (medians of those), so that a seed only one budget ran does
    not decide "more time never hurts"; the cells as they are when they share no seed."""
    shared = sorted(set(longer.get("by_seed", {})) & set(shorter.get("by_seed", {})), key=str)
    if not shared:
        return longer, shorter

    def over_shared(cell: dict) -> dict:
        rows = [cell["by_seed"][seed] for seed in shared]
        return {"perplexity": median([row["perplexity"] for row in rows]),
                "top1": median([row["top1"] or 0 for row in rows]), "seeds": len(shared)}
    return over_shared(longer), over_shared(shorter)


def not_worse(longer: dict, shorter: dict) -> bool:
    """More time never hurts: held-out perplexity after the long budget at most the short one's (same seeds)."""
    longer, shorter = matched(longer, shorter)
    return longer["perplexity"] <= shorter["perplexity"]


def standing_ratios(model: dict, notebook: dict) -> tuple[float, float, bool, bool]:
    """(perplexity ratio, top-1 ratio, perplexity met, top-1 met) against the notebook preset."""
    perplexity = model["perplexity"] / notebook["perplexity"]
    top1 = (model["top1"] or 0) / notebook["top1"] if notebook["top1"] else float("inf")
    return perplexity, top1, perplexity <= TARGET_PERPLEXITY_RATIO, top1 >= TARGET_TOP1_RATIO


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def target_lines(corpus: str, table: dict, baseline: dict | None, short: float = SHORT,
                 long: float = LONG) -> tuple[list[str], dict]:
    """The issue's three targets for one corpus: markdown lines, and {target: True/False/None (not measured)}."""
    default, longer = table.get((corpus, "default", short)), table.get((corpus, "default", long))
    notebook = table.get((corpus, "notebook", short))
    lines, met = [], {"5-gram": None, "more time": None, "notebook": None}
    if default and baseline:
        lower, higher = beats(default, baseline)
        met["5-gram"] = lower and higher
        lines.append(f"- {short:g} s, default vs 5-gram: perplexity {default['perplexity']:.2f} vs {baseline['perplexity']:.2f} "
                     f"(beats: {_yes(lower)}), top-1 {default['top1'] or 0:.4f} vs {baseline['top1']:.4f} "
                     f"(beats: {_yes(higher)}): **{'met' if met['5-gram'] else 'not met'}**")
    else:
        lines.append(f"- {short:g} s, default vs 5-gram: not measured ({'no 5-gram' if default else f'no default run at {short:g} s'})")
    if default and longer:
        met["more time"] = not_worse(longer, default)
        long_cell, short_cell = matched(longer, default)
        lines.append(f"- {long:g} s vs {short:g} s, default, over the {long_cell['seeds']} seed(s) both ran: perplexity "
                     f"{long_cell['perplexity']:.2f} vs {short_cell['perplexity']:.2f}, top-1 {long_cell['top1'] or 0:.4f} vs "
                     f"{short_cell['top1'] or 0:.4f} (at least as good: {_yes(met['more time'])})")
    else:
        lines.append(f"- {long:g} s vs {short:g} s, default: not measured")
    if default and notebook:
        perplexity, top1, perplexity_met, top1_met = standing_ratios(default, notebook)
        met["notebook"] = perplexity_met and top1_met
        lines.append(f"- {short:g} s, default vs notebook: perplexity ×{perplexity:.3f} (target ≤ ×{TARGET_PERPLEXITY_RATIO:.3f}: "
                     f"{'met' if perplexity_met else 'not met'}), top-1 ×{top1:.2f} (target ≥ ×{TARGET_TOP1_RATIO:g}: "
                     f"{'met' if top1_met else 'not met'})")
    else:
        lines.append(f"- {short:g} s, default vs notebook: not measured")
    return lines, met


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _stops(stopped_by: dict) -> str:
    short = {"time_budget": "time", "early_stopping": "early"}
    return ", ".join(f"{short.get(name, name)} {count}" for name, count in sorted(stopped_by.items()))


def network_figure(cell: dict) -> float:
    """The network alone's perplexity: a mixed export's network_perplexity, else the row's own."""
    return cell.get("network_perplexity") or cell["perplexity"]


def _network(cell: dict) -> str:
    """The network alone beside a mixed export's figures; "=" when the export holds the network alone
    (--ngram-order 0, the notebook preset); "–" for rows scored before exports carried an n-gram."""
    if cell.get("network_perplexity") is None:
        return "–"
    if cell.get("ngram_weight") is None:
        return "="
    return f"{cell['network_perplexity']:.2f} / {_figure(cell['network_top1'])} ({cell['ngram_weight']:.2f})"


def corpus_table(corpus: str, table: dict, baseline: dict | None) -> list[str]:
    columns = [Column("arm", lambda cell: f"**{cell['arm']}**" if cell["arm"] in ("default", "notebook") else cell["arm"]),
               Column("changes from default", lambda cell: cell["what"]),
               Column("budget", lambda cell: f"{cell['budget']:g} s", True), Column("seeds", lambda cell: f"{cell['seeds']}", True),
               Column("perplexity (median, range)", lambda cell: f"{cell['perplexity']:.2f}" + (
                   " ({:.2f}–{:.2f})".format(*cell["perplexity_range"]) if cell["seeds"] > 1 else ""), True),
               Column("top-1", lambda cell: _figure(cell["top1"]), True), Column("top-5", lambda cell: _figure(cell["top5"]), True),
               Column("the network alone: perplexity / top-1 (its weight in the export)", _network, True),
               Column("steps", lambda cell: f"{cell['steps']:,.0f}", True),
               Column("windows/s", lambda cell: f"{cell['windows_per_second']:,.0f}", True),
               Column("stopped by", lambda cell: _stops(cell["stopped_by"]))]
    listed = []
    if baseline:
        listed.append(["**Kneser-Ney 5-gram**", "counted on the train windows", "–", "–", f"**{baseline['perplexity']:.2f}**",
                       f"**{baseline['top1']:.4f}**", _figure(baseline.get("top5")), "–", "–", "–", "–"])
    budgets = sorted({budget for (name, _, budget) in table if name == corpus})
    for budget in budgets:
        here = {arm: cell for (name, arm, at), cell in table.items() if name == corpus and at == budget}
        reference = (table.get((corpus, "default", budget)) or table.get((corpus, "default", min(budgets))) or {}).get("recipe")
        for arm, cell in sorted(here.items(), key=lambda item: item[1]["perplexity"]):
            what = changes(cell["recipe"], reference) if reference and arm != "default" else " ".join(cell["flags"]) or "–"
            listed.append({**cell, "arm": arm, "budget": budget, "what": what})
    return markdown_table(columns, listed)


def ranking_lines(table: dict, corpora: list[str], short: float = SHORT, long: float = LONG) -> list[str]:
    """Arms by their geometric-mean perplexity ratio to the default at 180 s over the corpora measured."""
    ratios: dict[str, dict[str, float]] = {}
    for (corpus, arm, budget), cell in table.items():
        default = table.get((corpus, "default", short))
        if budget == short and default and arm not in ("default", "notebook"):
            # the networks against each other: rows scored before exports carried an n-gram are the network
            # alone, and so is a mixed export's network_perplexity (an arm that changes the n-gram: its export)
            same_network = not any(flag.startswith("--ngram") for flag in cell["flags"])
            ratios.setdefault(arm, {})[corpus] = (network_figure(cell) if same_network else cell["perplexity"]) / network_figure(default)
    if not ratios:
        return []
    import math

    mean = {arm: math.exp(sum(map(math.log, by.values())) / len(by)) for arm, by in ratios.items()}
    lines = [f"Arms against the default at {short:g} s (the networks' perplexity ratio, < 1 is better; an `--ngram-order` "
             "arm: its export against the default's network; geometric mean over the corpora measured):", "",
             "| arm | " + " | ".join(corpora) + " | geometric mean |", "| --- |" + " ---: |" * (len(corpora) + 1)]
    for arm in sorted(mean, key=mean.get):
        per = " | ".join(f"×{ratios[arm][corpus]:.3f}" if corpus in ratios[arm] else "–" for corpus in corpora)
        lines.append(f"| {arm} | {per} | ×{mean[arm]:.3f} ({len(ratios[arm])}) |")
    finalists = [arm for arm in sorted(mean, key=mean.get) if mean[arm] < 1][:3]
    if finalists:
        lines += ["", f"Finalists (beat the default on the geometric mean): {', '.join(finalists)}; over seeds and both budgets: "
                  f"`python bench/recipe_bench.py run --corpora {','.join(corpora)} --arms default,{','.join(finalists)} "
                  f"--budgets {short:g},{long:g} --seeds 0,1,2`"]
    return lines


def report_markdown(results: dict, short: float = SHORT, long: float = LONG) -> str:
    """short, long: the budgets the targets compare (the issue's 180 s and 720 s; smaller in --smoke)."""
    rows = results.get("rows", [])
    if not rows:
        return "the results store holds no `recipe` runs: `python bench/recipe_bench.py run` first."
    table = cells(rows)
    known = ("builtin", "kjv", "vim")
    corpora = sorted({row["corpus"] for row in rows}, key=lambda name: (known.index(name) if name in known else 99, name))
    dates = sorted(row["date"] for row in rows)
    revisions = sorted({row.get("code", "unrecorded") for row in rows})
    out = [f"`bench/recipe_bench.py`, {len(rows)} runs from {dates[0]} to {dates[-1]} (code: {', '.join(revisions)}): "
           "each arm trains in its own `nextword train` process for its budget of training seconds, then `nextword "
           "eval` scores on the whole val split its export (what `gen` samples from: the best checkpoint's network "
           "mixed with its 5-gram, or the network alone for `--ngram-order 0` and the notebook preset) — rows whose "
           "'network alone' column is '–' ran before exports carried the 5-gram and scored the best checkpoint, the "
           "network alone; medians over seeds. Load average before each run is in bench/results.json.", ""]
    summary = {"5-gram": [], "more time": [], "notebook": []}
    for corpus in corpora:
        baseline = results.get("baselines", {}).get(corpus)
        out += [f"**{corpus}**: {results.get('corpora', {}).get(corpus, '')}", ""]
        out += corpus_table(corpus, table, baseline) + [""]
        lines, met = target_lines(corpus, table, baseline, short, long)
        out += lines + [""]
        for target, value in met.items():
            summary[target].append((corpus, value))
    names = {"5-gram": f"beat the 5-gram at {short:g} s", "more time": f"{long:g} s at least as good as {short:g} s",
             "notebook": f"≤ ×{TARGET_PERPLEXITY_RATIO:.3f} perplexity and ≥ ×{TARGET_TOP1_RATIO:g} top-1 vs the notebook at {short:g} s"}
    out.append("On every corpus:")
    for target, outcomes in summary.items():
        failing = [corpus for corpus, value in outcomes if value is False]
        missing = [corpus for corpus, value in outcomes if value is None]
        verdict = (f"no ({', '.join(failing)})" if failing else "yes" if not missing
                   else "yes where measured" if len(missing) < len(outcomes) else "not measured")
        out.append(f"- {names[target]}: {verdict}" + (f"; not measured on {', '.join(missing)}" if 0 < len(missing) < len(outcomes) else ""))
    ranking = ranking_lines(table, corpora, short, long)
    return "\n".join(out + ([""] + ranking if ranking else []))


# ---- the command line ----------------------------------------------------------------------------

def show_arms() -> int:
    recipes = resolve_arms(list(ARMS))
    for arm, flags in ARMS.items():
        print(f"{arm:18} {' '.join(flags) or '(no flags)':42} {changes(recipes[arm], recipes['default']) if arm != 'default' else ''}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("arms", help="each arm's flags and what they change from the default (no training)")
    r = sub.add_parser("run", help="train and score the grid, appending to the results file")
    listed = lambda cast: (lambda text: [cast(part) for part in text.split(",") if part])  # noqa: E731
    r.add_argument("--corpora", type=listed(str), default=["builtin", "kjv", "vim"])
    r.add_argument("--arms", type=lambda text: list(ARMS) if text == "all" else listed(str)(text), default=None,
                   help="comma-separated names (see `arms`), or all (the default; with --smoke: default,notebook,lstm)")
    r.add_argument("--budgets", type=listed(float), default=[SHORT])
    r.add_argument("--seeds", type=listed(int), default=[0])
    r.add_argument("--refresh-baseline", action="store_true", help="count the 5-gram again even when stored")
    r.add_argument("--smoke", action="store_true", help="3 s and 6 s arms (default, notebook, lstm) on the embedded corpus only, into a temp file")
    r.add_argument("--store", default=None, help="the results store (default bench/results.json; a temp file with --smoke)")
    r.add_argument("--work", default=WORK, help="where the corpora are built (default bench/work)")
    r.add_argument("--keep-runs", metavar="DIR", help="train the runs into DIR and keep them (e.g. for bench/context_bench.py); "
                   "default: a temporary directory under --work, removed at the end")
    p = sub.add_parser("report", help="markdown from the results store")
    p.add_argument("--store", default=store.STORE)
    arguments = parser.parse_args()
    if arguments.command == "arms":
        return show_arms()
    if arguments.command == "report":
        print(report_markdown(gathered(store.load(arguments.store))))
        return 0
    if arguments.smoke:
        arguments.corpora, arguments.budgets = ["builtin"], list(SMOKE_BUDGETS)
        arguments.arms = arguments.arms or list(SMOKE_ARMS)
        arguments.store = arguments.store or os.path.join(tempfile.mkdtemp(prefix="recipe-smoke-"), "results.json")
        if os.path.abspath(arguments.store) == store.STORE:
            parser.error("--smoke never writes bench/results.json: give another --store")
    arguments.store, arguments.arms = arguments.store or store.STORE, arguments.arms or list(ARMS)
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
