"""Shared pytest set-up: every test runs on the CPU, TensorFlow never grabs an accelerator."""

import os
import sys

# Must be set before jax / tensorflow are imported by any test module.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Make `tests/` importable as a plain directory of helpers (tests/subprocess_utils.py), and
# the repository root importable when the package is not installed (plain `pytest tests`).
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
