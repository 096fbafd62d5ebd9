"""The pretraining objective as the README states it, checked with numbers.

* vatt.tasks.pretrain.contrastive_loss on hand-made model outputs: the weighted mean / sum of
  NCE(video, audio) and MIL-NCE(video, text), clips without captions (NCE only), the CKA term.
* Inside the train loop (pretrain:tiny,runlocal, in this process): the CKA loss raises the
  logged CKA, a learned temperature moves, is checkpointed and resumed, and a pretraining config
  whose extra evaluator collides with the built-in zero-shot metrics is refused before training.
* In ONE 8-fake-device subprocess: the shard_map (chunked) losses train like the plain ones.
"""

import json
import math
import os

import numpy as np
import pytest

import helpers
from conftest import BASE_OVERRIDES

SPEC = "pretrain:tiny,runlocal"
# The runs of this file: the 20-step overrides of tests/conftest.py (a loss per step, no PNGs,
# the learning rate at its peak from step 2), so the programs they share with test_train.py,
# test_checkpointing.py, test_no_recompile.py and test_cli.py are compiled once for all.
RUN = BASE_OVERRIDES
STEPS = RUN["total_steps"]
B, K = 8, 2        # clips, candidate captions per clip (the runlocal config's num_captions)
NO_TEXT = (2, 5)   # clips of the hand-made batch without any caption (AudioSet-style)


# --------------------------------------------------------------------------- references (numpy)
def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def ref_mil_nce(video, text, text_mask, tau):
    """Asymmetric MIL-NCE written out per clip, float64 (losses.py's module docstring):
    loss_b = LSE({S[b,j,k]} U {S[j,b,k]}) - LSE({S[b,b,k]}) over valid candidates, mean over
    clips that have a caption; a caption-less clip's video stays a negative (S[j,b,k], all j)."""
    v = _normalize(np.asarray(video, np.float64))
    t = _normalize(np.asarray(text, np.float64))
    valid = np.asarray(text_mask) > 0
    s = np.einsum("bd,jkd->bjk", v, t) / tau
    terms = []
    for b in range(v.shape[0]):
        if not valid[b].any():
            continue
        v2t = s[b][valid]                  # clip b's video against every valid caption
        t2v = s[:, b, :][:, valid[b]]      # every video against clip b's captions
        pos = s[b, b, valid[b]]
        terms.append(_lse(np.concatenate([v2t.ravel(), t2v.ravel()])) - _lse(pos))
    return float(np.mean(terms))


def ref_nce(x, y, tau):
    return ref_mil_nce(x, np.asarray(y)[:, None, :], np.ones((len(x), 1)), tau)


# --------------------------------------------------------------------------- hand-made outputs
@pytest.fixture(scope="module")
def loss_cfg():
    """The shipped `loss` section (temperature 0.07, weights 1/1, mean, asymmetric, cka 0)."""
    return helpers.config(SPEC).loss


@pytest.fixture(scope="module")
def outputs():
    return make_outputs()


def make_outputs():
    """(out, text_mask) shaped like the tiny model's outputs; audio is paired with video (NCE
    well below chance), text is not (MIL-NCE near chance), so L_va and L_vt differ clearly."""
    import jax.numpy as jnp
    model = helpers.config(SPEC).model
    d_va, d_vt, d = model.head.va_dim, model.head.vt_dim, model.video.d_model
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    video_va = f32(B, d_va)
    # Pooled outputs with a few shared factors (rank 3), so their CKAs are mid-range numbers.
    factors = f32(B, 3)
    pooled = lambda z: z @ f32(3, d)  # noqa: E731
    out = {
        "video": {"va": video_va, "vt": f32(B, d_vt), "pooled": pooled(factors)},
        "audio": {"va": video_va + 2.5 * f32(B, d_va), "pooled": pooled(factors + f32(B, 3))},
        "text": {"vt": f32(B, K, d_vt), "pooled": pooled(factors[:, None] + f32(B, K, 3))},
    }
    text_mask = np.ones((B, K), np.float32)
    text_mask[0, 1] = 0.0             # one clip with a single caption
    text_mask[list(NO_TEXT)] = 0.0    # clips with no caption at all
    # A caption-less clip's text embeddings are whatever its padding gives: unrelated here.
    out["text"]["pooled"][list(NO_TEXT)] = pooled(f32(len(NO_TEXT), K, 3))
    out = {m: {k: jnp.asarray(v) for k, v in d.items()} for m, d in out.items()}
    return out, jnp.asarray(text_mask)


def replaced(out, modality, key, rows, value):
    """A copy of `out` with out[modality][key][rows] = value."""
    new = {m: dict(d) for m, d in out.items()}
    new[modality][key] = out[modality][key].at[np.asarray(rows)].set(value)
    return new


def direct_losses(out, text_mask, cfg):
    """(L_va, L_vt) from vatt.losses directly (jitted: eager dispatch compiles every op)."""
    import jax
    from vatt import losses

    @jax.jit
    def both(out, text_mask):
        return (losses.nce(out["video"]["va"], out["audio"]["va"], temperature=cfg.temperature),
                losses.mil_nce(out["video"]["vt"], out["text"]["vt"], temperature=cfg.temperature,
                               text_mask=text_mask, variant=cfg.mil_nce_variant))
    return tuple(float(x) for x in both(out, text_mask))


def contrastive_losses(cases, text_mask):
    """[(total, metrics)] of contrastive_loss for each (out, loss cfg) of `cases`, all in one
    jitted program (one compilation instead of hundreds of eager ones), as Python floats."""
    import jax
    from vatt.tasks.pretrain import contrastive_loss
    cfgs = [cfg for _, cfg in cases]
    fn = jax.jit(lambda outs, mask: [contrastive_loss(o, mask, c) for o, c in zip(outs, cfgs)])
    results = jax.device_get(fn([out for out, _ in cases], text_mask))
    return [(float(total), {k: float(v) for k, v in metrics.items()})
            for total, metrics in results]


def with_loss(cfg, **updates):
    new = cfg.copy_and_resolve_references()
    new.update(updates)
    return new


# --------------------------------------------------------------------------- 1. the loss function
WEIGHTS = ((1.0, 1.0), (2.0, 0.5), (0.3, 1.7), (1.0, 0.0), (0.0, 1.0))


@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_total_is_the_weighted_mean_or_sum_of_nce_and_mil_nce(outputs, loss_cfg, combine):
    out, text_mask = outputs
    l_va, l_vt = direct_losses(out, text_mask, loss_cfg)
    # The direct losses are the written-out formulas, and far enough apart that a swapped or
    # dropped weight shows (measured L_va 0.785, L_vt 4.293).
    assert l_va == pytest.approx(ref_nce(out["video"]["va"], out["audio"]["va"], 0.07), rel=1e-5)
    assert l_vt == pytest.approx(ref_mil_nce(out["video"]["vt"], out["text"]["vt"], text_mask,
                                             0.07), rel=1e-5)
    assert l_vt - l_va > 1.0, (l_va, l_vt)
    results = contrastive_losses(
        [(out, with_loss(loss_cfg, combine=combine, va_weight=w_va, vt_weight=w_vt))
         for w_va, w_vt in WEIGHTS], text_mask)
    for (w_va, w_vt), (total, metrics) in zip(WEIGHTS, results):
        weighted = w_va * l_va + w_vt * l_vt
        expected = weighted / (w_va + w_vt) if combine == "mean" else weighted
        assert total == pytest.approx(expected, rel=1e-6), (w_va, w_vt)
        # The logged parts are the unweighted losses whatever the weights.
        assert metrics["train/loss_va"] == pytest.approx(l_va, rel=1e-6)
        assert metrics["train/loss_vt"] == pytest.approx(l_vt, rel=1e-6)
        assert metrics["train/temperature"] == pytest.approx(0.07)
        assert "train/loss_cka" not in metrics  # cka_weight 0: no CKA term
        if (w_va, w_vt) == (1.0, 0.0):  # exactly NCE, in both forms: same bits as the logged L_va
            assert total == metrics["train/loss_va"]


def test_clips_without_text_count_in_nce_only(outputs, loss_cfg):
    out, text_mask = outputs
    has_text = [b for b in range(B) if b not in NO_TEXT]
    # Whatever the caption-less clips' caption embeddings are ...
    junk = replaced(replaced(out, "text", "vt", list(NO_TEXT), 50.0), "text", "pooled",
                    list(NO_TEXT), -3.0)
    # ... a caption-less clip's video placed on another clip's caption ...
    moved = replaced(out, "video", "vt", [NO_TEXT[0]], out["text"]["vt"][has_text[0], 0])
    # ... a caption-less clip's audio swapped with another's.
    swapped = replaced(out, "audio", "va", [NO_TEXT[0]], out["audio"]["va"][NO_TEXT[1]])
    (_, metrics), (_, junk_m), (_, moved_m), (_, swapped_m) = contrastive_losses(
        [(out, loss_cfg), (junk, loss_cfg), (moved, loss_cfg), (swapped, loss_cfg)], text_mask)
    l_va, l_vt = metrics["train/loss_va"], metrics["train/loss_vt"]

    # L_vt: the mean over the 6 captioned clips only (not a sum over 8 with zeros).
    assert l_vt == pytest.approx(ref_mil_nce(out["video"]["vt"], out["text"]["vt"], text_mask,
                                             0.07), rel=1e-5)
    all_valid = ref_mil_nce(out["video"]["vt"], out["text"]["vt"], np.ones((B, K)), 0.07)
    assert abs(all_valid - l_vt) > 0.1, "the mask must matter"  # measured 3.824 vs 4.293
    # Their caption embeddings do not move L_vt, nor the video-text CKA (captioned clips only).
    assert junk_m["train/loss_vt"] == pytest.approx(l_vt, rel=1e-6)
    assert junk_m["train/cka/video_text"] == pytest.approx(metrics["train/cka/video_text"],
                                                           rel=1e-5)
    # A caption-less clip's video is still a negative for the other clips' captions.
    assert moved_m["train/loss_vt"] > l_vt + 0.5, (moved_m["train/loss_vt"], l_vt)  # 5.97

    # L_va: every clip, captioned or not: NCE over the 8 pairs, not over the 6 captioned ones.
    assert l_va == pytest.approx(ref_nce(out["video"]["va"], out["audio"]["va"], 0.07), rel=1e-5)
    only_captioned = ref_nce(np.asarray(out["video"]["va"])[has_text],
                             np.asarray(out["audio"]["va"])[has_text], 0.07)
    assert abs(only_captioned - l_va) > 0.01, (only_captioned, l_va)  # measured 0.764 vs 0.785
    # ... and a caption-less clip's audio changes it.
    assert swapped_m["train/loss_va"] > l_va + 0.5, (swapped_m["train/loss_va"], l_va)  # 1.83


@pytest.mark.parametrize("cka_weight, combine", [(0.5, "mean"), (2.0, "sum")])
def test_cka_weight_adds_minus_lambda_times_the_two_ckas(outputs, loss_cfg, cka_weight, combine):
    import jax
    from vatt import alignment
    cka = jax.jit(alignment.cka)  # linear kernel, biased: the config's cka_kernel
    assert loss_cfg.cka_kernel == "linear"
    out, text_mask = outputs
    has_text = np.array([b not in NO_TEXT for b in range(B)])
    video, audio = out["video"]["pooled"], out["audio"]["pooled"]
    text = out["text"]["pooled"][:, 0]
    cka_vt = float(cka(video[has_text], text[has_text]))      # captioned clips only
    cka_va = float(cka(video, audio))                          # every clip
    # Taking the caption-less clips into the video-text CKA would give another number
    # (measured 0.515 over all 8 clips, 0.778 over the 6 captioned ones; video-audio 0.695).
    assert abs(float(cka(video, text)) - cka_vt) > 0.1
    assert 0.05 < cka_vt < 0.95 and 0.05 < cka_va < 0.95, (cka_vt, cka_va)

    base_cfg = with_loss(loss_cfg, combine=combine)
    (base, base_metrics), (total, metrics) = contrastive_losses(
        [(out, base_cfg), (out, with_loss(base_cfg, cka_weight=cka_weight))], text_mask)
    expected = -cka_weight * (cka_vt + cka_va)
    assert metrics["train/loss_cka"] == pytest.approx(expected, rel=1e-5)
    assert total - base == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # The logged CKAs are those, with or without the loss; the contrastive parts are unchanged.
    for m in (metrics, base_metrics):
        assert m["train/cka/video_text"] == pytest.approx(cka_vt, rel=1e-5)
        assert m["train/cka/video_audio"] == pytest.approx(cka_va, rel=1e-5)
    for key in ("train/loss_va", "train/loss_vt"):
        assert metrics[key] == pytest.approx(base_metrics[key], rel=1e-6)
    assert "train/loss_cka" not in base_metrics


def test_cka_space_common_puts_the_loss_on_the_common_space_embeddings(outputs, loss_cfg):
    import jax
    from vatt import alignment
    cka = jax.jit(alignment.cka)
    out, text_mask = outputs
    has_text = np.array([b not in NO_TEXT for b in range(B)])
    vt_v, vt_t = out["video"]["vt"][has_text], out["text"]["vt"][:, 0][has_text]
    expected = -0.5 * (float(cka(vt_v, vt_t)) + float(cka(out["video"]["va"], out["audio"]["va"])))
    (pooled_total, pooled), (total, metrics) = contrastive_losses(
        [(out, with_loss(loss_cfg, cka_weight=0.5)),
         (out, with_loss(loss_cfg, cka_weight=0.5, cka_space="common"))], text_mask)
    assert metrics["train/loss_cka"] == pytest.approx(expected, rel=1e-5)
    assert metrics["train/loss_cka"] == pytest.approx(
        -0.5 * (metrics["train/cka/common/video_text"] + metrics["train/cka/common/video_audio"]),
        rel=1e-6)
    # Another number than the pooled-output term (measured apart by more than 0.01).
    assert abs(metrics["train/loss_cka"] - pooled["train/loss_cka"]) > 0.01
    assert total - metrics["train/loss_cka"] == pytest.approx(
        pooled_total - pooled["train/loss_cka"], rel=1e-6)


# --------------------------------------------------------------------------- 2. CKA in the loop
@pytest.fixture(scope="module")
def cka_runs(tmp_path_factory, one_device_runs):
    """{cka_weight: workdir} of two runs identical but for loss.cka_weight (0 and 1); the first
    is the session's 1-device run (conftest.one_device_runs: RUN plus checkpoints, which do not
    change the numbers), and the pretraining config's cka_weight is 0."""
    from vatt import config_files, experiment
    assert config_files.load(SPEC).loss.cka_weight == 0.0
    workdir = str(tmp_path_factory.mktemp("cka1"))
    config = config_files.load(SPEC, dict(RUN, **{"loss.cka_weight": 1.0}))
    experiment.run(config, workdir, plots=False, tensorboard=False)
    return {0.0: one_device_runs["default"], 1.0: workdir}


def test_cka_loss_raises_the_logged_cka(cka_runs):
    """Measured (2-core x86-64), without -> with the CKA loss: at step 20 video-text 0.33 -> 0.64,
    video-audio 0.32 -> 0.56; mean of steps 11-20 video-text 0.33 -> 0.47, video-audio
    0.31 -> 0.45; held-out video-text CKA of the final evaluation 0.16 -> 0.34."""
    without, with_cka = cka_runs[0.0], cka_runs[1.0]
    steps = list(range(1, STEPS + 1))
    for pair in ("video_text", "video_audio"):
        a = helpers.train_values(without, f"train/cka/{pair}")
        b = helpers.train_values(with_cka, f"train/cka/{pair}")
        assert sorted(a) == sorted(b) == steps
        # Same initialisation and batches: step 1 (before any update) is the same number.
        assert b[1] == pytest.approx(a[1], rel=1e-6)
        assert b[STEPS] > a[STEPS] + 0.1, (pair, a[STEPS], b[STEPS])
        last10 = steps[-10:]
        mean_a, mean_b = (np.mean([v[s] for s in last10]) for v in (a, b))
        assert mean_b > mean_a + 0.05, (pair, mean_a, mean_b)
    # On the held-out clips too (the final zero-shot evaluation).
    held_out = [helpers.final_metrics(w)["zeroshot/cka/video_text"] for w in (without, with_cka)]
    assert held_out[1] > held_out[0] + 0.08, held_out
    # train/loss_cka only with the CKA loss, and it is -1.0 * (the two logged CKAs).
    assert helpers.train_values(without, "train/loss_cka") == {}
    loss_cka = helpers.train_values(with_cka, "train/loss_cka")
    assert sorted(loss_cka) == steps
    vt = helpers.train_values(with_cka, "train/cka/video_text")
    va = helpers.train_values(with_cka, "train/cka/video_audio")
    for s in steps:
        assert loss_cka[s] == pytest.approx(-(vt[s] + va[s]), rel=1e-5)


# --------------------------------------------------------------------------- 3. learned temperature
def test_learned_temperature_moves_is_saved_and_resumed(tmp_path):
    """Measured: 0.07 at steps 1-2 (the learning rate is 0 at step 1), rising to 0.0707008 at
    step 20; saved log(tau) -2.649281 (step 20's update, at the end of the cosine decay, is tiny:
    1.7e-5 from log(0.0707008)); the resumed step 21 logs exp(-2.649281) = 0.0707021."""
    from vatt import config_files, experiment
    from vatt.train.checkpointing import load_model_tree
    workdir = str(tmp_path)

    def run(total_steps):
        config = config_files.load(SPEC, dict(RUN, **{"total_steps": total_steps,
                                                      "loss.learn_temperature": True}))
        experiment.run(config, workdir, plots=False, tensorboard=False)
        return helpers.train_values(workdir, "train/temperature")

    temps = run(STEPS)
    assert sorted(temps) == list(range(1, STEPS + 1))
    assert temps[1] == pytest.approx(0.07, abs=1e-7)
    assert abs(temps[STEPS] - 0.07) > 3e-4, temps       # measured 7.0e-4
    assert len(set(temps.values())) > 10, temps          # it keeps moving, step after step
    saved = float(load_model_tree(workdir)["log_temperature"])
    # The checkpoint (after the last step's update) holds the last logged temperature, not 0.07.
    assert abs(saved - math.log(temps[STEPS])) < 1e-4, (saved, temps[STEPS])
    assert abs(saved - math.log(0.07)) > 4e-3, saved     # measured 1.0e-2

    temps = run(STEPS + 5)  # resume in the same workdir for 5 more steps
    assert sorted(temps) == list(range(1, STEPS + 6))
    # The first resumed step uses the restored parameter: exactly the saved temperature.
    first = temps[STEPS + 1]
    assert first == pytest.approx(math.exp(saved), rel=1e-6), (first, saved)
    assert abs(first - 0.07) > 3e-4 and abs(first - temps[STEPS]) < 2e-5, (first, temps[STEPS])
    resumed = float(load_model_tree(workdir)["log_temperature"])  # the new last checkpoint
    assert resumed != saved
    assert abs(resumed - math.log(temps[STEPS + 5])) < 1e-4, (resumed, temps[STEPS + 5])


# --------------------------------------------------------------------------- 4. chunked losses
def test_chunked_losses_train_like_the_plain_ones_on_eight_devices(eight_device_runs):
    """The chunked (shard_map) losses and the plain ones on 8 devices, at the tiny learning rate
    where float rounding cannot grow (at the default rate Adam amplifies the last-bit
    differences of the gathered reductions: 1.8e-4 by step 17, measured). Steps 1-2 equal bit
    for bit; the series are not bit-identical, so the chunked form did run. Both runs come from
    the session's one 8-device subprocess (tests/conftest.py: eight_device_runs)."""
    out = {name: {k: {str(s): v for s, v in helpers.train_values(eight_device_runs[run], k).items()}
                  for k in ("train/loss", "train/loss_va", "train/loss_vt")}
           for name, run in (("False", "replicated_tiny_lr"), ("True", "chunked_tiny_lr"))}
    plain, chunked = out["False"], out["True"]
    steps = [str(s) for s in range(1, STEPS + 1)]
    identical = True
    for key in ("train/loss", "train/loss_va", "train/loss_vt"):
        assert sorted(plain[key], key=int) == sorted(chunked[key], key=int) == steps
        a = np.array([plain[key][s] for s in steps])
        b = np.array([chunked[key][s] for s in steps])
        assert np.all(np.isfinite(a))
        assert b[0] == pytest.approx(a[0], rel=1e-6)        # step 1: same parameters, same batch
        # The training loss at 1e-5; its MIL-NCE part (LSE over 2*B*K logits) at 3e-5.
        np.testing.assert_allclose(b, a, rtol=3e-5 if key == "train/loss_vt" else 1e-5,
                                   err_msg=key)
        identical &= bool(np.array_equal(a, b))
    assert not identical, "bit-identical series: was the chunked form used at all?"


# --------------------------------------------------------------------------- 5. evaluator names
def test_evaluator_prefix_collision_is_refused_before_training(tmp_path):
    from vatt import config_files, experiment
    from vatt.tasks import build_task
    config = config_files.load(SPEC, RUN)
    entry = config_files.load("zeroshot:synthetic,runlocal").evals.zeroshot_synthetic
    assert entry.kind == "zeroshot" and entry.dataset == "synthetic"
    # Under another prefix the same evaluator is accepted next to the built-in one ...
    config.evals.extra = entry
    config.evals.extra.prefix = "zeroshot_extra"
    assert [e.prefix for e in build_task(config).evaluators()] == ["zeroshot", "zeroshot_extra"]
    # ... under the built-in evaluator's prefix it is refused, before anything is trained.
    config.evals.extra.prefix = "zeroshot"
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match="'zeroshot'") as err:
        experiment.run(config, workdir, plots=False, tensorboard=False)
    assert "prefix" in str(err.value)
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            assert not any("train/loss" in json.loads(line) for line in f)
