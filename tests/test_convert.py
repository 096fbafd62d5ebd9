"""vatt.convert: official VATT TF2 checkpoints -> this model.

A tiny TF checkpoint whose keys are exactly the official tx_fac_bbs scheme (layer indices folded
to 2 layers, widths shrunk) is written with random values, converted through the command line's
code path with config overrides, and the converted model is compared with independent NumPy
implementations of the official forward passes (tests/official_reference.py); likewise the
modality-agnostic ut_fac_medium scheme (into VATT-MA) and a tiny fine-tuned ViT classifier
(vit_base_cls400 scheme; also with the pre/post projections of an MA fine-tuned ViT). Bad checkpoints are refused by name, the
output loads through init_from, and the real released key lists map onto the full-size models
(abstract shapes only).
"""

from __future__ import annotations

import json
import os
import re

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from official_reference import (np_fac_heads, np_t5_text, np_uvatt, np_vit_video,
                                np_wat_audio, t5_weights)
from subprocess_utils import REPO_ROOT
from vatt import config_files, convert
from vatt.models import transfer

OFFICIAL_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "official_vatt")
ROOT = "model/layer_with_weights-0/"
VID = f"{ROOT}_base_layer/vid_backbone/_base/"
AUD = f"{ROOT}_base_layer/aud_backbone/_base/"
TXT = f"{ROOT}_base_layer/txt_backbone/"
HEAD = f"{ROOT}_head_layer/_bridge_heads/0/"
UT = f"{ROOT}_base_layer/unified_backbone/unified_transformer/"
FT = f"{ROOT}_base/"
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"

# Tiny sizes (video and audio widths differ so that a mix-up cannot pass).
LAYERS, HEADS = 2, 2
DV, FV, DA, FA, DT, FT_MLP, E, VOCAB, VA, VT = 16, 32, 12, 24, 16, 24, 12, 40, 8, 6
PATCH, VIDEO = (2, 8, 8), (4, 16, 16)
GRID = tuple(s // p for s, p in zip(VIDEO, PATCH))
SEG, SAMPLES = 8, 64
OVERRIDES = [
    f"model.video.num_layers={LAYERS}", f"model.video.d_model={DV}", f"model.video.mlp_dim={FV}",
    f"model.video.num_heads={HEADS}", f"model.video.patch_size={PATCH}",
    f"model.video.input_size={VIDEO}",
    f"model.audio.num_layers={LAYERS}", f"model.audio.d_model={DA}", f"model.audio.mlp_dim={FA}",
    f"model.audio.num_heads={HEADS}", f"model.audio.patch_size={SEG}",
    f"model.audio.input_samples={SAMPLES}",
    f"model.text.num_layers={LAYERS}", f"model.text.d_model={DT}", f"model.text.mlp_dim={FT_MLP}",
    f"model.text.num_heads={HEADS}", f"model.text.vocab_size={VOCAB}",
    f"model.text.embedding_dim={E}", f"model.head.va_dim={VA}", f"model.head.vt_dim={VT}",
]
# Modality-agnostic (ut_fac): one shared transformer of width DM; post-projections to POST != DM;
# the text position table keeps its 16 rows (model.text.max_len).
DM, FM, POST, MA_LEN = 16, 32, 20, 16
MA_OVERRIDES = [
    f"model.shared.num_layers={LAYERS}", f"model.shared.d_model={DM}",
    f"model.shared.mlp_dim={FM}", f"model.shared.num_heads={HEADS}",
    *(f"model.{m}.d_model={DM}" for m in ("video", "audio", "text")),
    *(f"model.{m}.post_proj_dim={POST}" for m in ("video", "audio", "text")),
    f"model.video.patch_size={PATCH}", f"model.video.input_size={VIDEO}",
    f"model.audio.patch_size={SEG}", f"model.audio.input_samples={SAMPLES}",
    f"model.text.vocab_size={VOCAB}", f"model.text.embedding_dim={E}",
    f"model.head.va_dim={VA}", f"model.head.vt_dim={VT}",
]
# A fine-tuned ViT of a modality-agnostic model: pre_projection and post_projection.
MA_VIT_OVERRIDES = ["model.video.pre_proj=True", f"model.video.post_proj_dim={POST}"]


# ------------------------------------------------------------- the official key scheme, tiny

def _tower(prefix: str, d: int, f: int) -> dict[str, tuple[int, ...]]:
    out = {f"{prefix}agg_embedding": (d,)}
    for p in ("gamma", "beta"):
        out[f"{prefix}pos_embedding_lookup/layernorm/{p}"] = (d,)
    out.update(_tx(prefix, d, f))
    return out


def _tx(prefix: str, d: int, f: int) -> dict[str, tuple[int, ...]]:
    out = {f"{prefix}tx/final_layer_norm/{p}": (d,) for p in ("gamma", "beta")}
    for i in range(LAYERS):
        s = f"{prefix}tx/layers/{i}/"
        for p in ("gamma", "beta"):
            out[f"{s}layer_norm/{p}"] = out[f"{s}feed_forward/layer_norm/{p}"] = (d,)
        for m in "qkvo":
            out[f"{s}mha/{m}/kernel"], out[f"{s}mha/{m}/bias"] = (d, d), (d,)
        out[f"{s}feed_forward/mlp/wi/kernel"], out[f"{s}feed_forward/mlp/wi/bias"] = (d, f), (f,)
        out[f"{s}feed_forward/mlp/wo/kernel"], out[f"{s}feed_forward/mlp/wo/bias"] = (f, d), (d,)
    return out


def _vit(prefix: str) -> dict[str, tuple[int, ...]]:
    out = _tower(prefix, DV, FV)
    out[f"{prefix}voxel_to_patch/kernel"] = (*PATCH, 3, DV)
    out[f"{prefix}voxel_to_patch/bias"] = (DV,)
    for axis, n in zip(("temporal", "vertical", "horizontal"), GRID):
        out[f"{prefix}pos_embedding_lookup/{axis}_position_embeddings/embeddings"] = (n, DV)
    return out


def official_pretrain_shapes() -> dict[str, tuple[int, ...]]:
    """{key without SUFFIX: shape} of a tiny tx_fac_bbs-style checkpoint's model variables."""
    out = _vit(VID)
    out.update(_tower(AUD, DA, FA))
    out[f"{AUD}wave_to_patch/kernel"], out[f"{AUD}wave_to_patch/bias"] = (SEG, 1, DA), (DA,)
    out[f"{AUD}pos_embedding_lookup/temporal_position_embeddings/embeddings"] = (SAMPLES // SEG, DA)
    lm = f"{TXT}base_lm/"
    out.update({f"{TXT}agg_embedding": (E,), f"{TXT}embedding/embeddings": (VOCAB, E),
                f"{TXT}pre_proj/kernel": (E, DT), f"{lm}final_layer_norm/weight": (DT,),
                f"{lm}layers/0/self_attention/attention/relative_attention_bias/embeddings":
                    (32, HEADS)})
    for i in range(LAYERS):
        s = f"{lm}layers/{i}/"
        out[f"{s}self_attention/layer_norm/weight"] = (DT,)
        for m in "qkvo":
            out[f"{s}self_attention/attention/{m}/kernel"] = (DT, DT)
        out[f"{s}feed_forward/layer_norm/gamma"] = out[f"{s}feed_forward/layer_norm/beta"] = (DT,)
        out[f"{s}feed_forward/mlp/wi/kernel"] = (DT, FT_MLP)
        out[f"{s}feed_forward/mlp/wo/kernel"] = (FT_MLP, DT)
    out.update(_fac_heads(DV, DA, DT))
    return out


def _fac_heads(dv: int, da: int, dt: int) -> dict[str, tuple[int, ...]]:
    out = {f"{HEAD}vid_to_hid/kernel": (dv, VA), f"{HEAD}hid_to_va/dense/kernel": (VA, VA),
           f"{HEAD}va_to_vat/dense/kernel": (VA, VT), f"{HEAD}aud_to_va/kernel": (da, VA),
           f"{HEAD}aud_to_va/bias": (VA,), f"{HEAD}txt_to_vat/kernel": (dt, VT),
           f"{HEAD}txt_to_vat/bias": (VT,)}
    for bn, n in (("hid_to_va/pre_bn", VA), ("hid_to_va/bn", VA), ("va_to_vat/bn", VT)):
        for p in ("gamma", "beta", "moving_mean", "moving_variance"):
            out[f"{HEAD}{bn}/{p}"] = (n,)
    return out


def official_ma_shapes() -> dict[str, tuple[int, ...]]:
    """{key without SUFFIX: shape} of a tiny ut_fac_medium-style checkpoint's model variables."""
    out = _tx(UT, DM, FM)
    raw, pe = f"{UT}raw_to_embeddings/", f"{UT}pos_embedding_lookup/"
    out.update({f"{raw}video/kernel": (*PATCH, 3, DM), f"{raw}video/bias": (DM,),
                f"{raw}audio/kernel": (SEG, 1, DM), f"{raw}audio/bias": (DM,),
                f"{raw}text/embeddings": (VOCAB, E),
                f"{pe}audio/temporal_position_embeddings/embeddings": (SAMPLES // SEG, DM),
                f"{pe}text/temporal_position_embeddings/embeddings": (MA_LEN, DM)})
    for axis, n in zip(("temporal", "vertical", "horizontal"), GRID):
        out[f"{pe}video/{axis}_position_embeddings/embeddings"] = (n, DM)
    for m, agg in (("video", "vid"), ("audio", "aud"), ("text", "txt")):
        out[f"{UT}{agg}_agg_embedding"] = (DM,)
        out[f"{UT}pre_proj/{m}/kernel"] = (E if m == "text" else DM, DM)
        out[f"{UT}pre_proj/{m}/bias"] = (DM,)
        out[f"{UT}post_proj/{m}/kernel"], out[f"{UT}post_proj/{m}/bias"] = (DM, POST), (POST,)
        out[f"{pe}{m}/layernorm/gamma"] = out[f"{pe}{m}/layernorm/beta"] = (DM,)
    out.update(_fac_heads(POST, POST, POST))
    return out


def official_finetune_shapes(num_classes: int = 5,
                             projections: bool = False) -> dict[str, tuple[int, ...]]:
    """A fine-tuned ViT classifier; projections: that of a modality-agnostic model."""
    out = _vit(FT)
    d = DV
    if projections:
        out[f"{FT}pre_proj/kernel"], out[f"{FT}pre_proj/bias"] = (DV, DV), (DV,)
        out[f"{FT}post_proj/kernel"], out[f"{FT}post_proj/bias"] = (DV, POST), (POST,)
        d = POST
    out[f"{ROOT}_ops/cls/kernel"], out[f"{ROOT}_ops/cls/bias"] = (d, num_classes), (num_classes,)
    return out


def folded_official_keys(name: str) -> set[str]:
    """The model keys of a released key list with layers >= LAYERS dropped."""
    keys = set()
    with open(os.path.join(OFFICIAL_DIR, f"{name}.keys.txt"), encoding="utf-8") as f:
        for line in f:
            key = line.split("\t")[0]
            if line.startswith("#") or not convert.is_model_key(key):
                continue
            m = re.search(r"/layers/(\d+)/", key)
            if m is None or int(m.group(1)) < LAYERS:
                keys.add(key[:-len(SUFFIX)])
    return keys


needs_key_lists = pytest.mark.skipif(not os.path.isdir(OFFICIAL_DIR),
                                     reason="../shared/official_vatt is absent")


@needs_key_lists
def test_tiny_scheme_is_the_official_scheme():
    assert set(official_pretrain_shapes()) == folded_official_keys("tx_fac_bbs")
    assert set(official_finetune_shapes()) == folded_official_keys("vit_base_cls400")
    assert set(official_ma_shapes()) == folded_official_keys("ut_fac_medium")


# ------------------------------------------------------------- writing official checkpoints

def random_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        leaf = key.rsplit("/", 1)[-1]
        if leaf in ("gamma", "weight"):
            v = 1.0 + 0.2 * rng.normal(size=shape)
        elif leaf == "moving_variance":
            v = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("beta", "bias", "moving_mean"):
            v = 0.2 * rng.normal(size=shape)
        elif leaf == "kernel":
            v = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
        else:  # embeddings, AGG vectors, position tables
            v = rng.normal(0.0, 0.5, shape)
        out[key] = v.astype(np.float32)
    return out


def write_official(directory: str, values: dict[str, np.ndarray]) -> str:
    """A TF2 checkpoint (tf.train.Checkpoint of nested tf.Module objects whose attribute paths are
    the keys) holding `values` plus an optimizer variable; returns its ckpt-N prefix."""
    import tensorflow as tf
    nodes: dict[str, tf.Module] = {}

    def node(path: str) -> tf.Module:
        if path not in nodes:
            nodes[path] = tf.Module()
            parent, _, name = path.rpartition("/")
            if parent:
                setattr(node(parent), name, nodes[path])
        return nodes[path]

    for key, value in values.items():
        parent, _, name = key.rpartition("/")
        setattr(node(parent), name, tf.Variable(value))
    node("optimizer").iter = tf.Variable(np.int64(7))
    tops = {k: v for k, v in nodes.items() if "/" not in k}
    prefix = tf.train.Checkpoint(**tops).save(os.path.join(directory, "ckpt"))
    written = set(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
    assert written == {k + SUFFIX for k in values} | {
        "_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter" + SUFFIX, "optimizer/iter" + SUFFIX}
    return prefix


# ------------------------------------------------------------- conversion vs NumPy reference

def _write_and_convert(tmp_path_factory, name, shapes, seed, spec, overrides):
    """(values, checkpoint prefix, output dir): random values under the official keys `shapes`,
    written as a TF checkpoint and converted with `spec` and `overrides`."""
    values = random_values(shapes, seed=seed)
    prefix = write_official(str(tmp_path_factory.mktemp(f"official_{name}")), values)
    out = str(tmp_path_factory.mktemp(f"converted_{name}"))
    argv = [f"--config={spec}", *(f"--config.{o}" for o in overrides),
            f"--official_checkpoint={prefix}", f"--output={out}"]
    assert convert.main(argv) == 0
    return values, prefix, out


@pytest.fixture(scope="module")
def pretrain_ckpt(tmp_path_factory):
    return _write_and_convert(tmp_path_factory, "tx", official_pretrain_shapes(), 0,
                              "pretrain:bbs", OVERRIDES)


def test_pretrain_matches_official_forward(pretrain_ckpt):
    values, _, out = pretrain_ckpt
    model, config = convert.load_model(out)
    assert config.model.video.d_model == DV and not config.model.head.bias_before_bn
    rng = np.random.default_rng(1)
    video = rng.uniform(-1, 1, (2, *VIDEO, 3)).astype(np.float32)
    audio = rng.uniform(-1, 1, (2, SAMPLES)).astype(np.float32)
    ids = np.array([[3, 7, 1, 9, 12], [4, 39, 0, 0, 0]])
    got = nnx.jit(lambda m, v, a, t: m(video=v, audio=a, text=t))(
        model, jnp.asarray(video), jnp.asarray(audio), jnp.asarray(ids))
    w = {k: v.astype(np.float64) for k, v in values.items()}
    pooled = {"video": np_vit_video(video.astype(np.float64), w, VID, LAYERS, HEADS),
              "audio": np_wat_audio(audio.astype(np.float64), w, AUD, LAYERS, HEADS),
              "text": np_t5_text(ids, t5_weights(w, TXT, LAYERS))[0][:, 0]}
    want = np_fac_heads(pooled["video"], pooled["audio"], pooled["text"], w, HEAD)
    close = dict(rtol=1e-5, atol=1e-5)
    for m in ("video", "audio", "text"):
        np.testing.assert_allclose(got[m]["pooled"], pooled[m], **close)
    np.testing.assert_allclose(got["video"]["va"], want["video"]["va"], **close)
    np.testing.assert_allclose(got["video"]["vt"], want["video"]["vt"], **close)
    np.testing.assert_allclose(got["audio"]["va"], want["audio"]["va"], **close)
    np.testing.assert_allclose(got["text"]["vt"], want["text"]["vt"], **close)


def _zeros_model(task) -> nnx.Module:
    """task's model with zeros everywhere: built without compiling its random initialisers."""
    abstract = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
    return convert.fill(abstract, {p: np.zeros(s, np.float32)
                                   for p, s in convert.model_shapes(abstract).items()})


def test_output_loads_through_init_from(pretrain_ckpt):
    from vatt.tasks.evaluate import EvaluateTask
    from vatt.tasks.finetune import FinetuneTask
    from vatt.train.checkpointing import load_model_tree
    from vatt.train.state import split_model
    values, _, out = pretrain_ckpt
    source = load_model_tree(out)
    assert len(source) == len(values)  # one variable of ours per official one
    # Zero-shot: the whole model, nothing left at its initialisation.
    zs = config_files.load("zeroshot:synthetic,bbs", OVERRIDES + [f"init_from={out}"])
    task = EvaluateTask(zs)
    _, params, rest = split_model(_zeros_model(task))
    _, _, report = task.load_pretrained(params, rest, source)
    assert not report["kept"] and len(report["copied"]) == len(values)
    # Fine-tuning: the video backbone; only the new classifier head keeps its initialisation.
    ft = config_files.load("finetune:ucf101,bbs", OVERRIDES + [
        f"init_from={out}", f"model.video.input_size={VIDEO}", "finetune.num_classes=3"])
    task = FinetuneTask(ft)
    _, params, rest = split_model(_zeros_model(task))
    _, _, report = task.load_pretrained(params, rest, source)
    assert sorted(report["kept"]) == ["head/bias", "head/kernel"]
    assert "backbone/tokenizer/voxel_proj/kernel" in report["copied"]


@pytest.mark.parametrize("projections", [False, True], ids=["vit", "ma_vit"])
def test_finetuned_vit_classifier(tmp_path, projections):
    values = random_values(official_finetune_shapes(5, projections), seed=2)
    prefix = write_official(str(tmp_path / "official"), values)
    overrides = OVERRIDES + (MA_VIT_OVERRIDES if projections else [])
    config = config_files.load("finetune:synthetic,bbs", overrides)
    out = str(tmp_path / "converted")
    result = convert.convert(config, prefix, out)
    assert result["variables"] == len(values)
    model, config = convert.load_model(out)
    assert config.finetune.num_classes == 5  # read from the checkpoint's classifier
    video = np.random.default_rng(3).uniform(-1, 1, (2, *VIDEO, 3)).astype(np.float32)
    w = {k: v.astype(np.float64) for k, v in values.items()}
    pooled = np_vit_video(video.astype(np.float64), w, FT, LAYERS, HEADS)
    want = pooled @ w[f"{ROOT}_ops/cls/kernel"] + w[f"{ROOT}_ops/cls/bias"]
    logits = nnx.jit(lambda m, v: m(v))(model, jnp.asarray(video))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    # Fine-tuning further from it: the backbone loads (same paths), the head starts afresh.
    from vatt.tasks.finetune import FinetuneTask
    from vatt.train.checkpointing import load_model_tree
    from vatt.train.state import split_model
    ft = config_files.load("finetune:ucf101,bbs", overrides + [
        f"init_from={out}", f"model.video.input_size={VIDEO}", "finetune.num_classes=3"])
    task = FinetuneTask(ft)
    _, params, rest = split_model(_zeros_model(task))
    _, _, report = task.load_pretrained(params, rest, load_model_tree(out))
    assert sorted(report["kept"]) == ["head/bias", "head/kernel"]
    assert ("backbone/post_proj/kernel" in report["copied"]) == projections


# ------------------------------------------------------------- modality-agnostic (ut_fac)

@pytest.fixture(scope="module")
def ma_ckpt(tmp_path_factory):
    values, _, out = _write_and_convert(tmp_path_factory, "ma", official_ma_shapes(), 4,
                                        "pretrain:ma_medium", MA_OVERRIDES)
    return values, out


def test_modality_agnostic_matches_official_forward(ma_ckpt):
    values, out = ma_ckpt
    model, config = convert.load_model(out)
    assert config.model.backbone == "shared" and config.model.text.pos_layernorm
    rng = np.random.default_rng(5)
    video = rng.uniform(-1, 1, (2, *VIDEO, 3)).astype(np.float32)
    audio = rng.uniform(-1, 1, (2, SAMPLES)).astype(np.float32)
    ids = rng.integers(1, VOCAB, (2, MA_LEN))
    ids[1, 5:] = 0  # padding: masked keys
    got = nnx.jit(lambda m, v, a, t: m(video=v, audio=a, text=t))(
        model, jnp.asarray(video), jnp.asarray(audio), jnp.asarray(ids))
    w = {k: v.astype(np.float64) for k, v in values.items()}
    pooled = np_uvatt(video.astype(np.float64), audio.astype(np.float64), ids, w, UT, LAYERS,
                      HEADS)
    want = np_fac_heads(pooled["video"], pooled["audio"], pooled["text"], w, HEAD)
    close = dict(rtol=1e-5, atol=1e-5)
    for m in ("video", "audio", "text"):
        assert got[m]["pooled"].shape == (2, POST)
        np.testing.assert_allclose(got[m]["pooled"], pooled[m], **close)
    np.testing.assert_allclose(got["video"]["va"], want["video"]["va"], **close)
    np.testing.assert_allclose(got["video"]["vt"], want["video"]["vt"], **close)
    np.testing.assert_allclose(got["audio"]["va"], want["audio"]["va"], **close)
    np.testing.assert_allclose(got["text"]["vt"], want["text"]["vt"], **close)
    # A classifier over one modality of the converted MA model: its pre/post projections load.
    from vatt.models import Classifier
    from vatt.train.checkpointing import load_model_tree
    src = load_model_tree(out)
    assert len(src) == len(values)  # one variable of ours per official one
    clf = Classifier.from_model(model, "audio", 3, rngs=nnx.Rngs(0))
    _, report = transfer.copy_matching(nnx.state(clf), src, transfer.backbone_path_map("audio"))
    assert sorted(report["kept"]) == ["head/bias", "head/kernel"]
    assert {"backbone/tokenizer/pre_proj/kernel", "backbone/post_proj/kernel"} <= set(
        report["copied"])


def test_modality_agnostic_needs_the_official_projections():
    config = config_files.load("pretrain:ma_medium", ["model.audio.post_proj_dim=0",
                                                      "model.text.pos_layernorm=False"])
    with pytest.raises(convert.ConversionError,
                       match="model.audio.post_proj_dim, model.text.pos_layernorm"):
        convert.key_map(config)


# ------------------------------------------------------------- refusals

def _tiny_config() -> ml_collections.ConfigDict:
    return config_files.load("pretrain:bbs", OVERRIDES)


def _abstract_shapes(config) -> dict[str, tuple[int, ...]]:
    return convert.model_shapes(nnx.eval_shape(lambda: convert.build_target(config)))


def test_extra_or_missing_variable_is_refused_by_name(pretrain_ckpt, tmp_path):
    config = _tiny_config()
    shapes = _abstract_shapes(config)
    full = {k + SUFFIX: s for k, s in official_pretrain_shapes().items()}
    assert len(convert.plan(config, full, shapes)) == len(full)
    extra = f"{VID}mask_embedding"
    with pytest.raises(convert.ConversionError, match=re.escape(extra)):
        convert.plan(config, {**full, extra + SUFFIX: [DV]}, shapes)
    gone = f"{TXT}base_lm/layers/1/feed_forward/mlp/wo/kernel"
    with pytest.raises(convert.ConversionError, match=re.escape(gone)):
        convert.plan(config, {k: s for k, s in full.items() if k != gone + SUFFIX}, shapes)
    # End to end: a written checkpoint with one variable more is refused before anything is
    # written, and the CLI says why in one message.
    values, _, _ = pretrain_ckpt
    prefix = write_official(str(tmp_path / "official"), {**values, extra: np.zeros(DV, np.float32)})
    out = str(tmp_path / "converted")
    with pytest.raises(convert.ConversionError, match=re.escape(extra)):
        convert.convert(config, prefix, out)
    assert not os.path.exists(os.path.join(out, "config.json"))
    # An output folder that already holds a checkpoint is never overwritten.
    with pytest.raises(convert.ConversionError, match="already holds a checkpoint"):
        convert.convert(config, pretrain_ckpt[1], pretrain_ckpt[2])
    # A model with biases before its BatchNorms (tiny's setting) is refused with the fix.
    config.model.head.bias_before_bn = True
    with pytest.raises(convert.ConversionError, match="bias_before_bn=False"):
        convert.plan(config, full, _abstract_shapes(config))


def test_skips_optimizer_state_and_mismatched_shapes():
    config = _tiny_config()
    shapes = _abstract_shapes(config)
    full = {k + SUFFIX: s for k, s in official_pretrain_shapes().items()}
    key = f"{VID}tx/layers/0/mha/q/kernel"
    slots = {f"{key}/.OPTIMIZER_SLOT/optimizer/{s}{SUFFIX}": [DV, DV] for s in "mv"}
    slots.update({"optimizer/iter" + SUFFIX: [], "save_counter" + SUFFIX: [],
                  "_CHECKPOINTABLE_OBJECT_GRAPH": []})
    assert len(convert.plan(config, {**full, **slots}, shapes)) == len(full)
    with pytest.raises(convert.ConversionError, match=re.escape(key)):
        convert.plan(config, {**full, key + SUFFIX: [DV, DV + 1]}, shapes)


# ------------------------------------------------------------- the released key lists

def _released(name: str) -> dict[str, list[int]]:
    out = {}
    with open(os.path.join(OFFICIAL_DIR, f"{name}.keys.txt"), encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                key, shape = line.split("\t")[:2]
                out[key] = [int(s) for s in shape.strip("[]").split(",") if s.strip()]
    return out


@needs_key_lists
@pytest.mark.parametrize("name,spec", [("tx_fac_bbs", "pretrain:bbs"),
                                       ("ut_fac_medium", "pretrain:ma_medium"),
                                       ("vit_base_cls400", "finetune:ucf101,bbs")])
def test_released_key_lists_map_onto_full_size_models(name, spec):
    overrides = ["model.video.input_size=(32,224,224)", "finetune.num_classes=400"]
    config = config_files.load(spec, overrides if spec.startswith("finetune") else [])
    keys = _released(name)
    shapes = _abstract_shapes(config)
    mapping = convert.plan(config, keys, shapes)  # raises on any unmapped / missing / shape
    assert len(mapping) == sum(convert.is_model_key(k) for k in keys)
    assert sorted(mapping.values()) == sorted(shapes)  # each of ours exactly once


def test_transfer_backbone_map_reads_classifier_checkpoints():
    mapping = transfer.backbone_path_map("video")
    assert mapping("backbone/encoder/final_ln/scale")[-1] == "backbone/encoder/final_ln/scale"
    assert mapping("head/kernel") == []


# ------------------------------------------------------------- the user's round trip

# The synthetic world at the tiny converted model's input shapes: 4 frames of 16 px at 10 fps
# (0.4 s) and 64 audio samples (160 Hz); its 39-word vocabulary fits the tiny table (VOCAB).
# 16 held-out clips: with random weights no similarity is then within 1e-4 of a ground truth,
# so float32 rounding cannot reorder the ranks that the test compares exactly.
ROUND_TRIP_DATA = ["data.num_frames=4", "data.frame_size=16", "data.audio_rate=160"]
ZEROSHOT_CLIPS = ["evals.zeroshot_synthetic.num_clips=16"]
FINETUNE_2_STEPS = ["total_steps=2", "log_every_steps=1", "checkpoint_every_steps=0",
                    "optimizer.warmup_steps=1"]


def _official_t2v(values: dict, world, num_clips: int) -> np.ndarray:
    """Text->video similarity [N, N] of the held-out clips by the NumPy official forward pass
    (ViT video tower, T5 text tower on the first caption, FAC heads), L2-normalised."""
    w = {k: v.astype(np.float64) for k, v in values.items()}
    videos, texts = [], []
    for batch in world.eval_batches(num_clips, 16):
        keep = batch["valid"] > 0
        pooled_v = np_vit_video(batch["video"][keep].astype(np.float64), w, VID, LAYERS, HEADS)
        pooled_t = np_t5_text(batch["text"][keep][:, 0], t5_weights(w, TXT, LAYERS))[0][:, 0]
        heads = np_fac_heads(pooled_v, np.zeros((len(pooled_v), DA)), pooled_t, w, HEAD)
        videos.append(heads["video"]["vt"])
        texts.append(heads["text"]["vt"])
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    return norm(np.concatenate(texts)) @ norm(np.concatenate(videos)).T


def test_round_trip_convert_zeroshot_finetune_export_reload(pretrain_ckpt, tmp_path):
    """What a user does with a released checkpoint: convert it (the fixture), evaluate zero-shot
    retrieval, fine-tune 2 steps, export, and start again from the exported files."""
    from vatt import experiment, export, weight_files
    from vatt.data import synthetic
    from vatt.evaluation.retrieval import ground_truth_ranks, retrieval_metrics
    from vatt.train.checkpointing import load_model_tree

    values, _, converted = pretrain_ckpt

    # Zero-shot MSR-VTT-style retrieval (the zero-shot config's evaluator) on the synthetic
    # held-out clips: every query's rank equals the official forward pass's.
    def zeroshot(init_from: str, name: str) -> tuple[dict, list[int]]:
        cfg = config_files.load("zeroshot:synthetic,bbs,runlocal", OVERRIDES + ROUND_TRIP_DATA
                                + ZEROSHOT_CLIPS + [f"init_from={init_from}"])
        metrics = experiment.run(cfg, str(tmp_path / name))
        with open(tmp_path / name / "zeroshot" / "synthetic_step0.json") as f:
            return metrics, json.load(f)["t2v_ranks"]

    metrics, ranks = zeroshot(converted, "zeroshot")
    cfg = config_files.load("zeroshot:synthetic,bbs,runlocal",
                            OVERRIDES + ROUND_TRIP_DATA + ZEROSHOT_CLIPS)
    n = cfg.evals.zeroshot_synthetic.num_clips
    sim = _official_t2v(values, synthetic.world_from_config(cfg.data), n)
    # The ranks are exact only if no similarity is within float32 rounding of a ground truth.
    for s in (sim, sim.T):
        gap = np.abs(s - np.diag(s)[:, None]) + np.eye(n)
        assert gap.min() > 1e-4, "a near-tie makes the ranks fragile: evaluate other clips"
    assert metrics["zeroshot/num_clips"] == n
    np.testing.assert_array_equal(ranks, ground_truth_ranks(sim))
    assert len(set(ranks)) > 3  # random weights: ranks spread, not all 1 or all n
    for k, v in retrieval_metrics(sim).items():
        assert metrics[f"zeroshot/t2v/{k}"] == v, k
    for k, v in retrieval_metrics(sim.T).items():
        assert metrics[f"zeroshot/v2t/{k}"] == v, k

    # Fine-tune the converted video backbone for 2 steps.
    def finetune(init_from: str, name: str) -> tuple[str, list[float]]:
        cfg = config_files.load("finetune:synthetic,bbs,runlocal",
                                OVERRIDES + ROUND_TRIP_DATA + FINETUNE_2_STEPS
                                + [f"init_from={init_from}"])
        experiment.run(cfg, str(tmp_path / name))
        with open(tmp_path / name / "metrics.jsonl") as f:
            losses = [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]
        return str(tmp_path / name), losses

    tuned, losses = finetune(converted, "finetune")
    assert len(losses) == 2 and all(np.isfinite(losses))
    trees = {tuned: load_model_tree(tuned), converted: load_model_tree(converted)}
    tuned_tree = trees[tuned]
    start = trees[converted]["video_backbone/tokenizer/voxel_proj/kernel"]
    moved = tuned_tree["backbone/tokenizer/voxel_proj/kernel"]
    assert not np.array_equal(moved, start)  # trained ...
    np.testing.assert_allclose(moved, start, atol=0.05)  # ... from the converted weights

    # Export: the fine-tuned classifier whole and its backbone, and the converted model whole and
    # its video backbone; every file reads back bit for bit.
    files = {}
    for source, name, part in [(tuned, "tuned", "all"), (tuned, "tuned_video", "video"),
                               (converted, "converted", "all"),
                               (converted, "converted_video", "video")]:
        files[name] = str(tmp_path / f"{name}.safetensors")
        assert export.main([f"--workdir={source}", f"--output={files[name]}",
                            f"--part={part}"]) == 0
        want = export.select(trees[source], part,
                             json.loads((tmp_path / f"{name}.safetensors.config.json")
                                        .read_text()))
        got = weight_files.load(files[name])
        assert sorted(got) == sorted(want) and all(
            got[k].dtype == want[k].dtype and got[k].tobytes() == np.asarray(want[k]).tobytes()
            for k in want), name
    assert sorted(weight_files.load(files["tuned_video"])) == sorted(
        k for k in tuned_tree if k.startswith("backbone/"))

    # Reload: the exported files are init_from like the checkpoints they came from, and give
    # the same zero-shot ranks and the same fine-tuning losses bit for bit.
    again, ranks_again = zeroshot(files["converted"], "zeroshot_from_file")
    assert again == metrics and ranks_again == ranks
    assert finetune(files["converted_video"], "finetune_from_file")[1] == losses
