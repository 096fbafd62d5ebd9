"""Evaluators from the optional `config.evals` section, so pretraining (and any task) can run the
downstream evaluations periodically with the same code as the stand-alone configs.

  config.evals = ConfigDict({
      "linear_probe_synthetic": {"kind": "linear_probe", "dataset": "synthetic", ...},
      "zeroshot_msrvtt": {"kind": "zeroshot", "dataset": "msrvtt", "data": <pipeline cfg>, ...},
  })

Each entry's `kind` is "linear_probe" or "zeroshot"; `dataset` "synthetic" uses the run's
synthetic world (`config.data`), anything else a built dataset (`data`, `split(s)`). An entry's
`prefix` sets its metric prefix (default: "linear_probe" / "zeroshot", or "<kind>/<entry name>"
when several entries share a kind, so keys never collide).
"""

from __future__ import annotations

import collections
from typing import Any

import ml_collections


def _world(config: ml_collections.ConfigDict):
    from vatt.tasks.finetune import synthetic_world
    return synthetic_world(config)


def build_evaluator(name: str, entry: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                    prefix: str) -> Any:
    """One evaluator from one `config.evals` entry."""
    kind = entry.kind
    if kind == "linear_probe":
        from vatt.evaluation import linear_probe as lp
        cfg = lp.default_probe_config()
        cfg.update({k: v for k, v in entry.items() if k not in ("kind", "dataset", "prefix")})
        if entry.dataset == "synthetic":
            return lp.synthetic_probe(_world(config), cfg, prefix)
        return lp.dataset_probe(cfg, prefix)
    if kind == "zeroshot":
        from vatt.evaluation import retrieval_eval as rv
        if entry.dataset == "synthetic":
            return rv.synthetic_retrieval(_world(config), entry, prefix)
        return rv.dataset_retrieval(entry, prefix)
    raise ValueError(f"config.evals.{name}.kind={kind!r}: use 'linear_probe' or 'zeroshot'")


def build_evaluators(config: ml_collections.ConfigDict) -> list[Any]:
    """Evaluators of `config.evals` (empty list when the section is absent)."""
    evals = config.get("evals", None)
    if not evals:
        return []
    kinds = collections.Counter(e.kind for e in evals.values())
    out = []
    for name, entry in evals.items():
        prefix = entry.get("prefix", "") or (
            entry.kind if kinds[entry.kind] == 1 else f"{entry.kind}/{name}")
        out.append(build_evaluator(name, entry, config, prefix))
    return out
