"""Fine-tuning a pretrained backbone for classification: configs/finetune.py:<dataset>[,<variant>].

  ucf101     video backbone, UCF101 (built `ucf101_local/default`), split 1 (override
             --config.data.split=train2 --config.finetune.test_split=test2 for the others);
             SGD momentum 0.9, lr 0.005, 2.5k warmup, cosine, batch 64, label smoothing 0.1,
             32 frames at 320 px (position tables interpolated from the 224 px pretraining),
             no DropToken; test 4 clips x 3 crops, logits averaged.
  esc50      audio backbone, ESC-50 (built `esc50/default`), fold 1 held out.
  synthetic  video backbone on the synthetic world (labels: direction x speed), minutes on CPU.
<variant>: the pretraining config whose model is fine-tuned (tiny for synthetic, else mbs).

  python -m vatt.main --config=configs/finetune.py:synthetic --workdir=/tmp/ft \
      --config.init_from=/tmp/pretrain_tiny          # omit init_from: from scratch (baseline)

Metrics: finetune/top1, finetune/top5 (and finetune/<test split>/...). Average over the official
splits / folds with vatt.evaluation.classification.average_over_splits([workdirs]).
"""

import importlib.util
import os

import ml_collections

_spec = importlib.util.spec_from_file_location(
    "vatt_configs_downstream", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_downstream.py"))
D = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(D)


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    config, dataset, variant = D.base("finetune", arg, "mbs")
    ft = ml_collections.ConfigDict({"modality": "video", "label_smoothing": 0.1,
                                    "dropout_rate": 0.1, "num_classes": 0, "test_split": "",
                                    "label_factors": ("direction", "speed")})
    config.optimizer = ml_collections.ConfigDict({
        "name": "sgd", "momentum": 0.9, "learning_rate": 0.005, "end_learning_rate": 0.0,
        "warmup_steps": 2500, "grad_clip_norm": 0.0})
    if dataset == "synthetic":
        config.data = D.synthetic_data(variant)
        config.total_steps = 300
        config.batch_size = 32
        config.optimizer.warmup_steps = 30
        config.optimizer.learning_rate = 0.05  # tiny model, short run
        config.eval = ml_collections.ConfigDict({"num_clips": 512, "batch_size": 64})
        ft.dropout_rate = 0.0
    elif dataset == "ucf101":
        config.data = D.real_data("ucf101_local/default", "train1", "video,label", frame_size=320)
        config.data.eval_num_clips, config.data.eval_num_crops = 4, 3
        config.model.video.input_size = (32, 320, 320)  # 8x20x20 tokens; tables interpolated
        ft.num_classes, ft.test_split = 101, "test1"
        config.total_steps, config.batch_size = 10_000, 64
        config.eval = ml_collections.ConfigDict({"batch_size": 64})
    elif dataset == "esc50":
        config.data = D.real_data("esc50/default", "fold2+fold3+fold4+fold5", "audio,label")
        config.data.eval_num_clips = 3  # windows over the 5 s clip, logits averaged
        ft.modality, ft.num_classes, ft.test_split = "audio", 50, "fold1"
        config.total_steps, config.batch_size = 5_000, 64
        config.optimizer.warmup_steps = 500
        config.eval = ml_collections.ConfigDict({"batch_size": 64})
    else:
        raise ValueError(f"configs/finetune.py:{dataset}: use ucf101, esc50 or synthetic")
    config.finetune = ft
    return config
