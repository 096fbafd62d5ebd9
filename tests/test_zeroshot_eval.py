"""Zero-shot retrieval: window-averaged and similarity-averaged metrics, and the evaluate-only
task on tiny real-format MSR-VTT 1k-A (4 windows per clip) from a pretraining checkpoint."""

import json
import os

import numpy as np
import pytest

from test_finetune import load_config, tiny_model, write_pretrain_checkpoint


def test_similarity_variants():
    from vatt.evaluation.retrieval_eval import retrieval_report, similarities
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 8))
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    video = text[:, None, :] + 0.05 * rng.normal(size=(6, 3, 8))
    video /= np.linalg.norm(video, axis=-1, keepdims=True)
    sims = similarities(video, text)
    assert sims["mean"].shape == sims["simavg"].shape == (6, 6)
    m = retrieval_report(sims)
    for task in ("t2v", "v2t"):
        assert m[f"zeroshot/{task}/R@1"] == 100.0 and m[f"zeroshot/{task}/MedR"] == 1.0
        assert m[f"zeroshot/simavg/{task}/R@1"] == 100.0
    assert m["zeroshot/num_clips"] == 6.0


def test_msrvtt_zeroshot_task(tmp_path):
    from vatt.testing import media as F
    from vatt.data.build import build
    from vatt.train.loop import train_and_evaluate
    dd = str(tmp_path / "tfds")
    F.write_msrvtt(str(tmp_path / "msrvtt"))
    build("msrvtt", manual_dir=str(tmp_path / "msrvtt"), data_dir=dd, config="tiny")
    pre = str(tmp_path / "pre")
    write_pretrain_checkpoint(pre, tiny_model())
    config = load_config("zeroshot", "msrvtt,tiny")
    config.model = tiny_model()
    entry = config.evals.zeroshot_msrvtt
    d = entry.data
    d.name, d.data_dir = "msrvtt/tiny", dd
    d.num_frames, d.target_fps, d.frame_size, d.max_text_len = 4, 5.0, 16, 8
    entry.batch_size = 2
    config.init_from = pre
    wd = str(tmp_path / "zs")
    metrics = train_and_evaluate(config, wd)
    for variant in ("zeroshot", "zeroshot/simavg"):
        for task in ("t2v", "v2t"):
            for k in ("R@1", "R@5", "R@10", "MedR", "MeanR"):
                assert f"{variant}/{task}/{k}" in metrics
    assert metrics["zeroshot/num_clips"] == 2.0  # the two 1k-A test clips of the fixture
    assert metrics["zeroshot/t2v/R@5"] == 100.0  # 2 candidates: everything within rank 5
    report = os.path.join(wd, "zeroshot", "msrvtt_step1.json")
    with open(report) as f:
        assert json.load(f)["metrics"]["zeroshot/t2v/R@1"] == metrics["zeroshot/t2v/R@1"]
