"""PNG charts of the comparison (matplotlib, Agg). Small figures: each file stays well under 200 KB."""

from __future__ import annotations

import os

GB = 1 << 30
NOTEBOOK, NEXTWORD = "#b0b0b0", "#1f77b4"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    _pyplot().close(figure)
    return path


def _label_bars(axes, bars, texts) -> None:
    for bar, text in zip(bars, texts):
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)


def ingest_chart(section: dict, directory: str) -> str:
    plt = _pyplot()
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = [f"{row['bytes'] / 1e6:,.0f} MB" for row in section["corpora"]]
    positions = range(len(labels))
    width = 0.38
    for offset, side, color, name in ((-width / 2, "notebook", NOTEBOOK, "notebook recipe"),
                                      (width / 2, "nextword", NEXTWORD, "nextword ingest")):
        rows = [row[side] for row in section["corpora"]]
        rates = [0 if row.get("out_of_memory") else row["windows_per_second"] for row in rows]
        peaks = [row.get("killed_at_bytes") or row["peak_rss_bytes"] for row in rows]
        bars = speed.bar([p + offset for p in positions], rates, width, color=color, label=name)
        _label_bars(speed, bars, ["out of\nmemory" if row.get("out_of_memory") else f"{rate / 1e3:,.0f}K"
                                  for row, rate in zip(rows, rates)])
        bars = memory.bar([p + offset for p in positions], [peak / GB for peak in peaks], width, color=color, label=name,
                          hatch=None)
        _label_bars(memory, bars, [("killed " if row.get("out_of_memory") else "") + f"{peak / GB:.1f}"
                                   for row, peak in zip(rows, peaks)])
    speed.set_title("windows written per second (end to end)")
    memory.set_title("peak RSS of the process tree (GB)")
    for axes in (speed, memory):
        axes.set_xticks(list(positions), labels)
        axes.grid(axis="y", alpha=0.3)
        axes.margins(y=0.2)
    speed.legend(fontsize=8)
    return _save(figure, directory, "ingest.png")


def loop_chart(reader: dict | None, loop: dict | None, directory: str) -> str:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    if reader:
        values = [reader["raw_windows_per_second"], reader["reader_windows_per_second"]]
        bars = left.bar(["raw TFRecordDataset\n(ceiling)", "make_dataset"], [v / 1e3 for v in values],
                        color=[NOTEBOOK, NEXTWORD])
        _label_bars(left, bars, [f"{v / 1e3:,.0f}K" for v in values])
    left.set_title("reader: thousand windows/s")
    if loop:
        values = [loop["fit"]["windows_per_second"], loop["ours"]["windows_per_second"]]
        bars = right.bar(["notebook model.fit\n(one-hot numpy)", "nextword loop\n(tf.data reader)"], values,
                         color=[NOTEBOOK, NEXTWORD])
        _label_bars(right, bars, [f"{v:,.0f}" for v in values])
    right.set_title("notebook network, batch 512: windows/s")
    for axes in (left, right):
        axes.grid(axis="y", alpha=0.3)
        axes.margins(y=0.2)
    return _save(figure, directory, "loop.png")


def quality_chart(quality: dict, directory: str) -> str:
    plt = _pyplot()
    figure, (accuracy, perplexity) = plt.subplots(1, 2, figsize=(8, 3.4))
    names = ["notebook preset", "nextword default"]
    rows = [quality["rows"]["notebook"]["val"], quality["rows"]["default"]["val"]]
    bars = accuracy.bar(names, [row["top1"] for row in rows], color=[NOTEBOOK, NEXTWORD])
    _label_bars(accuracy, bars, [f"{row['top1']:.3f}" for row in rows])
    accuracy.set_title("held-out top-1 accuracy (higher is better)")
    bars = perplexity.bar(names, [row["perplexity"] for row in rows], color=[NOTEBOOK, NEXTWORD])
    _label_bars(perplexity, bars, [f"{row['perplexity']:.1f}" for row in rows])
    perplexity.set_title("held-out perplexity (lower is better)")
    for axes in (accuracy, perplexity):
        axes.grid(axis="y", alpha=0.3)
        axes.margins(y=0.2)
    figure.suptitle(f"equal budget: {quality['budget_seconds']:.0f} s of training each, 500-word vocabulary", fontsize=9)
    return _save(figure, directory, "quality.png")


def generation_chart(gen: dict, directory: str) -> str:
    plt = _pyplot()
    words, batch = gen["words"], gen["batch"]
    figure, axes = plt.subplots(figsize=(6.5, 3.4))
    names = ["notebook loop\n(predict per word)", f"gen 1 x {words}", f"gen {batch} x {words}\n(one call)"]
    values = [gen["notebook_words_per_s"], gen[f"gen_1x{words}_words_per_s"], gen[f"gen_{batch}x{words}_words_per_s"]]
    bars = axes.bar(names, values, color=[NOTEBOOK, NEXTWORD, NEXTWORD])
    _label_bars(axes, bars, [f"{v:,.0f}/s\n({v / values[0]:,.0f}x)" for v in values])
    axes.set_yscale("log")
    axes.set_title("words generated per second (log scale)")
    axes.grid(axis="y", alpha=0.3)
    axes.margins(y=0.3)
    return _save(figure, directory, "generation.png")


def tune_chart(tune: dict, directory: str) -> str:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    final_rows = tune.get("final_rows") or []
    for row in tune["rows"] + final_rows:
        c = row["candidate"]
        final = row in final_rows
        chosen = str(row["index"]) == str(tune["winner"]) and final == bool(final_rows)
        axes.scatter(row["val"]["perplexity"], row["val"]["top1"], s=60 if chosen else 30, marker="s" if final else "o",
                     color="#d62728" if chosen else (NEXTWORD if final else NOTEBOOK), zorder=3)
        axes.annotate(f"#{row['index']} {c['arch']} {c['layers']}x{c['units']} d{c['dropout']}", (row["val"]["perplexity"], row["val"]["top1"]),
                      fontsize=7, xytext=(4, 2), textcoords="offset points")
    axes.set_xlabel("held-out perplexity (lower is better)")
    axes.set_ylabel("held-out top-1")
    stages = f"grey: {tune['budget_seconds']:.0f} s" + (f", blue: {tune['final_budget_seconds']:.0f} s" if final_rows else "")
    axes.set_title(f"default-recipe candidates ({stages}; red: chosen)", fontsize=10)
    axes.grid(alpha=0.3)
    return _save(figure, directory, "tune.png")


def write_charts(results: dict, directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)

    def usable(key: str) -> dict | None:
        section = results.get(key)
        return section if section and "error" not in section else None

    written = []
    jobs = [
        ("ingest", lambda: ingest_chart(results["ingest"], directory)),
        ("loop", lambda: loop_chart(usable("reader"), usable("loop"), directory)),
        ("quality", lambda: quality_chart(results["quality"], directory)),
        ("generation", lambda: generation_chart(results["generation"], directory)),
        ("tune", lambda: tune_chart(results["tune"], directory)),
    ]
    for key, job in jobs:
        if usable(key) or (key == "loop" and usable("reader")):
            written.append(job())
    return written
