"""RUN_DIR/history.json, TensorBoard scalars and the PNG plots.

history.json: {"steps": [{step, epoch, loss, windows_per_second}], "epochs": [{epoch, step,
train_loss, val_loss, val_perplexity, val_top1, val_top5}], "summary": {...}}.
"""

from __future__ import annotations

import io
import json

import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError

HISTORY_FILE = "history.json"
PLOTS = "plots"
LOGS = "logs"


def write_scalar(name: str, value: float, step: int) -> None:
    """What tf.summary.scalar writes, without the tensorboard package (not a dependency here):
    a float32 tensor tagged for TensorBoard's "scalars" plugin."""
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
            old = json.loads(storage.read_text(path))
            # Entries after the restored checkpoint were made by steps that are replayed now.
            self.record["steps"] = [row for row in old.get("steps", []) if row["step"] <= resume_step]
            self.record["epochs"] = [row for row in old.get("epochs", []) if row["step"] <= resume_step]
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
    return json.loads(storage.read_text(path))


def plot_history(run_dir: str) -> list[str]:
    """Write loss.png, accuracy.png and perplexity.png into RUN_DIR/plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = load_history(run_dir)
    steps, epochs = record.get("steps", []), record.get("epochs", [])
    storage.makedirs(storage.join(run_dir, PLOTS))
    figures = {
        "loss.png": [("train loss", steps, "loss"), ("validation loss", epochs, "val_loss")],
        "accuracy.png": [("validation top-1", epochs, "val_top1"), ("validation top-5", epochs, "val_top5")],
        "perplexity.png": [("validation perplexity", epochs, "val_perplexity")],
    }
    written = []
    for name, series in figures.items():
        figure, axes = plt.subplots(figsize=(6, 4))
        for label, rows, key in series:
            points = [(row["step"], row[key]) for row in rows if row.get(key) is not None]
            if points:
                axes.plot(*zip(*points), marker="o" if rows is epochs else None, label=label)
        axes.set_xlabel("step")
        axes.set_title(name[:-4])
        axes.grid(alpha=0.3)
        axes.legend()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        path = storage.join(run_dir, PLOTS, name)
        storage.write_atomic(path, buffer.getvalue())
        written.append(path)
    return written
