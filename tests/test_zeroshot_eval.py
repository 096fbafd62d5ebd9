"""Zero-shot retrieval: window-averaged and similarity-averaged metrics on embeddings with a known
answer, the evaluate-only task on the synthetic held-out split (against the pretraining run's own
evaluation of the same clips, another code path), and on tiny real-format MSR-VTT 1k-A."""

import json
import os

import numpy as np
import pytest

from helpers import config, final_metrics

RANK_KEYS = ("R@1", "R@5", "R@10", "MedR", "MeanR")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_similarity_variants():
    from vatt.evaluation.retrieval_eval import retrieval_report, similarities
    rng = np.random.default_rng(0)
    text = _unit(rng.normal(size=(6, 8)))
    video = _unit(text[:, None, :] + 0.05 * rng.normal(size=(6, 3, 8)))
    sims = similarities(video, text)
    assert sims["mean"].shape == sims["simavg"].shape == (6, 6)
    m = retrieval_report(sims)
    for task in ("t2v", "v2t"):
        assert m[f"zeroshot/{task}/R@1"] == 100.0 and m[f"zeroshot/{task}/MedR"] == 1.0
        assert m[f"zeroshot/simavg/{task}/R@1"] == 100.0
    assert m["zeroshot/num_clips"] == 6.0


def test_retrieval_known_answers():
    from vatt.evaluation.retrieval_eval import retrieval_report, similarities
    n = 12
    basis = np.eye(n)
    # Caption i is e_i; clip j is e_{j-1} + 0.5 e_j (normalised): every caption matches the
    # NEXT clip best and its own second, every clip matches the PREVIOUS caption best: all
    # ranks are 2 in both directions.
    text = basis
    video = _unit(np.roll(basis, -1, axis=1) + 0.5 * basis)[:, None, :]
    m = retrieval_report(similarities(video, text))
    for variant in ("zeroshot", "zeroshot/simavg"):
        for task in ("t2v", "v2t"):
            assert m[f"{variant}/{task}/R@1"] == 0.0 and m[f"{variant}/{task}/R@5"] == 100.0
            assert m[f"{variant}/{task}/MedR"] == 2.0 and m[f"{variant}/{task}/MeanR"] == 2.0
    assert m["zeroshot/num_clips"] == n
    # Where the two window combinations disagree. Captions e0, e1. Clip 0: two identical
    # windows w = 0.6 e0 + 0.6 e1 + 0.53 e3. Clip 1: windows e1 and e2. Caption 1 scores clip 1
    # at 0.707 with the re-normalised window mean but 0.5 with the mean similarity, and clip 0
    # at 0.6 either way: t2v ranks (1, 1) for "mean", (1, 2) for "simavg". Clip 0 scores both
    # captions 0.6 (a tie, counted against it): v2t ranks (2, 1) for both.
    w = np.array([0.6, 0.6, 0.0, np.sqrt(1 - 0.72)])
    text = np.eye(4)[:2]
    video = np.stack([np.stack([w, w]), np.eye(4)[1:3]])
    m = retrieval_report(similarities(video, text))
    assert m["zeroshot/t2v/R@1"] == 100.0 and m["zeroshot/t2v/MeanR"] == 1.0
    assert m["zeroshot/simavg/t2v/R@1"] == 50.0 and m["zeroshot/simavg/t2v/MeanR"] == 1.5
    for variant in ("zeroshot", "zeroshot/simavg"):
        assert m[f"{variant}/v2t/R@1"] == 50.0 and m[f"{variant}/v2t/MedR"] == 1.5
        assert m[f"{variant}/v2t/R@5"] == 100.0
    assert m["zeroshot/num_clips"] == 2.0


def test_synthetic_zeroshot_matches_pretraining_evaluation(trained_run, tmp_path):
    """zeroshot:synthetic,runlocal embeds the same 64 held-out clips the pretraining run
    evaluated itself on, through RetrievalEvaluator (window embedding, first caption) instead of
    the pretraining's SyntheticZeroShotEvaluator: text-to-video retrieval must agree."""
    from vatt import experiment
    cfg = config("zeroshot:synthetic,runlocal", init_from=trained_run.workdir)
    assert cfg.evals.zeroshot_synthetic.num_clips == trained_run.config.eval.num_clips == 64
    wd = str(tmp_path / "zs")
    metrics = experiment.run(cfg, wd, plots=False, tensorboard=False)
    assert not os.path.exists(os.path.join(wd, "checkpoints"))
    assert metrics["zeroshot/num_clips"] == trained_run.metrics["zeroshot/num_clips"] == 64
    for k in ("R@1", "R@5", "R@10", "MedR", "MeanR"):
        assert metrics[f"zeroshot/t2v/{k}"] == pytest.approx(trained_run.metrics[f"zeroshot/t2v/{k}"])
    chance_r1, chance_r5, chance_medr = 100 / 64, 500 / 64, 32.5
    assert metrics["zeroshot/t2v/R@1"] >= 8 * chance_r1        # measured 25.0 (16x)
    assert metrics["zeroshot/t2v/R@5"] >= 8 * chance_r5        # measured 92.2 (11.8x)
    assert metrics["zeroshot/t2v/MedR"] <= chance_medr / 8     # measured 2
    # One window per synthetic clip: the similarity-averaged variant is the same numbers.
    for task in ("t2v", "v2t"):
        for k in RANK_KEYS:
            assert metrics[f"zeroshot/simavg/{task}/{k}"] == metrics[f"zeroshot/{task}/{k}"]
    with open(os.path.join(wd, "zeroshot", "synthetic_step0.json")) as f:
        ranks = np.array(json.load(f)["t2v_ranks"])
    assert len(ranks) == 64
    assert metrics["zeroshot/t2v/R@1"] == pytest.approx(100 * np.mean(ranks <= 1))
    assert final_metrics(wd)["zeroshot/t2v/R@1"] == metrics["zeroshot/t2v/R@1"]


def test_msrvtt_zeroshot_task(trained_run, tmp_path):
    from vatt import experiment
    from vatt.data.build import build
    from vatt.testing import media as F
    dd = str(tmp_path / "tfds")
    # 10 clips, 8 of them in the 1k-A test list (R@5 can be below 100 with 8 candidates).
    info = F.write_msrvtt(str(tmp_path / "msrvtt"), num_videos=10, test_ids=(0, 1, 3, 4, 6, 7, 8, 9))
    summary = build("msrvtt", manual_dir=str(tmp_path / "msrvtt"), data_dir=dd, config="tiny")
    assert summary["written"]["test"] == len(info["test"]) == 8
    cfg = config("zeroshot:msrvtt,tiny,runlocal", init_from=trained_run.workdir,
                 data__name="msrvtt/tiny", data__data_dir=dd, data__num_frames=4,
                 data__target_fps=5.0, data__frame_size=16, data__max_text_len=8,
                 evals__zeroshot_msrvtt__batch_size=4)
    wd = str(tmp_path / "zs")
    metrics = experiment.run(cfg, wd, tensorboard=False)
    for variant in ("zeroshot", "zeroshot/simavg"):
        for task in ("t2v", "v2t"):
            for k in RANK_KEYS:
                assert f"{variant}/{task}/{k}" in metrics
    assert metrics["zeroshot/num_clips"] == len(info["test"])  # the 1k-A test list
    report = os.path.join(wd, "zeroshot", "msrvtt_step0.json")
    with open(report) as f:
        rep = json.load(f)
    assert rep["metrics"]["zeroshot/t2v/R@1"] == metrics["zeroshot/t2v/R@1"]
    # The metrics are those of the ground-truth ranks in the report.
    ranks = np.array(rep["t2v_ranks"])
    assert len(ranks) == 8 and set(ranks) <= set(range(1, 9))
    for k in (1, 5, 10):
        assert metrics[f"zeroshot/t2v/R@{k}"] == pytest.approx(100 * np.mean(ranks <= k))
    assert metrics["zeroshot/t2v/MedR"] == pytest.approx(np.median(ranks))
    assert metrics["zeroshot/t2v/MeanR"] == pytest.approx(ranks.mean())
    assert metrics["zeroshot/t2v/R@10"] == 100.0  # 8 candidates
    for name in ("msrvtt_step0_similarity.png", "msrvtt_step0_recall_at_k.png"):
        assert os.path.getsize(os.path.join(wd, "zeroshot", name)) > 1000


def test_evaluators_of_one_model_share_their_compiled_function():
    """CompiledPerModel: evaluators built for two runs of one model structure (two graphdefs,
    equal but not the same object) get one jitted function, so a later run's evaluation does
    not trace or compile again; another structure or another argument gets its own."""
    from flax import nnx

    from vatt.evaluation.base import CompiledPerModel
    from vatt.evaluation.linear_probe import features_fn
    from vatt.models.vatt_model import build_model
    model_cfg = config("pretrain:tiny,runlocal").model

    def graphdef(**overrides):
        cfg = model_cfg.copy_and_resolve_references()
        for key, value in overrides.items():
            setattr(cfg.video, key, value)
        return nnx.split(nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0))))[0]

    first, second = graphdef(), graphdef()
    assert first is not second
    video = CompiledPerModel(features_fn, "video")(first)
    assert CompiledPerModel(features_fn, "video")(second) is video
    assert CompiledPerModel(features_fn, "audio")(second) is not video
    assert CompiledPerModel(features_fn, "video")(graphdef(num_layers=2)) is not video
