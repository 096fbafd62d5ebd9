r"""Layer-wise CKA between modalities of a pretrained VATT checkpoint.

    python -m vatt.alignment_report --workdir=/tmp/vatt_tiny [--num_clips=256] [--out=<dir>]

Loads the latest good checkpoint of a pretraining workdir (the model is rebuilt from
<workdir>/config.json, written by the train loop; pass --config=configs/pretrain.py:tiny with
the run's overrides for an older workdir), embeds the held-out synthetic clips with
return_layers=True and computes, between every video representation (each block's AGG output,
the pooled output, the common-space embedding) and every text / audio one:
  * linear CKA over all clips (Kornblith et al. 2019);
  * debiased linear CKA accumulated over minibatches (vatt.alignment.MinibatchCKA, Nguyen et
    al. 2021): unbiased HSIC summed over batches, so its value does not grow with the width
    of a layer the way the biased estimator does when d is comparable to n.
Writes <out>/cka_layers.json and <out>/cka_layers_video_text.png, cka_layers_video_audio.png
(default out: <workdir>/alignment). Reads the checkpoint only: safe while training runs. The
workdir and the output folder may be gs:// URLs (vatt.paths).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vatt import paths

PAIRS = {"video_text": ("video", "text", "vt"), "video_audio": ("video", "audio", "va")}


# ----------------------------------------------------------------------------- CKA matrices
def cka_matrices(xs: list[np.ndarray], ys: list[np.ndarray], batch_size: int
                 ) -> dict[str, np.ndarray]:
    """Linear CKA over all n examples and minibatch debiased CKA between every x and y.

    xs, ys: lists of [n, d_i] / [n, e_j] features of the same n examples.
    batch_size: minibatch size for the debiased accumulation (a last batch of 3 or fewer
      examples is left out: unbiased HSIC needs n > 3).
    Returns {"linear": [len(xs), len(ys)], "debiased_minibatch": [len(xs), len(ys)]}.
    """
    from vatt.alignment import MinibatchCKA
    from vatt.evaluation.zeroshot import linear_cka
    n = xs[0].shape[0]
    linear = np.array([[linear_cka(x, y) for y in ys] for x in xs])
    acc = MinibatchCKA(len(xs), len(ys))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if stop - start > 3:
            acc.update([x[start:stop] for x in xs], [y[start:stop] for y in ys])
    debiased = acc.result() if acc.num_batches else np.full_like(linear, np.nan)
    return {"linear": linear, "debiased_minibatch": debiased}


# ----------------------------------------------------------------------------- model
def restore(config, workdir: str):
    """(task, mesh, graphdef, params, rest, step) of the latest good checkpoint in workdir.

    The train state is the loop's own (vatt.train.state.create_train_state, abstract: nothing
    is allocated before the restore), replicated over the current mesh; the checkpoint is read
    by the loop's own restore path, read-only.
    """
    from vatt.parallel.mesh import make_mesh
    from vatt.tasks import build_task
    from vatt.train.checkpointing import Checkpointer
    from vatt.train.optimizer import build_optimizer
    from vatt.train.state import create_train_state

    mesh = make_mesh(config.mesh.data)
    task = build_task(config)
    tx, _ = build_optimizer(config.optimizer, config.total_steps)
    graphdef, abstract, _ = create_train_state(task, tx, mesh, int(config.seed), abstract=True)
    checkpointer = Checkpointer(workdir, read_only=True)
    try:
        restored = checkpointer.restore_latest(abstract)
    finally:
        checkpointer.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint that loads in {checkpointer.directory}")
    state = restored[0]
    return task, mesh, graphdef, state.params, state.rest, int(state.step)


def alignment_report(workdir: str, *, config=None, num_clips: int = 256,
                     batch_size: int | None = None, out_dir: str | None = None,
                     plots: bool = True) -> dict[str, Any]:
    """Computes and writes the report (see the module docstring); returns the JSON dict.

    config: the run's ConfigDict (default: <workdir>/config.json).
    batch_size: global batch for embedding and for the minibatch CKA (default
      config.eval.batch_size); must divide by the number of devices.
    """
    import jax

    from vatt.data import synthetic
    from vatt.evaluation.base import EvalContext
    from vatt.evaluation.zeroshot import held_out_features, layer_stack
    from vatt.train.loop import read_config_json
    # A bad location stops here, in one line, before anything is read or written.
    workdir = paths.check(workdir, "--workdir", "checkpoint")
    out_dir = paths.check(out_dir or paths.join(workdir, "alignment"), "--out", "epath")
    config = config if config is not None else read_config_json(workdir)
    batch_size = int(batch_size or config.eval.batch_size)
    task, mesh, graphdef, params, rest, step = restore(config, workdir)
    ctx = EvalContext(graphdef, params, rest, mesh, workdir, step)
    with jax.set_mesh(mesh):
        feats = held_out_features(ctx, synthetic.world_from_config(config.data), num_clips,
                                  batch_size)
    n = int(feats["video_pooled"].shape[0])
    report: dict[str, Any] = {"workdir": workdir, "step": step,
                              "num_clips": n, "batch_size": batch_size, "pairs": {}}
    for name, (mx, my, space) in PAIRS.items():
        x_labels, xs = layer_stack(feats, mx, space)
        y_labels, ys = layer_stack(feats, my, space)
        mats = cka_matrices(xs, ys, batch_size)
        report["pairs"][name] = {"x": mx, "y": my, "x_layers": x_labels, "y_layers": y_labels,
                                 **{k: np.round(v, 6).tolist() for k, v in mats.items()}}
    if jax.process_index() == 0:
        paths.makedirs(out_dir)
        paths.write_text(paths.join(out_dir, "cka_layers.json"), json.dumps(report, indent=2))
        if plots:
            from vatt import plots as plots_lib
            for name, pair in report["pairs"].items():
                plots_lib.plot_cka_heatmaps(
                    {"linear CKA (all clips)": np.array(pair["linear"]),
                     f"debiased CKA (minibatches of {batch_size})":
                         np.array(pair["debiased_minibatch"])},
                    paths.join(out_dir, f"cka_layers_{name}.png"), x_name=pair["x"],
                    y_name=pair["y"], x_labels=pair["x_layers"], y_labels=pair["y_layers"],
                    title=f"CKA between {pair['x']} and {pair['y']} representations, step {step} "
                    f"({n} held-out clips)")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A console table per modality pair (rows: video representations)."""
    lines = [f"CKA at step {report['step']} on {report['num_clips']} held-out clips "
             "(linear / debiased minibatch):"]
    for name, pair in report["pairs"].items():
        width = max(len(s) for s in pair["y_layers"] + ["x"]) + 2
        lines.append(f"  {pair['x']} (rows) vs {pair['y']} (columns)")
        lines.append(" " * 20 + "".join(f"{s:>{max(width, 13)}}" for s in pair["y_layers"]))
        for i, label in enumerate(pair["x_layers"]):
            cells = "".join(
                f"{pair['linear'][i][j]:.2f} / {pair['debiased_minibatch'][i][j]:5.2f}"
                .rjust(max(width, 13)) for j in range(len(pair["y_layers"])))
            lines.append(f"    {label:<16}" + cells)
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    from absl import flags, logging
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore step at INFO
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments {argv[1:]}: use --flag=value")
    f = flags.FLAGS
    problem = (paths.unsupported(f.workdir, "--workdir", "checkpoint")
               or (f.out and paths.unsupported(f.out, "--out", "epath")))
    if problem:
        raise SystemExit(f"error: {problem}")
    config = _CONFIG.value if _CONFIG.value is not None else None
    report = alignment_report(f.workdir, config=config, num_clips=f.num_clips,
                              batch_size=f.batch_size or None, out_dir=f.out or None)
    import jax
    if jax.process_index() == 0:
        out = paths.resolve(f.out or paths.join(f.workdir, "alignment"))
        print(format_report(report))
        print(f"Wrote {paths.join(out, 'cka_layers.json')} and "
              + ", ".join(f"cka_layers_{k}.png" for k in report["pairs"]), flush=True)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    flags.DEFINE_string("workdir", None, "Pretraining workdir (with checkpoints/).", required=True)
    flags.DEFINE_integer("num_clips", 256, "Held-out synthetic clips to embed (at most 768).")
    flags.DEFINE_integer("batch_size", 0, "Batch size (0: the run's config.eval.batch_size).")
    flags.DEFINE_string("out", "", "Output folder (default <workdir>/alignment).")
    _CONFIG = config_flags.DEFINE_config_file(
        "config", None, "The run's config if <workdir>/config.json is missing "
        "(configs/pretrain.py:tiny plus the run's --config.<key> overrides).")
    from vatt import config_files
    app.run(main, flags_parser=lambda argv: app.parse_flags_with_usage(
        config_files.resolve_argv(argv)))
