"""Moving weights of one model into another (fine-tuning, probing, zero-shot from a pretraining
run): pure functions on nnx.State and flat {"a/b/0/c": array} trees.

The source tree comes from a pretraining checkpoint (vatt.train.checkpointing.load_model_tree
restores it without a target, so no model or sharding is needed); every variable of the new model
whose (mapped) path exists there is copied; everything else (new classifier heads) keeps its fresh
initialisation. Position tables ("*_pos") whose length differs (e.g. a 224 px pretraining table
of 14 rows loaded into a 320 px model of 20 rows) are resized with the model's
``pos_interpolation`` ("linear" or the official "spline"), exactly as the tokenizers do at call
time, so a model built at another input size starts from the same
positions the pretrained model would use on that grid.

  from vatt.models import transfer
  from vatt.train.checkpointing import load_model_tree
  src = load_model_tree("/tmp/pretrain_tiny")          # workdir, checkpoints dir or step dir
  params, report = transfer.copy_matching(params, src, transfer.backbone_path_map("video"))
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vatt.models.tokenizers import interpolate_table

PathMap = Callable[[str], "list[str]"]


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "value" and not isinstance(v, dict):  # nnx Variable leaf as stored by orbax
                out[prefix.rstrip("/")] = np.asarray(v)
            else:
                out.update(flatten_tree(v, f"{prefix}{k}/"))
    elif tree is not None:
        out[prefix.rstrip("/")] = np.asarray(tree)
    return out


def identity_path_map(path: str) -> list[str]:
    return [path]


def backbone_path_map(modality: str) -> PathMap:
    """Maps a Classifier's "backbone/{tokenizer,encoder,post_proj}/..." to the pretraining VATT
    paths: modality-specific "{m}_backbone/..." or shared (VATT-MA) "{m}_tokenizer/..." /
    "shared_backbone/..." / "{m}_post_proj/...", or to the same path in a Classifier's checkpoint
    (a fine-tuned model, e.g. one converted by vatt.convert); the classifier head maps to
    nothing."""
    def mapping(path: str) -> list[str]:
        if path.startswith("backbone/tokenizer/"):
            rest = path[len("backbone/tokenizer/"):]
            return [f"{modality}_backbone/tokenizer/{rest}", f"{modality}_tokenizer/{rest}", path]
        if path.startswith("backbone/encoder/"):
            rest = path[len("backbone/encoder/"):]
            return [f"{modality}_backbone/encoder/{rest}", f"shared_backbone/{rest}", path]
        if path.startswith("backbone/post_proj/"):
            rest = path[len("backbone/post_proj/"):]
            return [f"{modality}_backbone/post_proj/{rest}", f"{modality}_post_proj/{rest}", path]
        return []
    return mapping


def _fit(name: str, value: np.ndarray, target_shape: tuple[int, ...], dest: str,
         method: str = "linear") -> np.ndarray:
    if tuple(value.shape) == tuple(target_shape):
        return value
    if (name.endswith("_pos") and value.ndim == 2 and len(target_shape) == 2
            and value.shape[1] == target_shape[1]):
        return np.asarray(interpolate_table(jnp.asarray(value), int(target_shape[0]), method))
    raise ValueError(f"pretrained weight for {dest} has shape {value.shape} but the model needs "
                     f"{tuple(target_shape)}: only position tables can change size (model widths, "
                     "patch sizes and vocabularies must match the pretraining config)")


def copy_matching(state: nnx.State, source: dict[str, np.ndarray], path_map: PathMap = identity_path_map,
                  pos_interpolation: str = "linear") -> tuple[nnx.State, dict[str, Any]]:
    """Copies every variable of `state` whose mapped path exists in `source`.

    pos_interpolation: how position tables of another length are resized (the model's
    config.model.pos_interpolation: "linear" or "spline").

    Returns (new state, report) with report = {"copied": [...], "interpolated": [...],
    "kept": [...]} (paths of `state`). Shapes other than position-table lengths must match.
    """
    pure = state.to_pure_dict()
    flat = flatten_tree(pure)
    report: dict[str, list[str]] = {"copied": [], "interpolated": [], "kept": []}
    new_flat: dict[str, np.ndarray] = {}
    for path, value in flat.items():
        src = next((p for p in path_map(path) if p in source), None)
        if src is None:
            report["kept"].append(path)
            new_flat[path] = value
            continue
        fitted = _fit(path.split("/")[-1], source[src], value.shape, path, pos_interpolation)
        report["interpolated" if fitted is not source[src] else "copied"].append(path)
        new_flat[path] = fitted.astype(value.dtype)

    def rebuild(tree: Any, prefix: str = "") -> Any:
        if isinstance(tree, dict):
            return {k: rebuild(v, f"{prefix}{k}/") for k, v in tree.items()}
        return new_flat[prefix.rstrip("/")]

    new_state = jax.tree.map(lambda x: x, state)  # a new State: replace_by_pure_dict mutates
    nnx.replace_by_pure_dict(new_state, rebuild(pure))
    return new_state, report


def load_into(params: nnx.State, rest: nnx.State, source: dict[str, np.ndarray],
              path_map: PathMap, require: str = "", pos_interpolation: str = "linear"
              ) -> tuple[nnx.State, nnx.State, dict[str, Any]]:
    """Copies the weights of `source` (flat {path: array}, e.g.
    vatt.train.checkpointing.load_model_tree) into (params, rest).

    require: a path prefix of which at least one variable must be copied (else the mapping is
    wrong and the run would silently train from scratch: raise).
    pos_interpolation: see copy_matching.
    Returns (params, rest, report) with report = {"copied", "interpolated", "kept"} paths.
    """
    params, rp = copy_matching(params, source, path_map, pos_interpolation)
    rest, rr = copy_matching(rest, source, path_map, pos_interpolation)
    report = {k: rp[k] + rr[k] for k in rp}
    if require and not any(p.startswith(require) for p in report["copied"] + report["interpolated"]):
        raise ValueError(f"no weight of the pretrained checkpoint matched the model's {require!r} "
                         "variables: does the checkpoint hold this modality, and is "
                         "config.init_from a pretraining run of this model family?")
    return params, rest, report


def describe(report: dict[str, list[str]]) -> str:
    """One line on what load_into copied, interpolated and kept."""
    n_copy, n_int = len(report["copied"]), len(report["interpolated"])
    kept = sorted(report["kept"])
    line = f"{n_copy + n_int} pretrained weights loaded ({n_int} position tables interpolated)"
    if kept:
        line += (f"; {len(kept)} variables keep their initialisation: {', '.join(kept[:6])}"
                 f"{' ...' if len(kept) > 6 else ''}")
    return line
