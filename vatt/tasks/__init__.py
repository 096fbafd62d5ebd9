"""Tasks supply the model, the loss, the training data and the evaluators to the one train loop."""

from __future__ import annotations

import ml_collections


def get_task(config: ml_collections.ConfigDict):
    """The task object named by `config.task`."""
    if config.task == "pretrain":
        from vatt.tasks.pretrain import PretrainTask
        return PretrainTask(config)
    if config.task == "finetune":
        from vatt.tasks.finetune import FinetuneTask
        return FinetuneTask(config)
    if config.task in ("linear_probe", "zeroshot"):
        from vatt.tasks.linear_probe import EvaluateTask
        return EvaluateTask(config)
    raise ValueError(f"task={config.task!r} is not known; use 'pretrain', 'finetune', "
                     "'linear_probe' or 'zeroshot'")
