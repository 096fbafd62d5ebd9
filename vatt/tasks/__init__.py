"""Tasks supply the model, the loss, the training data and the evaluators to the one train loop."""

from __future__ import annotations

import ml_collections

from vatt.tasks.base import DataStream, Task
from vatt.tasks.evaluate import EvaluateTask
from vatt.tasks.finetune import FinetuneTask
from vatt.tasks.pretrain import PretrainTask

TASKS = {"pretrain": PretrainTask, "finetune": FinetuneTask, "linear_probe": EvaluateTask,
         "zeroshot": EvaluateTask}
EVALUATE_ONLY = ("linear_probe", "zeroshot")


def build_task(config: ml_collections.ConfigDict) -> Task:
    """The task object named by `config.task`."""
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r} is not known: use one of {tuple(TASKS)}")
    return TASKS[config.task](config)


__all__ = ["DataStream", "EVALUATE_ONLY", "TASKS", "Task", "build_task"]
