"""Fine-tuning a pretrained backbone for classification:
configs/finetune.py:<dataset>[,<pretraining variant>][,runlocal] (or finetune:<...>).

  ucf101     video backbone, UCF101 (built `ucf101_local/default`), split 1 (override
             --config.data.split=train2 --config.finetune.test_split=test2 for the others);
             SGD momentum 0.9, lr 0.005, 2.5k warmup, cosine, batch 64, label smoothing 0.1,
             32 frames at 320 px (position tables interpolated from the 224 px pretraining),
             no DropToken; test 4 clips x 3 crops, logits averaged.
  esc50      audio backbone, ESC-50 (built `esc50/default`), fold 1 held out.
  synthetic  video backbone on the synthetic world (labels: direction x speed), minutes on CPU.
<variant>: the pretraining config whose model is fine-tuned (tiny for synthetic, else mbs);
`runlocal` takes the model of pretrain:<variant>,runlocal and a short schedule.
Paper variants (bbs, mbs, lbs, ma_medium) fine-tune with the official numerics: classifier
dropout 0.5 (video) / 0.0 (audio), the backbone's gradients clipped to global norm 0.75 (the
classifier's not: optimizer.grad_clip_scope=backbone), the official head initialisation
(finetune.head_init=official). Other variants keep dropout 0.1 (synthetic: 0), no clipping and a
zero-initialised head.

  python -m vatt.main --config=configs/finetune.py:synthetic --workdir=/tmp/ft \
      --config.init_from=/tmp/pretrain_tiny          # omit init_from: from scratch (baseline)

Metrics: finetune/top1, finetune/top5 (and finetune/<test split>/...). Average over the official
splits / folds with vatt.evaluation.classification.average_over_splits([workdirs]).
"""

import ml_collections

from vatt import config_files

_common = config_files.sibling(__file__, "_common.py")
_pretrain = config_files.sibling(__file__, "pretrain.py")
DATASETS = ("synthetic", "ucf101", "esc50")


def get_config(arg: str = "synthetic") -> ml_collections.ConfigDict:
    config, dataset, opts, pre = _common.downstream_keys("finetune", arg, _pretrain)
    ft = ml_collections.ConfigDict({
        "modality": "video",         # video | audio: the backbone that is fine-tuned
        "label_smoothing": 0.1,
        "dropout_rate": 0.1,         # on the pooled AGG output, before the linear head
        "head_init": "zeros",        # zeros | official (vatt.models.classifier)
        "num_classes": 0,            # real datasets (synthetic: from label_factors)
        "test_split": "",
        "label_factors": ("direction", "speed")})  # synthetic labels (vatt.data.synthetic)
    config.optimizer = _common.optimizer("sgd", 0.005, 0.0, 2500)
    if dataset == "synthetic":
        config.data = pre.data
        config.total_steps, config.batch_size = 300, 32
        # Adam, as the tiny model was pretrained: SGD momentum 0.9 at a rate high enough for a
        # short run (0.05) collapses the pretrained backbone's pooled features (top-1 at chance
        # after 200 steps, while from scratch reaches 75%; tests/test_finetune.py).
        config.optimizer = _common.optimizer("adam", 3e-3, 0.0, 30)
        config.eval = ml_collections.ConfigDict({"num_clips": 512, "batch_size": 64})
        ft.dropout_rate = 0.0
        if "runlocal" in opts:
            config.total_steps, config.batch_size, config.log_every_steps = 100, 16, 10
            # A fifth of the run: with 6 warm-up steps Adam's first full-size steps wreck part
            # of the pretrained features, and whether pretrained beats scratch depended on the
            # CPU's float rounding (tests/test_finetune.py has the figures).
            config.optimizer.warmup_steps = 20
            config.eval.num_clips, config.eval.batch_size = 128, 32
    elif dataset == "ucf101":
        config.data = _common.real_data("ucf101_local/default", "train1", "video,label",
                                        frame_size=320)
        config.data.eval_num_clips, config.data.eval_num_crops = 4, 3
        config.model.video.input_size = (32, 320, 320)  # 8x20x20 tokens; tables interpolated
        ft.num_classes, ft.test_split = 101, "test1"
        config.total_steps, config.batch_size = 10_000, 64
        config.eval = ml_collections.ConfigDict({"batch_size": 64})
    elif dataset == "esc50":
        config.data = _common.real_data("esc50/default", "fold2+fold3+fold4+fold5", "audio,label")
        config.data.eval_num_clips = 3  # windows over the 5 s clip, logits averaged
        ft.modality, ft.num_classes, ft.test_split = "audio", 50, "fold1"
        config.total_steps, config.batch_size = 5_000, 64
        config.optimizer.warmup_steps = 500
        config.eval = ml_collections.ConfigDict({"batch_size": 64})
    else:
        raise ValueError(f"configs/finetune.py:{dataset}: use one of {DATASETS}")
    if dataset != "synthetic":
        config.data.max_text_len = config.model.text.max_len  # the model's text length
    if config.variant in _pretrain.PAPER_VARIANTS:
        # Official fine-tuning numerics (see the module docstring).
        ft.dropout_rate = 0.5 if ft.modality == "video" else 0.0
        ft.head_init = "official"
        config.optimizer.grad_clip_norm = 0.75
        config.optimizer.grad_clip_scope = "backbone"
    config.finetune = ft
    return config
