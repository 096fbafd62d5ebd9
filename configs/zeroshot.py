"""Zero-shot text<->video retrieval:
configs/zeroshot.py:<dataset>[,<pretraining variant>][,runlocal] (or zeroshot:<...>).

  msrvtt     MSR-VTT 1k-A test (built msrvtt/default, split test, caption_1k: one caption per
             clip), 4 windows per clip.
  youcook2   YouCook2 validation clips (a built youcook2/default dataset with captions).
  synthetic  the synthetic held-out split (distinct canonical captions).
Video embeddings of the windows are averaged (zeroshot/t2v/..., zeroshot/v2t/...) and, as a
variant, their similarities (zeroshot/simavg/...): R@1/5/10, MedR, MeanR. A JSON report lands in
<workdir>/zeroshot/. Nothing is trained and nothing is checkpointed (vatt.tasks.evaluate).

  python -m vatt.main --config=configs/zeroshot.py:synthetic --workdir=/tmp/zs \
      --config.init_from=/tmp/pretrain_tiny
The text vocabulary must be the pretraining one (config.evals.*.data.vocab_path).
"""

import ml_collections

from vatt import config_files

_common = config_files.sibling(__file__, "_common.py")
_pretrain = config_files.sibling(__file__, "pretrain.py")
DATASETS = ("synthetic", "msrvtt", "youcook2")


def zeroshot_entry(dataset: str, runlocal: bool = False) -> ml_collections.ConfigDict:
    """The `evals` entry of a retrieval evaluation (also usable during pretraining)."""
    # every_steps: its own schedule inside a training run (0: config.eval_every_steps).
    e = ml_collections.ConfigDict({"kind": "zeroshot", "dataset": dataset, "prefix": "",
                                   "every_steps": 0, "batch_size": 64, "write_report": True})
    if dataset == "synthetic":
        e.num_clips = 512
        if runlocal:  # the held-out clips pretrain:tiny,runlocal evaluates itself on
            e.num_clips, e.batch_size = 64, 16
    elif dataset in ("msrvtt", "youcook2"):
        name = {"msrvtt": "msrvtt/default", "youcook2": "youcook2/default"}[dataset]
        e.data = _common.real_data(name, "test", "video,text")
        e.data.caption_key = "caption_1k" if dataset == "msrvtt" else "caption"
        e.data.num_captions = 1
        e.data.eval_num_clips = 4
        e.split = "test" if dataset == "msrvtt" else "validation"
    else:
        raise ValueError(f"configs/zeroshot.py:{dataset}: use one of {DATASETS}")
    return e


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    config, dataset, opts, pre = _common.downstream_keys("zeroshot", arg, _pretrain)  # total_steps 0: evaluate only
    entry = zeroshot_entry(dataset, "runlocal" in opts)
    return _common.add_evaluation(config, f"zeroshot_{dataset}", entry, pre)
