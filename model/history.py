"""RUN_DIR/history.json, TensorBoard scalars and the PNG plots.

history.json: {"steps": [{step, epoch, loss, windows_per_second}], "epochs": [{epoch, step,
train_loss, val_loss, val_perplexity, val_word_perplexity, val_tokens_per_word, val_top1, val_top5}],
"summary": {...}}. val_top1/val_top5 are absent for wordpiece datasets (see model.metrics).
"""

from __future__ import annotations

import io
import json
import sys

from nextword import storage
from nextword.errors import ArtifactError

HISTORY_FILE = "history.json"
PLOTS = "plots"
LOGS = "logs"


def write_scalar(name: str, value: float, step: int) -> None:
    """What tf.summary.scalar writes, without the tensorboard package (not a dependency here):
    a float32 tensor tagged for TensorBoard's "scalars" plugin."""
    import tensorflow as tf  # here, not at the top: `nextword plot` runs without TensorFlow
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


class History:
    def __init__(self, run_dir: str, chief: bool, resume_step: int = 0):
        self.run_dir = run_dir
        self.chief = chief
        self.record = {"steps": [], "epochs": [], "summary": {}}
        path = storage.join(run_dir, HISTORY_FILE)
        if resume_step and storage.exists(path):
            try:
                old = load_history(run_dir)
            except ArtifactError as error:
                # The history is a log, the checkpoint the state: keep the damaged file aside and train on.
                kept = f"{path}.damaged"
                if chief:
                    storage.rename(path, kept)
                    print(f"warning: {error.message}; kept it as {kept} and started a new history", file=sys.stderr)
                old = {}
            # Entries after the restored checkpoint were made by steps that are replayed now.
            self.record["steps"] = [row for row in old.get("steps", []) if row["step"] <= resume_step]
            self.record["epochs"] = [row for row in old.get("epochs", []) if row["step"] <= resume_step]
        import tensorflow as tf  # here, not at the top: `nextword plot` runs without TensorFlow

        self.writer = tf.summary.create_file_writer(storage.join(run_dir, LOGS)) if chief else None

    def log_steps(self, row: dict) -> None:
        self.record["steps"].append(row)
        self._scalars({"train/loss": row["loss"], "train/windows_per_second": row["windows_per_second"]}, row["step"])

    def log_epoch(self, row: dict) -> None:
        self.record["epochs"].append(row)
        scalars = {f"val/{key[4:]}": value for key, value in row.items() if key.startswith("val_")}
        self._scalars(scalars, row["step"])

    def _scalars(self, values: dict, step: int) -> None:
        if self.writer is None:
            return
        with self.writer.as_default():
            for name, value in values.items():
                write_scalar(name, value, step)
        self.writer.flush()

    def save(self, summary: dict | None = None) -> None:
        if summary is not None:
            self.record["summary"] = summary
        if self.chief:
            storage.write_atomic(storage.join(self.run_dir, HISTORY_FILE), json.dumps(self.record, indent=2) + "\n")


def load_history(run_dir: str) -> dict:
    path = storage.join(run_dir, HISTORY_FILE)
    if not storage.exists(path):
        raise ArtifactError(f"{run_dir} holds no {HISTORY_FILE}", hint="pass a RUN_DIR written by `nextword train`")
    damaged = (f"restore {HISTORY_FILE} from a copy; the same curves are in the TensorBoard logs "
               f"(tensorboard --logdir {storage.join(run_dir, LOGS)})")
    try:
        record = json.loads(storage.read_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON ({error}): it is truncated or damaged", hint=damaged) from None
    problem = _history_problem(record)
    if problem:
        raise ArtifactError(f"{path} is not a nextword training history: {problem}", hint=damaged)
    return record


def _history_problem(record) -> str | None:
    """What makes `record` unplottable, or None: {"steps": [...], "epochs": [...]} of rows with a
    numeric "step" and numbers (or null) as the plotted values."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    for key in ("steps", "epochs"):
        rows = record.get(key, [])
        if not isinstance(rows, list):
            return f'"{key}" is {type(rows).__name__}, expected a list'
        for index, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
                return f'"{key}"[{index}] has no numeric "step"'
            plotted = {key for _, (_, series) in FIGURES.items() for _, _, key in series}
            odd = [name for name in plotted if row.get(name) is not None and not isinstance(row[name], (int, float))]
            if odd:
                return f'"{key}"[{index}] holds a non-number in {odd[0]!r}'
    return None


FIGURES = {
    "loss.png": ("loss (cross-entropy, nats)", [("train loss (every target of the objective)", "steps", "loss"),
                                                ("validation loss (the window's last word)", "epochs", "val_loss")]),
    "accuracy.png": ("validation accuracy of the next word",
                     [("validation top-1", "epochs", "val_top1"), ("validation top-5", "epochs", "val_top5")]),
    "perplexity.png": ("validation perplexity (lower is better)",
                       [("validation perplexity per token", "epochs", "val_perplexity"),
                        ("validation perplexity per word", "epochs", "val_word_perplexity")]),
}


def _last_step(record: dict) -> int:
    return max([row["step"] for rows in (record.get("steps", []), record.get("epochs", [])) for row in rows] or [1])


def _draw(axes, title: str, series: list, record: dict) -> None:
    """One panel: a line per series; validation points marked and their last value written beside them."""
    drawn = []
    for label, rows_key, key in series:
        points = [(row["step"], row[key]) for row in record.get(rows_key, []) if row.get(key) is not None]
        if not points or points in drawn:  # per-word perplexity of a word dataset: the per-token line again
            continue
        drawn.append(points)
        is_validation = rows_key == "epochs"
        (line,) = axes.plot(*zip(*points), marker="o" if is_validation else None, linewidth=2 if is_validation else 1.2,
                            label=label)
        if is_validation:
            step, value = points[-1]
            text = f"{value:.1%}" if "top" in key else f"{value:.2f}"
            axes.annotate(text, (step, value), xytext=(5, 4), textcoords="offset points", fontsize=8, color=line.get_color())
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("training step")
    axes.set_xlim(0, _last_step(record) * 1.05)  # same range in every panel, even with one validation point
    if "accuracy" in title:
        axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize=8)
        values = [line.get_ydata() for line in axes.get_lines()]
        low = min(min(v) for v in values)
        if "perplexity" in title and low > 0 and max(max(v) for v in values) / low > 4:
            axes.set_yscale("log")
    else:
        validated = any(row.get("val_loss") is not None for row in record.get("epochs", []))
        # validated but no accuracy: a wordpiece run, whose targets are pieces, not words
        note = ("no next-word accuracy:\nthe dataset's tokens are word pieces" if validated
                else "no validation yet:\nthe first epoch has not finished")
        axes.text(0.5, 0.5, note, ha="center", va="center", transform=axes.transAxes, color="grey")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_history(run_dir: str) -> list[str]:
    """Write loss.png, accuracy.png, perplexity.png and overview.png (all three side by side)
    into RUN_DIR/plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = load_history(run_dir)
    storage.makedirs(storage.join(run_dir, PLOTS))
    images = {}
    for name, (title, series) in FIGURES.items():
        figure, axes = plt.subplots(figsize=(6, 4))
        _draw(axes, title, series, record)
        images[name] = _png(figure)
        plt.close(figure)
    figure, panels = plt.subplots(1, 3, figsize=(15, 4))
    for axes, (title, series) in zip(panels, FIGURES.values()):
        _draw(axes, title, series, record)
    images["overview.png"] = _png(figure)
    plt.close(figure)
    written = []
    for name, data in images.items():
        path = storage.join(run_dir, PLOTS, name)
        storage.write_atomic(path, data)
        written.append(path)
    return written
