"""Loading weights from a pretraining run into a new model (fine-tuning, probing, zero-shot).

A pretraining checkpoint is the orbax TrainState at <workdir>/checkpoints/<step>/state (see
vatt.train.checkpointing). It is restored WITHOUT a target (no shardings, no model needed) as
nested dicts of arrays, flattened to "a/b/0/c" paths, and every variable of the new model whose
(mapped) path exists there is copied; everything else (new classifier heads) keeps its fresh
initialisation. Position tables ("*_pos") whose length differs (e.g. a 224 px pretraining table
of 14 rows loaded into a 320 px model of 20 rows) are linearly interpolated, exactly as the
tokenizers do at call time, so a model built at another input size starts from the same
positions the pretrained model would use on that grid.

  from vatt.train import pretrained
  src = pretrained.load_checkpoint_tree("/tmp/pretrain_tiny")          # workdir, ckpt dir or step dir
  params, report = pretrained.copy_matching(params, src, pretrained.backbone_path_map("video"))
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vatt.models.tokenizers import interpolate_table

PathMap = Callable[[str], "list[str]"]


def checkpoint_state_dir(path: str) -> str:
    """Resolves a workdir, its checkpoints/ folder, a step folder or a state folder to the
    `state` directory of the newest finished checkpoint."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.basename(path) == "state" and os.path.isdir(path):
        return path
    if os.path.isdir(os.path.join(path, "state")):
        return os.path.join(path, "state")
    ckpt_dir = path
    if os.path.isdir(os.path.join(path, "checkpoints")):
        ckpt_dir = os.path.join(path, "checkpoints")
    # Finished orbax steps are plain integer folders (unfinished ones carry a tmp suffix).
    steps = sorted((int(d) for d in (os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else [])
                    if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(ckpt_dir, d, "state"))),
                   reverse=True)
    if not steps:
        raise FileNotFoundError(
            f"init_from={path!r}: no finished checkpoint found (expected <workdir>/checkpoints/"
            "<step>/state, as written by a pretraining run)")
    return os.path.join(ckpt_dir, str(steps[0]), "state")


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "value" and not isinstance(v, dict):  # nnx Variable leaf as stored by orbax
                out[prefix.rstrip("/")] = np.asarray(v)
            else:
                out.update(_flatten(v, f"{prefix}{k}/"))
    elif tree is not None:
        out[prefix.rstrip("/")] = np.asarray(tree)
    return out


def load_checkpoint_tree(path: str) -> dict[str, np.ndarray]:
    """Flat {"video_backbone/encoder/...": array} of the checkpoint's params and `rest` (batch-norm
    statistics, frozen embeddings). Host numpy arrays; no target shapes or shardings needed."""
    import orbax.checkpoint as ocp

    state_dir = checkpoint_state_dir(path)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(state_dir)
    flat = _flatten(restored.get("params", {}))
    flat.update(_flatten(restored.get("rest", {})))
    if not flat:
        raise ValueError(f"{state_dir} holds no model parameters (is it a vatt TrainState?)")
    return flat


def identity_path_map(path: str) -> list[str]:
    return [path]


def backbone_path_map(modality: str) -> PathMap:
    """Maps a Classifier's "backbone/{tokenizer,encoder}/..." to the pretraining VATT paths:
    modality-specific "{m}_backbone/..." or shared (VATT-MA) "{m}_tokenizer/..." /
    "shared_backbone/..."; the classifier head maps to nothing."""
    def mapping(path: str) -> list[str]:
        if path.startswith("backbone/tokenizer/"):
            rest = path[len("backbone/tokenizer/"):]
            return [f"{modality}_backbone/tokenizer/{rest}", f"{modality}_tokenizer/{rest}"]
        if path.startswith("backbone/encoder/"):
            rest = path[len("backbone/encoder/"):]
            return [f"{modality}_backbone/encoder/{rest}", f"shared_backbone/{rest}"]
        return []
    return mapping


def _fit(name: str, value: np.ndarray, target_shape: tuple[int, ...], dest: str) -> np.ndarray:
    if tuple(value.shape) == tuple(target_shape):
        return value
    if (name.endswith("_pos") and value.ndim == 2 and len(target_shape) == 2
            and value.shape[1] == target_shape[1]):
        return np.asarray(interpolate_table(jnp.asarray(value), int(target_shape[0])))
    raise ValueError(f"pretrained weight for {dest} has shape {value.shape} but the model needs "
                     f"{tuple(target_shape)}: only position tables can change size (model widths, "
                     "patch sizes and vocabularies must match the pretraining config)")


def copy_matching(state: nnx.State, source: dict[str, np.ndarray], path_map: PathMap = identity_path_map
                  ) -> tuple[nnx.State, dict[str, Any]]:
    """Copies every variable of `state` whose mapped path exists in `source`.

    Returns (new state, report) with report = {"copied": [...], "interpolated": [...],
    "kept": [...]} (paths of `state`). Shapes other than position-table lengths must match.
    """
    pure = state.to_pure_dict()
    flat = _flatten(pure)
    report: dict[str, list[str]] = {"copied": [], "interpolated": [], "kept": []}
    new_flat: dict[str, np.ndarray] = {}
    for path, value in flat.items():
        src = next((p for p in path_map(path) if p in source), None)
        if src is None:
            report["kept"].append(path)
            new_flat[path] = value
            continue
        fitted = _fit(path.split("/")[-1], source[src], value.shape, path)
        report["interpolated" if fitted is not source[src] else "copied"].append(path)
        new_flat[path] = fitted.astype(value.dtype)

    def rebuild(tree: Any, prefix: str = "") -> Any:
        if isinstance(tree, dict):
            return {k: rebuild(v, f"{prefix}{k}/") for k, v in tree.items()}
        return new_flat[prefix.rstrip("/")]

    new_state = jax.tree.map(lambda x: x, state)  # a new State: replace_by_pure_dict mutates
    nnx.replace_by_pure_dict(new_state, rebuild(pure))
    return new_state, report


def load_into(params: nnx.State, rest: nnx.State, init_from: str, path_map: PathMap,
              require: str = "") -> tuple[nnx.State, nnx.State, dict[str, Any]]:
    """Copies weights of the checkpoint `init_from` into (params, rest).

    require: a path prefix of which at least one variable must be copied (else the mapping is
    wrong and the run would silently train from scratch: raise).
    """
    source = load_checkpoint_tree(init_from)
    params, rp = copy_matching(params, source, path_map)
    rest, rr = copy_matching(rest, source, path_map)
    report = {k: rp[k] + rr[k] for k in rp}
    if require and not any(p.startswith(require) for p in report["copied"] + report["interpolated"]):
        raise ValueError(f"init_from={init_from!r}: no weight of the checkpoint matched the model's "
                         f"{require!r} variables (does the checkpoint hold this modality?)")
    if jax.process_index() == 0:
        n_copy, n_int = len(report["copied"]), len(report["interpolated"])
        print(f"Loaded {n_copy + n_int} pretrained weights from {checkpoint_state_dir(init_from)} "
              f"({n_int} position tables interpolated); {len(report['kept'])} variables keep their "
              f"initialisation: {', '.join(sorted(report['kept'])[:6])}"
              f"{' ...' if len(report['kept']) > 6 else ''}", flush=True)
    return params, rest, report
