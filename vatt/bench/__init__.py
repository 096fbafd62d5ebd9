"""Training-step benchmark: steps/s, clips/s, FLOPs per step and MFU of the loop's own step.

  python -m vatt.bench                       # CPU suite (2 cores, < 15 min)
  python -m vatt.bench --suite=gpu           # full-depth BBS/MBS, bf16, largest batch that fits
  python -m vatt.bench --data                # + input pipeline clips/s per core (TensorFlow)

Method (BENCHMARKS.md): the train step is vatt.train.loop's make_train_step jitted as the loop
jits it (state donated), compiled by compile_with_memory_check, fed a synthetic batch that
already lives on the devices; each timed step is blocked on, the median is reported. Model
FLOPs per step come from the compiled step's XLA cost analysis (per device, times the device
count); MFU divides the achieved FLOP/s by the datasheet dense peak of the device kind, or on
CPU by a large float32 matmul measured in the same run.
"""

from vatt.bench.peak import datasheet_peak, measure_matmul
from vatt.bench.step import Case, run_case
from vatt.bench.suite import cases, summarize

__all__ = ["Case", "run_case", "cases", "summarize", "datasheet_peak", "measure_matmul", "main"]


def main(argv=None):
    from vatt.bench.cli import main as _main
    return _main(argv)
