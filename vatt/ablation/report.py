"""The ablation's table: per point, the mean and sample standard deviation over seeds of every
metric (plus step time and training steps), as CSV, JSON, a Markdown table and plots."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from typing import Sequence

from vatt import paths
from vatt.ablation.grid import Point
from vatt.plots import plot_ablation

# What a row reports besides the evaluation metrics (from each run's result).
RUN_FIGURES = ("step_s", "total_steps", "train_wall_s")


def _values(results: Sequence[dict], key: str) -> list[float]:
    out = []
    for r in results:
        v = r.get(key, r["metrics"].get(key))
        out.append(float(v) if v is not None else math.nan)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof 1; 0 for one value), count) of the finite values;
    (nan, nan, 0) when there are none."""
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return math.nan, math.nan, 0
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0), len(v)


def summarize(points: Sequence[Point], results: Sequence[dict],
              metrics: Sequence[str] | None = None) -> list[dict]:
    """One row per point that has results: {"point", <override keys>, "seeds", and for each
    metric m (every metric any run reported when None) m/mean, m/std}."""
    by_point = {p.label: [r for r in results if r["point"] == p.label] for p in points}
    if metrics is None:
        metrics = sorted({k for r in results for k in r["metrics"]})
    rows = []
    for p in points:
        runs = by_point[p.label]
        if not runs:
            continue
        row: dict = {"point": p.label, **dict(p.overrides),
                     "seeds": ",".join(str(r["seed"]) for r in runs)}
        for key in (*metrics, *RUN_FIGURES):
            mean, std, _ = mean_std(_values(runs, key))
            row[f"{key}/mean"], row[f"{key}/std"] = mean, std
        rows.append(row)
    return rows


def to_csv(rows: Sequence[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: Sequence[dict], columns: Sequence[str], scale: dict[str, float] | None = None
                ) -> str:
    """| point | seeds | col1 | ... | with "mean ± std" cells (each column times its scale,
    e.g. 1000 for seconds -> ms)."""
    scale = scale or {}
    head = "| point | seeds | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for r in rows:
        cells = []
        for c in columns:
            m, s = r.get(f"{c}/mean", math.nan), r.get(f"{c}/std", math.nan)
            k = scale.get(c, 1.0)
            cells.append("n/a" if not math.isfinite(m) else f"{m * k:.3g} ± {s * k:.2g}")
        n = len(str(r["seeds"]).split(","))
        lines.append(f"| {r['point']} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_labels(points: Sequence[Point]) -> list[str]:
    """Short tick labels: each override as <last key component>=<value>, one per line, repeats
    merged (model.video.droptoken_keep=0.5 and model.audio.droptoken_keep=0.5 read
    "droptoken_keep=0.5"). Full labels when shortening would make two points look alike."""
    short = []
    for p in points:
        values_by_name: dict[str, set[str]] = {}
        for k, v in p.overrides:
            values_by_name.setdefault(k.rsplit(".", 1)[-1], set()).add(v)
        # A short name that stands for two different values in this point keeps its full keys.
        parts = [f"{name}={v}" if len(values_by_name[name]) == 1 else f"{k}={v}"
                 for k, v in p.overrides for name in [k.rsplit(".", 1)[-1]]]
        short.append("\n".join(dict.fromkeys(parts)) or "baseline")
    if len(set(short)) < len(points):
        return [p.label.replace(" ", "\n") for p in points]
    return short


def write(workdir: str, points: Sequence[Point], results: Sequence[dict],
          plot_metrics: Sequence[str], title: str) -> dict[str, str]:
    """Writes results.json (every run), summary.json / summary.csv (mean and std per point)
    and summary.png (plot_metrics over the points). Returns {what: path}."""
    rows = summarize(points, results)
    out = {"results": os.path.join(workdir, "results.json"),
           "summary_json": os.path.join(workdir, "summary.json"),
           "summary_csv": os.path.join(workdir, "summary.csv")}
    paths.write_text(out["results"], json.dumps(list(results), indent=2))
    paths.write_text(out["summary_json"], json.dumps(rows, indent=2))
    paths.write_text(out["summary_csv"], to_csv(rows))
    labelled = [p for p in points if any(r["point"] == p.label for r in rows)]
    present = [m for m in plot_metrics if any(m in r["metrics"] or m in r for r in results)]
    if labelled and present:
        panels = {m: [_values([r for r in results if r["point"] == p.label], m)
                      for p in labelled] for m in present}
        out["plot"] = plot_ablation(plot_labels(labelled), panels,
                                    os.path.join(workdir, "summary.png"), title=title)
    return out
