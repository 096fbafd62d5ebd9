"""Data layer. `vatt.data.synthetic` is numpy-only; real datasets (tfds builders,
DMVR records, the random-access pipeline) live in submodules that import TensorFlow,
so importing this package imports neither.
"""
