"""Zero-shot text<->video retrieval: configs/zeroshot.py:<dataset>[,<variant>].

  msrvtt     MSR-VTT 1k-A test (built msrvtt/default, split test, caption_1k: one caption per
             clip), 4 windows per clip.
  youcook2   YouCook2 validation clips (a built youcook2/default dataset with captions).
  synthetic  the synthetic held-out split (distinct canonical captions).
Video embeddings of the windows are averaged (zeroshot/t2v/..., zeroshot/v2t/...) and, as a
variant, their similarities (zeroshot/simavg/...): R@1/5/10, MedR, MeanR. A JSON report lands in
<workdir>/zeroshot/. Nothing is trained (see vatt.tasks.linear_probe.EvaluateTask).

  python -m vatt.main --config=configs/zeroshot.py:synthetic --workdir=/tmp/zs \
      --config.init_from=/tmp/pretrain_tiny
The text vocabulary must be the pretraining one (config.evals.*.data.vocab_path).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "vatt_configs_downstream", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_downstream.py"))
D = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(D)


def zeroshot_entry(dataset: str) -> ml_collections.ConfigDict:
    """The `evals` entry of a retrieval evaluation (also usable during pretraining)."""
    e = ml_collections.ConfigDict({"kind": "zeroshot", "dataset": dataset, "batch_size": 64,
                                   "write_report": True})
    if dataset == "synthetic":
        e.num_clips = 512
    elif dataset in ("msrvtt", "youcook2"):
        name = {"msrvtt": "msrvtt/default", "youcook2": "youcook2/default"}[dataset]
        e.data = D.real_data(name, "test", "video,text")
        e.data.caption_key = "caption_1k" if dataset == "msrvtt" else "caption"
        e.data.num_captions = 1
        e.data.eval_num_clips = 4
        e.split = "test" if dataset == "msrvtt" else "validation"
    else:
        raise ValueError(f"configs/zeroshot.py:{dataset}: use msrvtt, youcook2 or synthetic")
    return e


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    config, dataset, variant = D.base("zeroshot", arg, "mbs")
    config.evals = ml_collections.ConfigDict({f"zeroshot_{dataset}": zeroshot_entry(dataset)})
    if dataset == "synthetic":
        config.data = D.synthetic_data(variant)
    D.evaluate_only(config)
    return config
