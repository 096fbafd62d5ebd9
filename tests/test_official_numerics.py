"""The official VATT numerics (issue 16): attention-probability and final-LayerNorm dropout, Keras'
initialisers, the polyharmonic-spline position resize, the official fine-tuning classifier and
backbone clipping, and frozen word tables that must come from a file. Each is a default of the
paper variants; tiny / ma_tiny keep the earlier behaviour (their programs are unchanged)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from vatt import config_files
from vatt.config_validation import ConfigError, validate
from vatt.models import (Classifier, ModalityBackbone, build_model, deflate_video_tokenizer,
                         model_config, transfer)
from vatt.models.t5_text import T5TextTokenizer
from vatt.models.tokenizers import (AudioTokenizer, VideoTokenizer, interpolate_table,
                                    spline_resize_matrix, spline_resize_table)
from vatt.models.transformer import Encoder
from vatt.train.optimizer import build_optimizer

TRUNC = 0.87962566103423978  # std of a unit normal cut at +-2


def _encoder(num_layers: int = 1, d_model: int = 16, **kw) -> Encoder:
    return Encoder(num_layers, d_model, 2 * d_model, 2, rngs=nnx.Rngs(0), **kw)


# ----------------------------------------------------------------------------- configs

EARLIER = dict(attention_dropout_rate=0.0, final_dropout=False, init_scheme="legacy",
               pos_interpolation="linear")
OFFICIAL = dict(attention_dropout_rate=0.1, final_dropout=True, init_scheme="official",
                pos_interpolation="spline")


def _switches(model: ml_collections.ConfigDict) -> dict:
    return {k: model[k] for k in EARLIER}


@pytest.mark.parametrize("spec", ["pretrain:tiny", "pretrain:tiny,runlocal", "finetune:synthetic",
                                  "finetune:synthetic,runlocal", "finetune:ucf101,tiny"])
def test_tiny_configs_keep_the_earlier_numerics(spec):
    config = config_files.load(spec)
    assert _switches(config.model) == EARLIER
    assert config.model.text.freeze_embedding is False and config.model.text.embedding_path == ""
    assert config.optimizer.grad_clip_scope == "all"
    if config.task == "pretrain":
        assert config.model.dropout_rate == 0.0 and config.optimizer.grad_clip_norm == 1.0
    else:
        assert config.finetune.head_init == "zeros"
        assert config.optimizer.grad_clip_norm == 0.0
        assert config.finetune.dropout_rate == (0.0 if "synthetic" in spec else 0.1)
    for variant in ("tiny", "ma_tiny"):
        assert _switches(model_config(variant)) == EARLIER


@pytest.mark.parametrize("variant", ["bbs", "mbs", "lbs", "ma_medium"])
def test_paper_variants_default_to_the_official_numerics(variant):
    assert _switches(model_config(variant)) == OFFICIAL
    assert _switches(config_files.load(f"pretrain:{variant},runlocal").model) == OFFICIAL
    video = config_files.load(f"finetune:ucf101,{variant}")
    audio = config_files.load(f"finetune:esc50,{variant}")
    assert video.finetune.dropout_rate == 0.5 and audio.finetune.dropout_rate == 0.0
    for c in (video, audio):
        assert c.finetune.head_init == "official"
        assert (c.optimizer.grad_clip_norm, c.optimizer.grad_clip_scope) == (0.75, "backbone")


# ----------------------------------------------------------------------------- initialisers

def test_official_initialisers_have_keras_statistics():
    d = 256
    vt = VideoTokenizer(d, (4, 16, 16), (8, 64, 64), init_scheme="official", rngs=nnx.Rngs(0))
    kernel = np.asarray(vt.voxel_proj.kernel[...])  # [4*16*16*3, d]
    taps = 4 * 16 * 16
    # Keras Conv3D Glorot-uniform: fan_in = taps * 3, fan_out = taps * d.
    np.testing.assert_allclose(kernel.var(), 2.0 / (taps * 3 + taps * d), rtol=0.03)
    assert np.abs(kernel).max() <= math.sqrt(6.0 / (taps * 3 + taps * d)) * (1 + 1e-6)
    np.testing.assert_array_equal(vt.voxel_proj.bias[...], 0.0)
    at = AudioTokenizer(d, 128, 128 * 200, init_scheme="official", rngs=nnx.Rngs(1))
    # Conv1D over one channel: fan_in = 128, fan_out = 128 * d.
    np.testing.assert_allclose(np.var(at.segment_proj.kernel[...]), 2.0 / (128 + 128 * d),
                               rtol=0.05)
    # Position tables: truncated normal of stddev d^-0.5 (cut at 2 stddev, as Keras').
    table = np.asarray(at.temporal_pos[...])
    np.testing.assert_allclose(table.std(), TRUNC * d ** -0.5, rtol=0.03)
    assert np.abs(table).max() <= 2 * d ** -0.5 * (1 + 1e-6)
    # AGG token: Glorot-normal of a [d] vector, std sqrt(1/d).
    agg = np.concatenate([np.asarray(VideoTokenizer(d, (4, 16, 16), (8, 64, 64),
                                                    init_scheme="official",
                                                    rngs=nnx.Rngs(s)).agg_token[...])
                          for s in range(4)])
    np.testing.assert_allclose(agg.std(), math.sqrt(1.0 / d), rtol=0.1)
    # Legacy (tiny): N(0, 0.02) tables.
    legacy = AudioTokenizer(d, 128, 128 * 200, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(np.std(legacy.temporal_pos[...]), 0.02, rtol=0.03)


def test_official_classifier_heads():
    d, c = 32, 50
    backbone = ModalityBackbone(AudioTokenizer(d, 16, 64, rngs=nnx.Rngs(0)),
                                _encoder(num_layers=0, d_model=d))
    audio = Classifier(backbone, c, head_init="official", modality="audio", rngs=nnx.Rngs(1))
    np.testing.assert_allclose(audio.head.bias[...], -math.log(c - 1), rtol=1e-6)
    kernel = np.asarray(audio.head.kernel[...])
    np.testing.assert_allclose(kernel.var(), 2.0 / (d + c), rtol=0.15)  # Glorot uniform
    assert np.abs(kernel).max() <= math.sqrt(6.0 / (d + c)) * (1 + 1e-6)
    video = Classifier(backbone, c, head_init="official", modality="video", rngs=nnx.Rngs(2))
    np.testing.assert_array_equal(video.head.bias[...], 0.0)
    np.testing.assert_allclose(np.std(video.head.kernel[...]), math.sqrt(2.0 / (d + c)),
                               rtol=0.15)  # Glorot normal
    zeros = Classifier(backbone, c, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(zeros.head.kernel[...], 0.0)


# ----------------------------------------------------------------------------- spline resize

@pytest.mark.parametrize("n,m", [(14, 20), (20, 14), (8, 1), (4, 2), (1200, 600)])
def test_spline_resize_reproduces_affine_tables(n, m):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6))
    x, q = np.arange(n) / n, np.arange(m) / m  # the official grid: row i of n at i / n
    table = jnp.asarray(a + b * x[:, None], jnp.float32)
    np.testing.assert_allclose(spline_resize_table(table, m), a + b * q[:, None],
                               atol=2e-5, rtol=1e-5)


def test_spline_resize_interpolates_rows_and_reads_row_zero_for_one_row():
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(7, 5)), jnp.float32)
    np.testing.assert_array_equal(interpolate_table(table, 7, "spline"), table)  # stored size
    np.testing.assert_allclose(spline_resize_table(table, 1), table[:1], atol=1e-6)
    # Doubling: every other target coordinate is a stored one, where the spline passes.
    np.testing.assert_allclose(spline_resize_table(table, 14)[::2], table, atol=1e-5)
    # Independent reference: scipy's RBF interpolator with the same r^3 kernel + affine term.
    interpolate = pytest.importorskip("scipy.interpolate")
    x, q = np.arange(7) / 7, np.arange(11) / 11
    ref = interpolate.RBFInterpolator(x[:, None], np.asarray(table, np.float64), kernel="cubic",
                                      degree=1)(q[:, None])
    np.testing.assert_allclose(spline_resize_table(table, 11), ref, atol=1e-5)
    assert spline_resize_matrix(1, 3).tolist() == [[1.0], [1.0], [1.0]]


def test_spline_positions_in_tokenizer_deflation_and_transfer():
    vt = VideoTokenizer(8, (4, 8, 8), (8, 32, 32), pos_interpolation="spline", rngs=nnx.Rngs(0))
    pos = vt.position_embedding((2, 6, 6))
    expected = (vt.temporal_pos[...][:, None, None] + spline_resize_table(vt.vertical_pos[...], 6)
                [None, :, None] + spline_resize_table(vt.horizontal_pos[...], 6)[None, None])
    np.testing.assert_allclose(pos, vt.pos_ln(expected.reshape(72, 8)), atol=1e-6)
    # Image deflation: the temporal table at length 1 is row 0.
    flat = deflate_video_tokenizer(vt)
    np.testing.assert_allclose(flat.temporal_pos[...], vt.temporal_pos[...][:1], atol=1e-6)
    # Loading a checkpoint into another input size resizes with the model's method.
    src = {"vertical_pos": np.asarray(vt.vertical_pos[...])}
    target = VideoTokenizer(8, (4, 8, 8), (8, 48, 48), rngs=nnx.Rngs(1))
    state = nnx.state(target, nnx.Param)
    new, report = transfer.copy_matching(state, src, pos_interpolation="spline")
    assert report["interpolated"] == ["vertical_pos"]
    np.testing.assert_allclose(new.to_pure_dict()["vertical_pos"],
                               spline_resize_table(vt.vertical_pos[...], 6), atol=1e-6)


# ----------------------------------------------------------------------------- dropout

def test_attention_probability_dropout_only_when_training():
    x = jax.random.normal(jax.random.key(0), (2, 9, 16))
    mask = jnp.arange(9)[None, :] < jnp.array([[9], [5]])
    enc = _encoder(dropout_rate=0.0, attention_dropout_rate=0.5)
    ref = _encoder(dropout_rate=0.0)  # same parameters (same seed), no attention dropout
    evaluated, _ = enc(x, mask, None)
    np.testing.assert_allclose(evaluated, ref(x, mask, None)[0], atol=1e-6)  # absent in eval
    np.testing.assert_allclose(ref(x, mask, jax.random.key(1))[0], evaluated, atol=1e-6)
    train1, _ = enc(x, mask, jax.random.key(1))
    train2, _ = enc(x, mask, jax.random.key(2))
    assert not np.allclose(train1, evaluated, atol=1e-3)
    assert not np.allclose(train1, train2, atol=1e-3)
    # The written-out attention of the training path is the fused one when nothing is dropped.
    almost = _encoder(dropout_rate=0.0, attention_dropout_rate=1e-9)
    np.testing.assert_allclose(almost(x, mask, jax.random.key(1))[0], evaluated, atol=1e-5)


def test_dropout_after_the_final_layernorm():
    x = jax.random.normal(jax.random.key(0), (4, 8, 16))
    enc = _encoder(num_layers=0, dropout_rate=0.5, final_dropout=True)
    evaluated, _ = enc(x, None, None)
    trained, _ = enc(x, None, jax.random.key(3))
    dropped = np.asarray(trained) == 0.0
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(np.asarray(trained)[~dropped], 2.0 * np.asarray(evaluated)[~dropped],
                               rtol=1e-5)
    plain = _encoder(num_layers=0, dropout_rate=0.5)
    np.testing.assert_array_equal(plain(x, None, jax.random.key(3))[0], evaluated)


def test_tiny_model_with_every_official_switch_trains_and_resizes():
    cfg = model_config("tiny")
    cfg.update(OFFICIAL)
    model = build_model(cfg, rngs=nnx.Rngs(0))
    video = jnp.zeros((2, 8, 48, 48, 3))  # positions resized by the spline
    rngs = {"dropout": jax.random.key(1), "droptoken": jax.random.key(2)}

    @nnx.jit(static_argnames="training")
    def pooled(model, video, rngs, training):
        return model.encode("video", video, training=training, rngs=rngs)["pooled"]
    a, b = pooled(model, video, rngs, True), pooled(model, video, None, False)
    assert a.shape == b.shape == (2, cfg.video.d_model) and not np.allclose(a, b)


# ----------------------------------------------------------------------------- frozen table

def test_frozen_word_table_needs_a_file():
    cfg = model_config("tiny")
    cfg.text.freeze_embedding = True
    with pytest.raises(ValueError, match=r"model\.text\.embedding_path"):
        build_model(cfg, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"model\.text\.embedding_path"):
        T5TextTokenizer(16, 32, 8, freeze_embedding=True, rngs=nnx.Rngs(0))
    config = config_files.load("pretrain:tiny,runlocal")
    config.model.text.freeze_embedding = True
    with pytest.raises(ConfigError, match=r"model\.text\.embedding_path"):
        validate(config, num_devices=1)


# ----------------------------------------------------------------------------- clipping

def test_backbone_gradient_clipping_leaves_the_classifier_alone():
    config = config_files.load("finetune:ucf101,mbs").optimizer
    config.momentum = 0.0
    tx, _ = build_optimizer(config, 10)
    grads = {"backbone": {"w": jnp.full((4,), 10.0)}, "head": {"w": jnp.full((3,), 10.0)}}
    updates, _ = tx.update(grads, tx.init(grads), grads)
    np.testing.assert_allclose(np.linalg.norm(updates["backbone"]["w"]), 0.75, rtol=1e-6)
    np.testing.assert_allclose(updates["head"]["w"], 10.0)
    config.grad_clip_scope = "all"
    tx, _ = build_optimizer(config, 10)
    updates, _ = tx.update(grads, tx.init(grads), grads)
    total = np.sqrt(sum(float(jnp.sum(u ** 2)) for u in jax.tree.leaves(updates)))
    np.testing.assert_allclose(total, 0.75, rtol=1e-6)
