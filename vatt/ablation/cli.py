"""python -m vatt.ablation: a grid of config overrides x seeds through the ordinary CLI.

  python -m vatt.ablation --config=pretrain:tiny --workdir=/tmp/abl_cka \
      --grid=loss.cka_weight=0,0.01,0.03,0.1,0.3,1 --seeds=0,1,2 \
      --eval=linear_probe:synthetic

Each point x seed trains with `python -m vatt.main --config=<config> --config.<key>=<value>
... --config.seed=<seed>` in <workdir>/runs/<point>/seed<k>/train, then runs every --eval config
on it (--config.init_from=<that run>). Finished runs are read back, not rerun, so the same
command continues an interrupted ablation. At the end it writes results.json, summary.json,
summary.csv (mean and sample std over seeds per point) and summary.png, and prints the table.

--equal_time_from=<an earlier ablation's workdir> gives every point the training wall time
that the slowest point had there (its step times, measured in those runs, set each point's
total_steps): e.g. DropToken rates at equal steps, then at equal time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vatt.ablation import grid, report, runner

DEFAULT_METRICS = ("zeroshot/t2v/R@1", "zeroshot/t2v/R@5", "zeroshot/v2a/R@1",
                   "zeroshot/v2a/R@5", "linear_probe/top1", "zeroshot/cka/video_text",
                   "zeroshot/cka/video_audio", "step_s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vatt.ablation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training config, e.g. pretrain:tiny")
    p.add_argument("--workdir", required=True, help="local folder of the ablation")
    p.add_argument("--grid", action="append", default=[],
                   help="key=v1,v2,...: one axis (repeat for a cartesian product)")
    p.add_argument("--point", action="append", default=[],
                   help="k1=v1;k2=v2: one extra point after the grid (repeatable)")
    p.add_argument("--set", action="append", default=[], dest="fixed",
                   help="key=value applied to every training run (repeatable)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of config.seed values")
    p.add_argument("--eval", action="append", default=[], dest="evals",
                   help="downstream config run on each trained model, e.g. "
                        "linear_probe:synthetic (repeatable)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="columns of the printed table and panels of the plot")
    p.add_argument("--equal_time_from", default="",
                   help="earlier ablation workdir whose step times set each point's "
                        "total_steps to equal the slowest point's training time")
    p.add_argument("--title", default="", help="title of the plot")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    return p.parse_args(argv)


def equal_time_points(points: list[grid.Point], earlier: str) -> list[grid.Point]:
    """Each point with total_steps set from the earlier ablation's step times (its summary)."""
    path = os.path.join(earlier, "summary.json")
    if not os.path.exists(path):
        raise ValueError(f"--equal_time_from={earlier}: no summary.json there; run that "
                         "ablation to the end first")
    with open(path, encoding="utf-8") as f:
        rows = {r["point"]: r for r in json.load(f)}
    missing = [p.label for p in points if p.label not in rows]
    if missing:
        raise ValueError(f"--equal_time_from={earlier} has no runs of {missing}: use the "
                         "same --grid/--point there")
    # The budget is the slowest point of the whole earlier ablation, not only of the points
    # asked for here, so an ablation split over several commands (or machines) agrees.
    steps = {label: r["step_s/mean"] for label, r in rows.items()}
    reference = int(max(r["total_steps/mean"] for r in rows.values()))
    per_point = grid.equal_time_steps(steps, reference)
    return [p.with_("total_steps", str(per_point[p.label])) for p in points]


def main(argv: list[str] | None = None) -> int:
    """Runs the ablation; returns the exit code (1 when a run failed)."""
    args = parse_args(argv)
    try:
        points = grid.build_points([grid.parse_axis(a) for a in args.grid],
                                   [grid.parse_point(p) for p in args.point])
        fixed = tuple(grid.parse_assignment(s, "--set") for s in args.fixed)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not seeds:
            raise ValueError("--seeds is empty: give e.g. --seeds=0,1,2")
        if args.equal_time_from:
            points = equal_time_points(points, args.equal_time_from)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    study = runner.Study(config=args.config, workdir=os.path.abspath(args.workdir),
                         fixed=fixed, evals=tuple(args.evals))
    print(f"Ablation of {args.config}: {len(points)} points x {len(seeds)} seeds in "
          f"{study.workdir}", flush=True)
    if args.dry_run:
        for p in points:
            for s in seeds:
                for _, argv_ in runner.commands(study, p, s):
                    print(" ".join(argv_[1:]))
        return 0
    os.makedirs(study.workdir, exist_ok=True)
    results, failures = runner.run_all(study, points, seeds,
                                       log=lambda m: print(m, flush=True))
    metrics = [m for m in args.metrics.split(",") if m]
    files = report.write(study.workdir, points, results, metrics,
                         title=args.title or f"{args.config}: mean ± std over seeds {seeds}")
    rows = report.summarize(points, results)
    print(report.to_markdown(rows, metrics, scale={"step_s": 1000.0}).replace(
        "step_s |", "step ms |"), flush=True)
    print(json.dumps({"points": len(points), "seeds": seeds, "runs": len(results),
                      "failed": failures, **files}), flush=True)
    return 1 if failures else 0


def run_from_command_line() -> None:
    sys.exit(main())
