"""Evaluators from the optional `config.evals` section, so pretraining (and any task) can run the
downstream evaluations periodically with the same code as the stand-alone configs.

  config.evals = ConfigDict({
      "linear_probe_synthetic": {"kind": "linear_probe", "dataset": "synthetic", ...},
      "zeroshot_msrvtt": {"kind": "zeroshot", "dataset": "msrvtt", "data": <pipeline cfg>, ...},
  })

Each entry's `kind` is "linear_probe" or "zeroshot"; `dataset` "synthetic" uses the run's
synthetic world (`config.data`, vatt.data.synthetic.world_from_config), anything else a built
dataset (`data`, `split(s)`). An entry's `prefix` sets its metric prefix (default: "linear_probe"
/ "zeroshot", or "<kind>/<entry name>" when several entries share a kind, so keys never collide).
"""

from __future__ import annotations

import collections
from typing import Any

import ml_collections

from vatt.data import synthetic
from vatt.evaluation import linear_probe as lp
from vatt.evaluation import retrieval_eval as rv

KINDS = ("linear_probe", "zeroshot")
# Keys of an entry that describe where it runs, not how the probe classifiers are fitted.
_ENTRY_KEYS = ("kind", "dataset", "prefix")


def build_evaluator(name: str, entry: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
                    prefix: str) -> Any:
    """One evaluator from one `config.evals` entry."""
    synthetic_data = entry.dataset == "synthetic"
    if synthetic_data and config.data.name != "synthetic":
        raise ValueError(f"config.evals.{name}.dataset='synthetic' needs the synthetic world in "
                         f"config.data, but config.data.name={config.data.name!r}: evaluate on a "
                         "built dataset instead")
    if entry.kind == "linear_probe":
        cfg = lp.default_probe_config()
        cfg.update({k: v for k, v in entry.items() if k not in _ENTRY_KEYS})
        if synthetic_data:
            return lp.synthetic_probe(synthetic.world_from_config(config.data), cfg, prefix)
        return lp.dataset_probe(cfg, prefix)
    if entry.kind == "zeroshot":
        if synthetic_data:
            return rv.synthetic_retrieval(synthetic.world_from_config(config.data), entry, prefix)
        return rv.dataset_retrieval(entry, prefix)
    raise ValueError(f"config.evals.{name}.kind={entry.kind!r}: use one of {KINDS}")


def entry_prefixes(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{entry name: metric prefix} of `config.evals`: the entry's `prefix`, else its kind, or
    "<kind>/<entry name>" when several entries share a kind."""
    kinds = collections.Counter(e.kind for e in config.evals.values())
    return {name: entry.prefix or (entry.kind if kinds[entry.kind] == 1 else f"{entry.kind}/{name}")
            for name, entry in config.evals.items()}


def build_evaluators(config: ml_collections.ConfigDict) -> list[Any]:
    """Evaluators of `config.evals` (empty list when the section is empty)."""
    prefixes = entry_prefixes(config)
    return [build_evaluator(name, entry, config, prefixes[name])
            for name, entry in config.evals.items()]
