"""Linear probe of frozen pooled features:
configs/linear_probe.py:<dataset>[,<pretraining variant>][,runlocal] (or linear_probe:<...>).

  ucf101 / hmdb51  video backbone; the 3 official splits (built ucf101_local/default,
                   hmdb51/default); training features from one clip, test features from 4 windows
                   averaged; accuracy averaged over the splits.
  esc50            audio backbone; 5-fold cross-validation, test windows averaged.
  synthetic        video backbone on the synthetic world (labels direction x speed).
Classifiers: multinomial logistic regression and the low-rank linear classifier (W = U V),
fitted full batch in JAX (vatt.evaluation.linear_probe). Nothing is trained and nothing is
checkpointed: the task loads the model (--config.init_from=<pretraining workdir>; omit it for the
random-init baseline) and runs the probe once. The same probe runs during pretraining from an
`evals` entry (probe_entry below).

  python -m vatt.main --config=configs/linear_probe.py:synthetic --workdir=/tmp/lp \
      --config.init_from=/tmp/pretrain_tiny

Metrics: linear_probe/top1 (primary classifier, mean over splits), linear_probe/<clf>/top1,
linear_probe/<split>/<clf>/top1.
"""

import ml_collections

from vatt import config_files
from vatt.evaluation.linear_probe import default_probe_config

_common = config_files.sibling(__file__, "_common.py")
_pretrain = config_files.sibling(__file__, "pretrain.py")
DATASETS = ("synthetic", "ucf101", "hmdb51", "esc50")


def probe_entry(dataset: str, runlocal: bool = False) -> ml_collections.ConfigDict:
    """The `evals` entry of a probe (also usable in a pretraining config's `evals`)."""
    e = default_probe_config()
    e.kind, e.dataset, e.prefix = "linear_probe", dataset, ""
    e.every_steps = 0  # its own schedule inside a training run (0: config.eval_every_steps)
    if dataset == "synthetic":
        e.update({"label_factors": ("direction", "speed"), "num_train": 2048, "num_test": 512,
                  "batch_size": 64, "modality": "video"})
        if runlocal:
            # The classifiers keep their 300 full-batch steps: at 150 the logistic one underfit,
            # and pretrained-vs-random hung on the CPU's rounding (tests/test_linear_probe.py).
            e.update({"num_train": 512, "num_test": 128, "batch_size": 32})
    elif dataset in ("ucf101", "hmdb51"):
        name = {"ucf101": "ucf101_local/default", "hmdb51": "hmdb51/default"}[dataset]
        e.data = _common.real_data(name, "train1", "video,label")
        e.splits = tuple((f"split{s}", f"train{s}", f"test{s}") for s in (1, 2, 3))
        e.update({"num_classes": 101 if dataset == "ucf101" else 51, "train_num_clips": 1,
                  "test_num_clips": 4, "batch_size": 64, "modality": "video"})
    elif dataset == "esc50":
        e.data = _common.real_data("esc50/default", "fold1", "audio,label")
        folds = range(1, 6)
        e.splits = tuple((f"fold{k}", "+".join(f"fold{j}" for j in folds if j != k), f"fold{k}")
                         for k in folds)
        e.update({"num_classes": 50, "train_num_clips": 1, "test_num_clips": 3, "batch_size": 64,
                  "modality": "audio"})
    else:
        raise ValueError(f"configs/linear_probe.py:{dataset}: use one of {DATASETS}")
    return e


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    config, dataset, opts, pre = _common.downstream_keys("linear_probe", arg, _pretrain)  # total_steps 0: evaluate only
    entry = probe_entry(dataset, "runlocal" in opts)
    return _common.add_evaluation(config, f"linear_probe_{dataset}", entry, pre)
