"""Evaluation: retrieval metrics and the evaluators that run on held-out data."""

from vatt.evaluation.retrieval import retrieval_metrics

__all__ = ["retrieval_metrics"]
