"""The points of an ablation: config overrides (key=value strings, as `--config.<key>=<value>`
takes them), their cartesian product, names, and the equal-wall-time step counts."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from typing import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Point:
    """One setting of the ablation: ordered (key, value) overrides, values as given on the
    command line (ml_collections parses them with the key's type)."""
    overrides: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """Human-readable: "loss.cka_weight=0.1 loss.cka_kernel=rbf" ("baseline" if none)."""
        return " ".join(f"{k}={v}" for k, v in self.overrides) or "baseline"

    @property
    def slug(self) -> str:
        """A directory name for the point, unique per label, safe on every file system."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.label.replace(" ", "__"))

    def get(self, key: str, default: str | None = None) -> str | None:
        return dict(self.overrides).get(key, default)

    def without(self, key: str) -> "Point":
        return Point(tuple((k, v) for k, v in self.overrides if k != key))

    def with_(self, key: str, value: str) -> "Point":
        return Point(self.without(key).overrides + ((key, value),))


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """"key=value" -> (key, value); a key may be given as config.key (the CLI's spelling)."""
    key, sep, value = text.partition("=")
    key = key.strip().removeprefix("--").removeprefix("config.")
    if not sep or not key or not value.strip():
        raise ValueError(f"{what} {text!r}: write key=value, e.g. loss.cka_weight=0.1")
    return key, value.strip()


def parse_axis(text: str) -> tuple[str, list[str]]:
    """"key=v1,v2,v3" -> (key, [v1, v2, v3]): one axis of the grid (values split on commas;
    give a tuple value through --point instead)."""
    key, values = parse_assignment(text, "--grid")
    out = [v.strip() for v in values.split(",") if v.strip()]
    if len(set(out)) != len(out):
        raise ValueError(f"--grid {text!r} repeats a value")
    return key, out


def parse_point(text: str) -> Point:
    """"k1=v1;k2=v2" -> a single extra point (';' separates keys, so values may hold commas)."""
    return Point(tuple(parse_assignment(part, "--point") for part in text.split(";")
                       if part.strip()))


def build_points(axes: Sequence[tuple[str, list[str]]], extra: Sequence[Point] = ()
                 ) -> list[Point]:
    """The cartesian product of `axes` (in the order given) and then the `extra` points,
    without repeats. Neither: the baseline alone (the config as it is)."""
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--grid names a key twice: {keys}")
    points = [Point(tuple(zip(keys, combo))) for combo in
              itertools.product(*[values for _, values in axes])] if axes else []
    if not axes and not extra:
        points = [Point(())]
    for p in extra:
        if p.label not in {q.label for q in points}:
            points.append(p)
    return points


def equal_time_steps(step_seconds: Mapping[str, float], reference_steps: int) -> dict[str, int]:
    """Steps that give every point the training time of the slowest one at `reference_steps`.

    step_seconds: {point label: seconds per step}, e.g. measured at equal steps. The slowest
    point keeps reference_steps; a point k times faster gets k times as many steps (rounded
    down, at least reference_steps).
    """
    if not step_seconds:
        raise ValueError("no step times to equalise")
    bad = {k: v for k, v in step_seconds.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"step times must be positive and finite, got {bad}")
    budget = max(step_seconds.values()) * reference_steps
    return {k: max(reference_steps, int(budget / v)) for k, v in step_seconds.items()}
