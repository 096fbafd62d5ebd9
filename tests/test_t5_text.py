"""The T5 text tower (vatt.models.t5_text) against an independent NumPy float64 implementation of
the official VATT T5 text forward pass, at tiny sizes, with the same random weights in both."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from official_reference import np_t5_text
from vatt.models import build_model, model_config
from vatt.models.t5_text import (T5Encoder, T5TextBackbone, T5TextTokenizer,
                                 relative_position_bucket)

VOCAB, E, D, MLP_DIM, HEADS, LAYERS = 40, 12, 16, 24, 2, 2


# ---------------------------------------------------------------- relative-position buckets

def test_relative_position_bucket_hand_worked():
    # Bidirectional, 32 buckets, max distance 64: 16 buckets per direction, distances 0..7 exact,
    # 8..63 log-spaced: bucket = 8 + floor(8 * ln(n / 8) / ln(8)), capped at 15; keys after the
    # query (key - query > 0) add 16. By hand: n=11: 8*ln(1.375)/ln 8 = 1.22 -> 9; n=13: 1.87 -> 9;
    # n=14: 2.15 -> 10; n=16: 8/3 -> 10; n=32: 16/3 -> 13; n=45: 6.65 -> 14; n=63: 7.94 -> 15.
    rel = [0, -1, 1, -7, 7, -8, 8, -11, -13, -14, -16, 16, -32, -45, -63, -64, -100, 64, 100]
    want = [0, 1, 17, 7, 23, 8, 24, 9, 9, 10, 10, 26, 13, 14, 15, 15, 15, 31, 31]
    got = relative_position_bucket(np.array(rel), bidirectional=True, num_buckets=32,
                                   max_distance=64)
    np.testing.assert_array_equal(got, want)
    # Unidirectional (a decoder's; unused by the encoder): keys after the query all fall in 0;
    # 32 buckets, 16 exact: n=32: 16 + floor(16 * ln 2 / ln 4) = 24.
    got = relative_position_bucket(np.array([5, 0, -5, -15, -16, -32, -200]), bidirectional=False)
    np.testing.assert_array_equal(got, [0, 0, 5, 15, 16, 24, 31])


# ---------------------------------------------------------------- NumPy reference
# (tests/official_reference.py: np_t5_text and the other official forward passes)

def random_official_weights(seed: int = 0) -> dict:
    """Random weights in the official layout (Keras kernels [in, out]; bias table [buckets, H])."""
    rng = np.random.default_rng(seed)
    dense = lambda i, o: rng.normal(0.0, 1.0 / np.sqrt(i), (i, o))
    norm = lambda: 1.0 + 0.2 * rng.normal(size=D)
    return {
        "embedding": rng.normal(0.0, 1.0, (VOCAB, E)),
        "agg_embedding": rng.normal(0.0, 1.0, E),
        "pre_proj": dense(E, D),
        "relative_attention_bias": rng.normal(0.0, 1.0, (32, HEADS)),
        "final_layer_norm/weight": norm(),
        "layers": [{
            "self_attention/layer_norm/weight": norm(),
            "self_attention/attention/q": dense(D, D),
            "self_attention/attention/k": dense(D, D),
            "self_attention/attention/v": dense(D, D),
            "self_attention/attention/o": dense(D, D),
            "feed_forward/layer_norm/gamma": norm(),
            "feed_forward/layer_norm/beta": 0.2 * rng.normal(size=D),
            "feed_forward/mlp/wi": dense(D, MLP_DIM),
            "feed_forward/mlp/wo": dense(MLP_DIM, D),
        } for _ in range(LAYERS)],
    }


def load_official(backbone: T5TextBackbone, w: dict) -> None:
    """Copies official-layout weights into our module (what a checkpoint converter would do)."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    tok, enc = backbone.tokenizer, backbone.encoder
    tok.embedding[...] = f32(w["embedding"])
    tok.agg_token[...] = f32(w["agg_embedding"])
    tok.pre_proj.kernel[...] = f32(w["pre_proj"])
    enc.relative_attention_bias[...] = f32(w["relative_attention_bias"])
    enc.final_ln.scale[...] = f32(w["final_layer_norm/weight"])
    for block, lw in zip(enc.blocks, w["layers"], strict=True):
        block.ln_attn.scale[...] = f32(lw["self_attention/layer_norm/weight"])
        for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
            getattr(block.attn, ours).kernel[...] = f32(lw[f"self_attention/attention/{theirs}"])
        block.ln_mlp.scale[...] = f32(lw["feed_forward/layer_norm/gamma"])
        block.ln_mlp.bias[...] = f32(lw["feed_forward/layer_norm/beta"])
        block.mlp.fc1.kernel[...] = f32(lw["feed_forward/mlp/wi"])
        block.mlp.fc2.kernel[...] = f32(lw["feed_forward/mlp/wo"])


def _size(tree) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


@nnx.jit
def run(backbone: T5TextBackbone, ids: jax.Array) -> dict:
    """One compiled program per input shape: the encoder's full output and the backbone's."""
    tokens, mask = backbone.tokenizer(ids)
    hidden, layers = backbone.encoder(tokens, mask, return_all=True)
    return {"hidden": hidden, "hidden_layers": layers, **backbone(ids, return_layers=True)}


def make_backbone(dropout_rate: float = 0.0) -> T5TextBackbone:
    rngs = nnx.Rngs(0)
    return T5TextBackbone(
        T5TextTokenizer(D, VOCAB, E, rngs=rngs),
        T5Encoder(LAYERS, D, MLP_DIM, HEADS, dropout_rate=dropout_rate, rngs=rngs))


def test_matches_numpy_reference():
    w = random_official_weights()
    backbone = make_backbone()
    load_official(backbone, w)
    # Every parameter of ours came from an official variable and vice versa: no extra bias,
    # norm offset or position table anywhere.
    assert _size(nnx.state(backbone, nnx.Param)) == _size(w)
    ids = np.array([[3, 7, 1, 9, 12, 5, 8],     # no padding
                    [4, 4, 30, 0, 0, 0, 0],     # 3 words
                    [39, 0, 0, 0, 0, 0, 0]])    # 1 word
    want, want_layers = np_t5_text(ids, w)
    out = run(backbone, jnp.asarray(ids))
    np.testing.assert_allclose(out["hidden"], want, rtol=1e-5, atol=1e-5)
    for g, r in zip(out["hidden_layers"], want_layers, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["pooled"], want[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["layers"][-1], want_layers[-1][:, 0], rtol=1e-5, atol=1e-5)


def test_padding_does_not_change_agg_output():
    backbone = make_backbone()
    load_official(backbone, random_official_weights(1))
    words = np.array([[5, 6, 7], [9, 2, 11], [5, 6, 7]])
    base = run(backbone, jnp.asarray(words))["pooled"]
    # The same captions followed by 13 pads, and one (row 2) as 3 words + 13 pads: one shape.
    # Equal up to float32 rounding: the two shapes reduce in another order (measured 1.1e-6
    # apart on a value of 0.56 with XLA's CPU backend at optimisation level 0).
    padded = jnp.asarray(np.concatenate([words, np.zeros((3, 13), int)], axis=1))
    np.testing.assert_allclose(run(backbone, padded)["pooled"], base, rtol=1e-5, atol=1e-6)
    # Padded keys get exactly zero attention weight in every layer: even a huge vector in the
    # word table's pad row (id 0) moves nothing.
    backbone.tokenizer.embedding[...] = backbone.tokenizer.embedding[...].at[0].set(100.0)
    np.testing.assert_allclose(run(backbone, padded)["pooled"], base, rtol=1e-5, atol=1e-6)


def test_training_dropout_and_gradients():
    backbone = make_backbone(dropout_rate=0.1)
    ids = jnp.asarray(np.array([[3, 7, 1, 0, 0], [4, 9, 0, 0, 0]]))

    @nnx.jit
    def step(backbone, rngs):
        def loss(b, rngs):
            pooled = b(ids, training=True, rngs=rngs)["pooled"]
            return pooled.sum(), pooled
        (value, train), grads = nnx.value_and_grad(loss, has_aux=True)(backbone, rngs)
        return value, grads, train, backbone(ids)["pooled"]

    # An "rbg" key: XLA's own bit generator compiles far faster on CPU than threefry.
    loss, grads, train, evaluation = step(backbone, nnx.Rngs(dropout=jax.random.key(3, impl="rbg")))
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # The shared bias table and the AGG vector are trained (through every layer).
    for g in (grads["encoder"]["relative_attention_bias"], grads["tokenizer"]["agg_token"]):
        assert float(jnp.abs(g[...]).max()) > 0
    # Dropout acts in training only; evaluation is deterministic.
    assert not np.allclose(train, evaluation)
    np.testing.assert_array_equal(run(backbone, ids)["pooled"], evaluation)


def test_text_kind_t5_in_vatt():
    cfg = model_config("tiny")
    assert cfg.text.kind == "transformer"
    cfg.text.kind = "t5"
    model = nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))  # shapes only
    assert isinstance(model.text_backbone, T5TextBackbone)
    text = jax.ShapeDtypeStruct((2, 3, cfg.text.max_len), jnp.int32)
    out = nnx.eval_shape(lambda m, t: m(text=t, return_layers=True), model, text)["text"]
    assert out["pooled"].shape == (2, 3, cfg.text.d_model)
    assert out["vt"].shape == (2, 3, cfg.head.vt_dim)
    assert len(out["layers"]) == cfg.text.num_layers


def test_config_kinds():
    for variant in ("bbs", "mbs", "lbs"):
        cfg = model_config(variant)
        assert cfg.text.kind == "t5"
        assert (cfg.text.num_relative_buckets, cfg.text.max_relative_distance) == (32, 64)
    for variant in ("tiny", "ma_tiny", "ma_medium"):
        assert model_config(variant).text.kind == "transformer"
    cfg = model_config("ma_tiny")
    cfg.text.kind = "t5"
    with pytest.raises(ValueError, match="modality_specific"):
        build_model(cfg, rngs=nnx.Rngs(0))
    cfg = model_config("tiny")
    cfg.text.kind = "bert"
    with pytest.raises(ValueError, match="model.text.kind"):
        build_model(cfg, rngs=nnx.Rngs(0))
