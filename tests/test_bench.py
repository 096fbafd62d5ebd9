"""vatt.bench: suites, summary figures and an end-to-end CLI run on the tiny model (no timing
is asserted: only that every figure is there and sensible, and that no TensorFlow is imported)."""

import types

import pytest

from subprocess_utils import run_python
from vatt.bench import peak, suite
from vatt.bench.step import Case, case_config
from vatt.models import summary


def test_cpu_suite_cases():
    cases = suite.cases("cpu", ["tiny", "bbs", "mbs"])
    drop = [c for c in cases if c.group == "droptoken"]
    assert [c.keep for c in drop] == [1.0, 0.75, 0.5, 0.25]
    assert all(c.variant == "bbs" and c.layers == suite.CPU_LAYERS and c.batch_per_device == 1
               and c.dtype == "float32" for c in drop)
    assert {(c.group, c.dtype, c.remat) for c in cases if c.group in ("dtype", "remat")} == {
        ("dtype", "bfloat16", "none"), ("remat", "float32", "full")}
    assert not [c for c in cases if c.attention == "cudnn"]
    tiny = [c for c in cases if c.variant == "tiny"]
    assert len(tiny) == 1 and tiny[0].batch_per_device == 64 and tiny[0].layers == 0
    assert [c.variant for c in cases if c.group == "config"] == ["tiny", "mbs"]


def test_gpu_suite_cases():
    cases = suite.cases("gpu", ["bbs", "mbs"])
    assert all(c.batch_per_device == 0 and c.layers == 0 for c in cases)
    assert all(c.dtype == "bfloat16" for c in cases if c.group != "dtype")
    assert [c.keep for c in cases if c.attention == "cudnn"] == [0.5]
    assert suite.cases("cpu", []) == []


def test_bbs_shaped_config():
    config = case_config(Case("bbs", layers=4, keep=0.5), batch_per_device=2, num_devices=1)
    counts = summary.token_counts(config.model)
    assert counts["tokens"] == {"video": 1568, "audio": 1200, "text": 16}
    assert counts["tokens_kept"] == {"video": 784, "audio": 600}
    m = config.model
    assert (m.video.d_model, m.audio.d_model, m.text.d_model) == (768, 768, 512)
    assert m.video.num_layers == m.audio.num_layers == m.text.num_layers == 4
    assert config.batch_size == 2


def test_summary_figures():
    def row(keep, step_s, group="droptoken", attention="xla", loss=2.0):
        return {"name": f"k{keep}{attention}", "group": group, "keep": keep, "step_s": step_s,
                "mfu": 0.1 * keep, "mfu_vs_matmul": 0.2, "attention": attention,
                "first_loss": loss, "first_grad_norm": 1.0}
    rows = [row(1.0, 4.0), row(0.5, 1.6), row(0.5, 1.5, "attention", "cudnn", 2.002)]
    out = suite.summarize(rows)
    assert out["droptoken_step_time_ratio"] == pytest.approx(0.4)
    assert out["mfu"] == pytest.approx(0.05) and out["mfu_keep100"] == pytest.approx(0.1)
    assert out["cudnn_vs_xla_loss_rel_diff"] == pytest.approx(0.001)
    assert suite.summarize([])["droptoken_step_time_ratio"] is None


def test_datasheet_peaks():
    dev = lambda kind, platform="gpu": types.SimpleNamespace(device_kind=kind, platform=platform)
    assert peak.datasheet_peak(dev("NVIDIA H100 80GB HBM3"), "bfloat16") == pytest.approx(989.4e12)
    assert peak.datasheet_peak(dev("NVIDIA H100 PCIe"), "bfloat16") == pytest.approx(756e12)
    assert peak.datasheet_peak(dev("NVIDIA H200"), "float32") == pytest.approx(494.7e12)
    assert peak.datasheet_peak(dev("NVIDIA A100-SXM4-80GB"), "bfloat16") == pytest.approx(312e12)
    assert peak.datasheet_peak(dev("cpu", "cpu"), "float32") is None
    assert peak.measure_matmul(64, reps=1) > 0


def test_cli_end_to_end_tiny_without_tensorflow():
    # A fresh interpreter: nothing else has imported TensorFlow there.
    out = run_python("""
        import contextlib, io, json, sys
        from vatt.bench import main
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            res = main(["--configs=tiny", "--layers=1", "--batch_per_device=2", "--reps=1",
                        "--keeps=1,0.5", "--dtypes=float32", "--remats=none",
                        "--matmul_size=256"])
        last = json.loads(buf.getvalue().strip().splitlines()[-1])
        print("RESULT:" + json.dumps({"last": last, "rows": res["rows"],
                                      "tf": "tensorflow" in sys.modules}))
    """, num_devices=1, timeout=900)
    assert not out["tf"]
    last, rows = out["last"], out["rows"]
    assert last["droptoken_step_time_ratio"] > 0 and last["mfu"] > 0
    assert len(rows) == 2 and all("error" not in r for r in rows)
    for r in rows:
        assert r["batch_per_device"] == 2 and r["global_batch"] == 2
        assert r["steps_per_s"] > 0 and r["clips_per_s"] == pytest.approx(2 * r["steps_per_s"])
        # Compiled cost analysis vs 3 x the summary's forward FLOPs (the summary counts one
        # caption per clip, the step two, plus the loss and Adam: close to, a bit above 1).
        assert 0.8 < r["flops_per_step"] / r["flops_3x_forward"] < 1.6
        assert r["flops_per_step"] == r["hw_flops_per_step"]
    k100, k50 = sorted(rows, key=lambda r: -r["keep"])
    assert k50["flops_per_step"] < k100["flops_per_step"]


def test_data_flag_runs_the_input_pipeline_benchmark():
    pytest.importorskip("tensorflow")
    from vatt.bench import main
    res = main(["--configs=", "--data", "--data_clips=4", "--data_frame_size=32",
                "--data_num_frames=4", "--matmul_size=128"])
    assert res["rows"] == [] and res["data_clips_per_s_per_core"] > 0
