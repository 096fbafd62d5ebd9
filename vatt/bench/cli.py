"""Command line of the benchmark: runs a suite, prints a table and ends with one JSON line."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

import jax

from vatt.bench import peak, suite
from vatt.bench.step import CONFIG_FILE, run_case
from vatt.train.step import OutOfMemoryError

COLUMNS = (("case", 52), ("B/dev", 6), ("step ms", 9), ("steps/s", 8), ("clips/s", 9),
           ("GFLOP/step", 11), ("/3xfwd", 7), ("TFLOP/s", 8), ("MFU", 6), ("compile s", 9),
           ("temp MiB", 9))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vatt.bench", description=__doc__)
    p.add_argument("--suite", default="cpu", choices=("cpu", "gpu"),
                   help="cpu: 2-core sized (BBS/MBS shapes with --layers encoders, 1 clip per "
                        "device); gpu: full depth, bfloat16 first, largest batch that fits")
    p.add_argument("--configs", default="tiny,bbs,mbs", help="comma list of tiny,bbs,mbs,lbs")
    p.add_argument("--batch_per_device", type=int, default=None,
                   help="clips per device for every case; 0 = largest that fits (accelerators)")
    p.add_argument("--layers", type=int, default=None,
                   help=f"encoder layers of the non-tiny configs (cpu default {suite.CPU_LAYERS}, "
                        "gpu default 0 = the paper's)")
    p.add_argument("--device_memory_gib", type=float, default=None,
                   help="per-device memory budget of the largest-batch search "
                        "(--batch_per_device=0) and of each step's pre-check; default: what "
                        "the accelerator reports (CPU reports none: give one to run the gpu "
                        "suite's search there)")
    p.add_argument("--reps", type=int, default=3, help="timed steps per case (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
    p.add_argument("--keeps", default=",".join(map(str, suite.DROPTOKEN_KEEPS)))
    p.add_argument("--dtypes", default="", help="first = default of every row, e.g. float32,bfloat16")
    p.add_argument("--remats", default="", help="e.g. none,full,dots_saveable")
    p.add_argument("--attentions", default="", help="e.g. xla,cudnn (cudnn: GPU only)")
    p.add_argument("--matmul_size", type=int, default=0, help="0: 2048 on CPU, 8192 otherwise")
    p.add_argument("--accumulation", default="",
                   help="e.g. 1,2,4,8: instead of the suite, the step of each --configs at one "
                        "global batch with config.accumulation_steps=N (GradCache): temporaries "
                        "(temp MiB), time and step-1 loss per N")
    p.add_argument("--config_file", default=CONFIG_FILE,
                   help="pretraining config file or shipped config name")
    p.add_argument("--json_out", default="", help="also write the full results here")
    p.add_argument("--data", action="store_true",
                   help="also the input pipeline's clips/s per core (vatt.data.bench; TensorFlow)")
    p.add_argument("--data_clips", type=int, default=64)
    p.add_argument("--data_frame_size", type=int, default=224)
    p.add_argument("--data_num_frames", type=int, default=32)
    return p.parse_args(argv)


def _row_text(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['name']:<52} {r['error']}"
    cells = (r["name"], r["batch_per_device"], f"{r['step_s'] * 1e3:.1f}",
             f"{r['steps_per_s']:.3f}", f"{r['clips_per_s']:.2f}",
             f"{r['flops_per_step'] / 1e9:.1f}", f"{r['flops_per_step'] / r['flops_3x_forward']:.2f}",
             f"{r['achieved_flops'] / 1e12:.3f}", f"{100 * r['mfu']:.1f}%", f"{r['compile_s']:.1f}",
             f"{r['temp_bytes'] / 2**20:.1f}")
    return " ".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}"
                    for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    devices = jax.devices()
    dev = devices[0]
    n = len(devices)
    on_cpu = dev.platform == "cpu"
    if args.accumulation:
        case_list = suite.accumulation_cases(
            list(_names(args.configs)), tuple(int(n) for n in _names(args.accumulation)),
            batch_per_device=args.batch_per_device, layers=args.layers)
    else:
        case_list = suite.cases(
            args.suite, list(_names(args.configs)), batch_per_device=args.batch_per_device,
            layers=args.layers, keeps=_floats(args.keeps), dtypes=_names(args.dtypes) or None,
            remats=_names(args.remats) or None, attentions=_names(args.attentions) or None)
    skipped = [c.name for c in case_list if on_cpu and c.attention == "cudnn"]
    case_list = [c for c in case_list if c.name not in skipped]  # cuDNN attention needs a GPU
    memory_bytes = (None if args.device_memory_gib is None
                    else int(args.device_memory_gib * 2**30))

    started = time.perf_counter()
    msize = args.matmul_size or (2048 if on_cpu else 8192)
    matmul = {"float32": peak.measure_matmul(msize, "float32")}
    if not on_cpu:
        matmul["bfloat16"] = peak.measure_matmul(msize, "bfloat16")
    print(f"vatt.bench suite={args.suite} on {n} x {dev.device_kind} ({dev.platform}), host "
          f"{platform.node()} ({platform.processor() or platform.machine()}); matmul "
          f"{msize}^3: " + ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in matmul.items()),
          flush=True)
    if skipped:
        print(f"skipped (cuDNN attention needs a GPU): {', '.join(skipped)}", flush=True)
    print(" ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(COLUMNS)),
          flush=True)

    rows: list[dict[str, Any]] = []
    batch_cache: dict = {}
    for case in case_list:
        try:
            row = run_case(case, reps=args.reps, warmup=args.warmup,
                           config_file=args.config_file, batch_cache=batch_cache,
                           memory_bytes=memory_bytes)
        except OutOfMemoryError as e:  # report and go on with the other cases
            row = {"name": case.name, "group": case.group, "error": f"OOM: {e}"}
        if "error" not in row:
            sheet = peak.datasheet_peak(dev, row["dtype"])
            # On CPU the fake devices share the host's cores: the host matmul is the peak.
            measured = matmul.get(row["dtype"], matmul["float32"]) * (1 if on_cpu else n)
            row["peak_flops"] = sheet * n if sheet else measured
            row["peak_source"] = "datasheet" if sheet else "measured matmul"
            row["mfu"] = row["achieved_flops"] / row["peak_flops"]
            row["mfu_vs_matmul"] = row["achieved_flops"] / measured
        rows.append(row)
        print(_row_text(row), flush=True)

    result: dict[str, Any] = {
        "suite": args.suite, "device_kind": dev.device_kind, "platform": dev.platform,
        "devices": n, "host": platform.node(), "argv": sys.argv[1:] if argv is None else argv,
        "matmul_size": msize, "matmul_flops": matmul, "skipped": skipped,
        **suite.summarize(rows)}
    if args.data:
        # Imported only here: the model benchmark itself never imports TensorFlow.
        from vatt.data import bench as data_bench
        result["data_clips_per_s_per_core"] = data_bench.run(
            clips=args.data_clips, frame_size=args.data_frame_size,
            num_frames=args.data_num_frames)
    result["wall_s"] = time.perf_counter() - started
    compact = [{k: r[k] for k in ("name", "batch_per_device", "step_s", "clips_per_s",
                                  "flops_per_step", "mfu") if k in r} | (
                                      {"error": r["error"]} if "error" in r else {})
               for r in rows]
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({**result, "rows": rows}, f, indent=2)
    print(json.dumps({**result, "rows": compact}), flush=True)
    return {**result, "rows": rows}
