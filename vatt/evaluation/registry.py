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
An entry's `every_steps` is its own schedule during training (0: the run's `eval_every_steps`,
and 0 there: only at the end; every evaluator also runs at the last step), so a cheap retrieval
can run often and an expensive probe rarely.

A zero-shot entry on a built dataset reads its captions with `data.vocab_path`; left empty in a
pretraining run on built data, it is the vocabulary of the run's own training data (the
pretraining vocab.txt, or config.data.vocab_path), since the text tower's word ids come from it:
the evaluation dataset's own vocab.txt would number the words differently.
"""

from __future__ import annotations

import collections
from typing import Any

import ml_collections

from vatt.data import synthetic
from vatt.evaluation import linear_probe as lp
from vatt.evaluation import retrieval_eval as rv

KINDS = ("linear_probe", "zeroshot")
# Keys of an entry that describe where and when it runs, not how the probe classifiers are fitted.
_ENTRY_KEYS = ("kind", "dataset", "prefix", "every_steps")


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
        return rv.dataset_retrieval(_with_training_vocabulary(entry, config), prefix)
    raise ValueError(f"config.evals.{name}.kind={entry.kind!r}: use one of {KINDS}")


def entry_prefixes(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{entry name: metric prefix} of `config.evals`: the entry's `prefix`, else its kind, or
    "<kind>/<entry name>" when several entries share a kind."""
    kinds = collections.Counter(e.kind for e in config.evals.values())
    return {name: entry.prefix or (entry.kind if kinds[entry.kind] == 1 else f"{entry.kind}/{name}")
            for name, entry in config.evals.items()}


def _with_training_vocabulary(entry: ml_collections.ConfigDict,
                              config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`entry`, or a copy whose empty data.vocab_path is the training data's vocabulary when
    the run pretrains on a built dataset (module docstring), tokenised by the training data's
    rules (tokenizer, <bos>/<eos>): the same caption must give the same ids."""
    if entry.data.get("vocab_path", "") or config.get("task") != "pretrain" \
            or config.data.name == "synthetic":
        return entry
    vocab = training_vocabulary(config.data)
    if not vocab:
        return entry  # not built yet: the training pipeline stops first, naming the dataset
    entry = ml_collections.ConfigDict(entry.to_dict())
    entry.data.vocab_path = vocab
    for key in ("tokenizer", "prepend_bos", "append_eos"):
        if key in config.data:
            entry.data[key] = config.data[key]
    return entry


def training_vocabulary(data: ml_collections.ConfigDict) -> str:
    """The vocabulary the training pipeline reads captions with: data.vocab_path, else the
    vocab.txt of the first built source (of data.mixture, or data.name) that has one."""
    if data.get("vocab_path", ""):
        return data.vocab_path
    # TensorFlow (tfds): imported only when real data is read, as the pipeline does.
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401  (registers the builders)
    from vatt import paths
    from vatt.data import sources
    from vatt.data.tokenizer import VOCAB_FILENAME
    specs = sources.parse_mixture(data.mixture) if data.get("mixture", "") else [(data.name, "", 1)]
    for name, _, _ in specs:
        if name.startswith("dmvr:"):
            continue  # DMVR records carry no vocabulary (they need data.vocab_path)
        path = paths.join(str(tfds.builder(name, data_dir=data.data_dir or None).data_dir),
                          VOCAB_FILENAME)
        if paths.exists(path):
            return path
    return ""


def build_evaluators(config: ml_collections.ConfigDict) -> list[Any]:
    """Evaluators of `config.evals` (empty list when the section is empty), each with its
    schedule `every_steps` (vatt.evaluation.base.evaluators_due)."""
    prefixes = entry_prefixes(config)
    evaluators = []
    for name, entry in config.evals.items():
        evaluator = build_evaluator(name, entry, config, prefixes[name])
        evaluator.every_steps = int(entry.get("every_steps", 0))
        evaluators.append(evaluator)
    return evaluators
