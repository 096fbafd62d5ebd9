"""Test and demo helpers, kept out of the runtime package.

`vatt.testing.media` writes tiny but real media datasets (encoded videos, WAVs, JSON/CSV
metadata in the on-disk layouts the builders read) for tests, notebooks and demos. Nothing in
the runtime package (`vatt.data`, `vatt.train`, ...) imports `vatt.testing`.
"""
