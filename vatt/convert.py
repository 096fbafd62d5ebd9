r"""Official VATT TF2 checkpoints -> this model: python -m vatt.convert.

  python -m vatt.convert --config=<config>[:<arg>] [--config.<key>=<value> ...] \
      --official_checkpoint=<dir>/ckpt-<N> --output=<dir>

The config describes the model exactly as for vatt.main (vatt.config_files, same overrides), so
small or modified official models convert too. A fine-tuning config (config.task == "finetune")
converts a fine-tuned classifier (official ``_base`` backbone + ``_ops/cls`` linear head, e.g.
vit_base_cls400) into a vatt.models.Classifier over ``config.finetune.modality``; any other config
converts a modality-specific pretraining checkpoint (tx_fac_bbs / mbs / lbs: ViT video, WaT audio,
T5 text, FAC heads) into the VATT model, and a config with model.backbone="shared" converts a
modality-agnostic one (ut_fac_medium: one shared transformer, FAC heads) into VATT-MA with the
official projections (model.<m>.pre_proj, model.<m>.post_proj_dim, model.text.pos_layernorm: the
ma_medium defaults). A fine-tuned ViT / WaT of a modality-agnostic model carries the same pre/post
projections (``_base/pre_proj``, ``_base/post_proj``): set model.<modality>.pre_proj=True and
model.<modality>.post_proj_dim=1024 in the fine-tuning config.

Reading: ``tf.train.load_checkpoint`` (TensorFlow's own reader, no pickle). Optimizer slots
(``<var>/.OPTIMIZER_SLOT/...``), the optimizer's state (``optimizer/...``), ``save_counter`` and the
object graph are skipped. Every other checkpoint variable must map to exactly one model variable
and every model variable must come from one checkpoint variable, with matching shapes; otherwise
the conversion stops with one error naming every unmapped, missing and mis-shaped variable.

Layout facts (official code, google-research/google-research vatt/): Keras Dense kernels are
[in, out] like nnx.Linear; the Conv3D voxel kernel [t, h, w, c, D] and the Conv1D waveform kernel
[P, 1, D] flatten to our [t*h*w*c, D] / [P, D] projections (voxels are flattened in (t, h, w, c)
order); attention q/k/v/o are plain [D, D] Dense layers; Keras LayerNorm gamma/beta -> scale/bias;
BatchNorm gamma/beta/moving_mean/moving_variance -> scale/bias/mean/var; the modality-agnostic
model's ``raw_to_embeddings/{video,audio}`` are the voxel / segment projections,
``raw_to_embeddings/text`` the word table, ``pre_proj/{video,audio}`` the tokenizers' ``pre_proj``,
``pre_proj/text`` the text tokenizer's ``embedding_proj``, ``post_proj/<m>`` our ``<m>_post_proj``,
``pos_embedding_lookup/<m>`` the tokenizers' position tables and LayerNorms; the T5 relative bias
table, stored under text layer 0, is the encoder's one shared table here; the frozen word table
is inside the pretraining checkpoint. The FAC video head's Dense layers before a BatchNorm have
no bias: the model config must say model.head.bias_before_bn=False (the bbs/mbs/lbs default).
The word table lands in the text tokenizer's embedding variable: a trainable nnx.Param unless the
config freezes a table loaded from model.text.embedding_path (model.text.freeze_embedding=True:
then a FrozenParam, overwritten here by the checkpoint's table), as for any vatt model.

Output: ``<output>/checkpoints/0/state`` (orbax, {params, rest} as a training run writes them)
and ``<output>/config.json``, so ``--config.init_from=<output>`` of a zero-shot, linear-probe or
fine-tuning config loads it unchanged, and ``load_model(<output>)`` returns (model, config).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from vatt import config_files
from vatt.models import Classifier, build_model, init_rngs

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
PRETRAIN_ROOT = "model/layer_with_weights-0/_base_layer/"
HEAD_ROOT = "model/layer_with_weights-0/_head_layer/_bridge_heads/0/"
FINETUNE_ROOT = "model/layer_with_weights-0/_base/"
CLS_ROOT = "model/layer_with_weights-0/_ops/cls/"
UNIFIED_ROOT = PRETRAIN_ROOT + "unified_backbone/unified_transformer/"
# Official Conv kernels whose trailing axes are flattened into our Linear kernels.
_RESHAPED = ("voxel_to_patch/kernel", "wave_to_patch/kernel", "raw_to_embeddings/video/kernel",
             "raw_to_embeddings/audio/kernel")


class ConversionError(ValueError):
    """The checkpoint does not fit the model of the config (the message names every variable)."""


def is_model_key(key: str) -> bool:
    """Whether a raw checkpoint key is a model variable (not an optimizer slot, the optimizer's
    own state, the save counter or the object graph)."""
    return (key.endswith(SUFFIX) and "/.OPTIMIZER_SLOT/" not in key
            and not key.startswith(("optimizer/", "save_counter/")))


def is_finetune(config: ml_collections.ConfigDict) -> bool:
    return config.get("task", "") == "finetune"


def _check_supported(config: ml_collections.ConfigDict) -> None:
    m = config.model
    if m.backbone not in ("modality_specific", "shared"):
        raise ConversionError(f"model.backbone={m.backbone!r}: choose 'modality_specific' "
                              "(tx_fac_*, vit/wat fine-tuned) or 'shared' (ut_fac_*)")
    if not is_finetune(config):
        if m.backbone == "shared":
            off = [f"model.{g}.pre_proj" for g in ("video", "audio", "text")
                   if not m[g].get("pre_proj", False)]
            off += [f"model.{g}.post_proj_dim" for g in ("video", "audio", "text")
                    if not m[g].get("post_proj_dim", 0)]
            off += [] if m.text.get("pos_layernorm", False) else ["model.text.pos_layernorm"]
            if off:
                raise ConversionError("the official modality-agnostic model has per-modality "
                                      "pre/post projections and LayerNorm'd text positions: set "
                                      + ", ".join(off) + " (pre_proj / pos_layernorm True, "
                                      "post_proj_dim 1024: the ma_medium defaults)")
        elif m.text.get("kind", "transformer") != "t5":
            raise ConversionError("the official modality-specific text tower is T5: set "
                                  "model.text.kind='t5'")
        if m.head.kind != "fac" or m.head.bn_placement != "official":
            raise ConversionError("the official heads are FAC with BN on the video side only: "
                                  "set model.head.kind='fac' and model.head.bn_placement='official'")


def _encoder(src: str, dst: str, num_layers: int) -> dict[str, str]:
    """The official pre-LN TransformerEncoder ``<src>tx/...`` -> our Encoder ``<dst>...``."""
    out = {}
    for i in range(num_layers):
        s, d = f"{src}tx/layers/{i}/", f"{dst}blocks/{i}/"
        for p, ours in (("gamma", "scale"), ("beta", "bias")):
            out[f"{s}layer_norm/{p}"] = f"{d}ln_attn/{ours}"
            out[f"{s}feed_forward/layer_norm/{p}"] = f"{d}ln_mlp/{ours}"
        for theirs, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
            for p in ("kernel", "bias"):
                out[f"{s}mha/{theirs}/{p}"] = f"{d}attn/{ours}/{p}"
        for theirs, ours in (("wi", "fc1"), ("wo", "fc2")):
            for p in ("kernel", "bias"):
                out[f"{s}feed_forward/mlp/{theirs}/{p}"] = f"{d}mlp/{ours}/{p}"
    for p, ours in (("gamma", "scale"), ("beta", "bias")):
        out[f"{src}tx/final_layer_norm/{p}"] = f"{dst}final_ln/{ours}"
    return out


def _transformer(src: str, dst: str, num_layers: int) -> dict[str, str]:
    """The ViT / WaT encoder, position LayerNorm and AGG vector under src -> ours under dst."""
    out = _encoder(src, f"{dst}encoder/", num_layers)
    for p, ours in (("gamma", "scale"), ("beta", "bias")):
        out[f"{src}pos_embedding_lookup/layernorm/{p}"] = f"{dst}tokenizer/pos_ln/{ours}"
    out[f"{src}agg_embedding"] = f"{dst}tokenizer/agg_token"
    return out


def _projections(src: str, dst: str, size: ml_collections.ConfigDict) -> dict[str, str]:
    """The ViT / WaT pre- and post-projections of a fine-tuned modality-agnostic model (official
    ``pre_projection`` / ``post_projection``), when the config has them."""
    out = {}
    for p in ("kernel", "bias"):
        if size.get("pre_proj", False):
            out[f"{src}pre_proj/{p}"] = f"{dst}tokenizer/pre_proj/{p}"
        if size.get("post_proj_dim", 0):
            out[f"{src}post_proj/{p}"] = f"{dst}post_proj/{p}"
    return out


def _video(src: str, dst: str, num_layers: int) -> dict[str, str]:
    out = _transformer(src, dst, num_layers)
    for p in ("kernel", "bias"):
        out[f"{src}voxel_to_patch/{p}"] = f"{dst}tokenizer/voxel_proj/{p}"
    for axis in ("temporal", "vertical", "horizontal"):
        out[f"{src}pos_embedding_lookup/{axis}_position_embeddings/embeddings"] = (
            f"{dst}tokenizer/{axis}_pos")
    return out


def _audio(src: str, dst: str, num_layers: int) -> dict[str, str]:
    out = _transformer(src, dst, num_layers)
    for p in ("kernel", "bias"):
        out[f"{src}wave_to_patch/{p}"] = f"{dst}tokenizer/segment_proj/{p}"
    out[f"{src}pos_embedding_lookup/temporal_position_embeddings/embeddings"] = (
        f"{dst}tokenizer/temporal_pos")
    return out


def _unified(src: str, num_layers: int) -> dict[str, str]:
    """The official UniversalVATT (``unified_backbone/unified_transformer/``) -> our shared
    layout: ``<m>_tokenizer``, ``shared_backbone``, ``<m>_post_proj``."""
    out = _encoder(src, "shared_backbone/", num_layers)
    # Official position table -> ours, per modality.
    tables = {"video": {f"{a}_position_embeddings": f"{a}_pos"
                        for a in ("temporal", "vertical", "horizontal")},
              "audio": {"temporal_position_embeddings": "temporal_pos"},
              "text": {"temporal_position_embeddings": "pos"}}
    raw = {"video": "voxel_proj", "audio": "segment_proj"}
    agg = {"video": "vid", "audio": "aud", "text": "txt"}
    for m, pos in tables.items():
        dst = f"{m}_tokenizer/"
        out[f"{src}{agg[m]}_agg_embedding"] = f"{dst}agg_token"
        for p in ("kernel", "bias"):
            if m in raw:
                out[f"{src}raw_to_embeddings/{m}/{p}"] = f"{dst}{raw[m]}/{p}"
            # Text: the word vectors' Dense(d, GELU) is our embedding projection (+ GELU).
            pre = "embedding_proj" if m == "text" else "pre_proj"
            out[f"{src}pre_proj/{m}/{p}"] = f"{dst}{pre}/{p}"
            out[f"{src}post_proj/{m}/{p}"] = f"{m}_post_proj/{p}"
        pe = f"{src}pos_embedding_lookup/{m}/"
        for theirs, ours in pos.items():
            out[f"{pe}{theirs}/embeddings"] = f"{dst}{ours}"
        for theirs, ours in (("gamma", "scale"), ("beta", "bias")):
            out[f"{pe}layernorm/{theirs}"] = f"{dst}pos_ln/{ours}"
    out[f"{src}raw_to_embeddings/text/embeddings"] = "text_tokenizer/embedding"
    return out


def _t5_text(src: str, dst: str, num_layers: int) -> dict[str, str]:
    lm = f"{src}base_lm/"
    out = {
        f"{src}agg_embedding": f"{dst}tokenizer/agg_token",
        f"{src}embedding/embeddings": f"{dst}tokenizer/embedding",
        f"{src}pre_proj/kernel": f"{dst}tokenizer/pre_proj/kernel",
        f"{lm}final_layer_norm/weight": f"{dst}encoder/final_ln/scale",
        # Computed once by layer 0 and handed to every later layer (official); one shared table.
        f"{lm}layers/0/self_attention/attention/relative_attention_bias/embeddings":
            f"{dst}encoder/relative_attention_bias",
    }
    for i in range(num_layers):
        s, d = f"{lm}layers/{i}/", f"{dst}encoder/blocks/{i}/"
        out[f"{s}self_attention/layer_norm/weight"] = f"{d}ln_attn/scale"
        for theirs, ours in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
            out[f"{s}self_attention/attention/{theirs}/kernel"] = f"{d}attn/{ours}/kernel"
        out[f"{s}feed_forward/layer_norm/gamma"] = f"{d}ln_mlp/scale"
        out[f"{s}feed_forward/layer_norm/beta"] = f"{d}ln_mlp/bias"
        out[f"{s}feed_forward/mlp/wi/kernel"] = f"{d}mlp/fc1/kernel"
        out[f"{s}feed_forward/mlp/wo/kernel"] = f"{d}mlp/fc2/kernel"
    return out


def _bn(src: str, dst: str) -> dict[str, str]:
    return {f"{src}/{theirs}": f"{dst}/{ours}" for theirs, ours in (
        ("gamma", "scale"), ("beta", "bias"), ("moving_mean", "mean"),
        ("moving_variance", "var"))}


def _fac_heads(src: str, dst: str) -> dict[str, str]:
    # Official FAC: vid_to_hid Dense -> hid_to_va (pre_bn -> ReLU -> Dense -> bn) = our video_va
    # (layer1: fc -> bn; layer2: ReLU -> fc -> bn); va_to_vat (ReLU -> Dense -> bn) =
    # video_va_to_vt; aud_to_va and txt_to_vat are plain Dense layers with a bias.
    out = {f"{src}vid_to_hid/kernel": f"{dst}video_va/layer1/fc/kernel",
           f"{src}hid_to_va/dense/kernel": f"{dst}video_va/layer2/fc/kernel",
           f"{src}va_to_vat/dense/kernel": f"{dst}video_va_to_vt/fc/kernel"}
    out.update(_bn(f"{src}hid_to_va/pre_bn", f"{dst}video_va/layer1/bn"))
    out.update(_bn(f"{src}hid_to_va/bn", f"{dst}video_va/layer2/bn"))
    out.update(_bn(f"{src}va_to_vat/bn", f"{dst}video_va_to_vt/bn"))
    for p in ("kernel", "bias"):
        out[f"{src}aud_to_va/{p}"] = f"{dst}audio_va/fc/{p}"
        out[f"{src}txt_to_vat/{p}"] = f"{dst}text_vt/fc/{p}"
    return out


def key_map(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{official checkpoint key without "/.ATTRIBUTES/VARIABLE_VALUE": our flat variable path}
    for the model `config` describes."""
    _check_supported(config)
    m = config.model
    if is_finetune(config):
        modality = config.finetune.modality
        make = {"video": _video, "audio": _audio}.get(modality)
        if make is None:
            raise ConversionError(f"config.finetune.modality={modality!r}: official fine-tuned "
                                  "checkpoints are video (ViT) or audio (WaT)")
        size = m.shared if m.backbone == "shared" else m[modality]
        out = make(FINETUNE_ROOT, "backbone/", size.num_layers)
        out.update(_projections(FINETUNE_ROOT, "backbone/", m[modality]))
        out.update({f"{CLS_ROOT}kernel": "head/kernel", f"{CLS_ROOT}bias": "head/bias"})
        return out
    if m.backbone == "shared":
        out = _unified(UNIFIED_ROOT, m.shared.num_layers)
        out.update(_fac_heads(HEAD_ROOT, "heads/"))
        return out
    out = _video(f"{PRETRAIN_ROOT}vid_backbone/_base/", "video_backbone/", m.video.num_layers)
    out.update(_audio(f"{PRETRAIN_ROOT}aud_backbone/_base/", "audio_backbone/",
                      m.audio.num_layers))
    out.update(_t5_text(f"{PRETRAIN_ROOT}txt_backbone/", "text_backbone/", m.text.num_layers))
    out.update(_fac_heads(HEAD_ROOT, "heads/"))
    return out


def build_target(config: ml_collections.ConfigDict, num_classes: int = 0,
                 rngs: nnx.Rngs | None = None) -> nnx.Module:
    """The model a checkpoint converts into: VATT, or for a fine-tuning config the Classifier
    over config.finetune.modality (num_classes: config.finetune.num_classes if set, else this)."""
    rngs = rngs or init_rngs(params=0, dropout=1, droptoken=2)
    model = build_model(config.model, rngs=rngs)
    if not is_finetune(config):
        return model
    ft = config.finetune
    return Classifier.from_model(model, ft.modality, int(ft.num_classes or num_classes),
                                 dropout_rate=ft.dropout_rate, use_droptoken=False,
                                 head_init=ft.get("head_init", "zeros"), rngs=rngs)


def model_shapes(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """{flat path: shape} of every variable of a (possibly abstract, nnx.eval_shape) model."""
    flat = nnx.to_flat_state(nnx.state(model))
    return {"/".join(str(p) for p in path): tuple(v.get_value().shape) for path, v in flat}


def plan(config: ml_collections.ConfigDict, checkpoint_shapes: dict[str, Sequence[int]],
         shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """{raw checkpoint key: our path} for every model variable of the checkpoint.

    checkpoint_shapes: {raw key: shape} of the whole checkpoint (slots etc. are skipped here);
    shapes: model_shapes of the target. Raises ConversionError naming every checkpoint variable
    nothing maps, every expected variable the checkpoint lacks, every model variable no
    checkpoint variable fills, and every shape that differs.
    """
    wanted = key_map(config)
    keys = {k[:-len(SUFFIX)]: k for k in checkpoint_shapes if is_model_key(k)}
    unmapped = sorted(set(keys) - set(wanted))
    missing = sorted(set(wanted) - set(keys))
    uncovered = sorted(set(shapes) - set(wanted.values()))
    unknown = sorted(p for p in set(wanted.values()) - set(shapes))
    bad_shape = []
    for key in sorted(set(keys) & set(wanted)):
        theirs, ours = tuple(checkpoint_shapes[keys[key]]), shapes.get(wanted[key])
        if ours is None:
            continue
        ok = (int(np.prod(theirs)) == int(np.prod(ours)) and theirs[-1] == ours[-1]
              if key.endswith(_RESHAPED) else theirs == ours)
        if not ok:
            bad_shape.append(f"{key} {list(theirs)} -> {wanted[key]} {list(ours)}")
    problems = []
    if unmapped:
        problems.append("checkpoint variables with no place in the model: " + ", ".join(unmapped))
    if missing:
        problems.append("variables the model needs but the checkpoint lacks: " + ", ".join(missing))
    if uncovered:
        hint = (" (a Linear before a BatchNorm has no bias in the official heads: set "
                "model.head.bias_before_bn=False)" if any("fc/bias" in p for p in uncovered)
                else "")
        problems.append("model variables no checkpoint variable fills" + hint + ": "
                        + ", ".join(uncovered))
    if unknown:
        problems.append("mapped paths the model does not have: " + ", ".join(unknown))
    if bad_shape:
        problems.append("shapes that differ (checkpoint -> model): " + "; ".join(bad_shape))
    if problems:
        raise ConversionError("the official checkpoint does not fit the model of this config "
                              "(check the config's sizes and overrides):\n  "
                              + "\n  ".join(problems))
    return {keys[k]: p for k, p in wanted.items()}


def fill(abstract: nnx.Module, source: dict[str, np.ndarray]) -> nnx.Module:
    """The model `abstract` (nnx.eval_shape) with every variable taken from the flat
    {path: array} `source`; ConversionError naming the variables it lacks or mis-shapes."""
    graphdef, state = nnx.split(abstract)
    filled, missing, bad = [], [], []
    for path, var in nnx.to_flat_state(state):
        key = "/".join(str(p) for p in path)
        want = var.get_value()
        value = source.get(key)
        if value is None:
            missing.append(key)
        elif tuple(value.shape) != tuple(want.shape):
            bad.append(f"{key} {list(value.shape)} (model: {list(want.shape)})")
        else:
            filled.append((path, var.replace(jnp.asarray(value, want.dtype))))
    if missing or bad:
        raise ConversionError("the weights do not fill the model: "
                              + "; ".join((["missing: " + ", ".join(missing)] if missing else [])
                                          + (["wrong shape: " + ", ".join(bad)] if bad else [])))
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def read_official(prefix: str) -> tuple[Any, dict[str, list[int]]]:
    """(reader, {raw key: shape}) of a TF checkpoint prefix (".../ckpt-N") or its folder."""
    import tensorflow as tf  # the data layer's dependency; only its checkpoint reader is used
    reader = tf.train.load_checkpoint(prefix)
    return reader, dict(reader.get_variable_to_shape_map())


def convert(config: ml_collections.ConfigDict, official_checkpoint: str, output: str,
            step: int = 0) -> dict[str, Any]:
    """Converts `official_checkpoint` into the model of `config` and writes `output` (see the
    module docstring). Returns {"model": the loaded model, "config": the written config,
    "variables": number of converted variables, "state_dir": the orbax state folder}."""
    from vatt import paths
    from vatt.train.checkpointing import Checkpointer, checkpoint_state_dir
    from vatt.train.state import split_model

    config = ml_collections.ConfigDict(config.to_dict())
    ckpt_dir = epath.Path(paths.resolve(output)) / "checkpoints"
    if ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConversionError(f"--output={output} already holds a checkpoint: choose a new folder")
    reader, ckpt_shapes = read_official(official_checkpoint)
    if is_finetune(config) and not config.finetune.num_classes:
        cls = f"{CLS_ROOT}bias{SUFFIX}"
        if cls in ckpt_shapes:
            config.finetune.num_classes = int(ckpt_shapes[cls][0])
    # Built abstractly (no random initialisation to compile and throw away), then filled.
    abstract = nnx.eval_shape(lambda: build_target(config))
    shapes = model_shapes(abstract)
    mapping = plan(config, ckpt_shapes, shapes)
    source = {path: np.asarray(reader.get_tensor(key)).reshape(shapes[path])
              for key, path in mapping.items()}
    model = fill(abstract, source)
    _, params, rest = split_model(model)
    ckpt = Checkpointer(output, async_save=False, max_to_keep=1)
    try:
        ckpt.save(step, {"params": params, "rest": rest}, {}, force=True)
    finally:
        ckpt.close()
    paths.write_text(paths.join(output, "config.json"), config.to_json_best_effort(indent=2))
    return {"model": model, "config": config, "variables": len(mapping),
            "state_dir": checkpoint_state_dir(output)}


def load_model(directory: str) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """(model, config) of a converted checkpoint (or any run directory with config.json whose
    checkpoint holds the whole model): VATT, or a Classifier for a fine-tuning config."""
    from vatt.train.checkpointing import load_model_tree
    from vatt.train.loop import read_config_json

    config = read_config_json(directory)
    return fill(nnx.eval_shape(lambda: build_target(config)), load_model_tree(directory)), config


def _parse(argv: Sequence[str]) -> tuple[str, list[str], str, str]:
    spec, overrides, official, output = None, [], None, None
    for a in argv:
        if a.startswith("--config="):
            spec = a.split("=", 1)[1]
        elif a.startswith("--config."):
            overrides.append(a)
        elif a.startswith("--official_checkpoint="):
            official = a.split("=", 1)[1]
        elif a.startswith("--output="):
            output = a.split("=", 1)[1]
        else:
            raise ValueError(f"unexpected argument {a!r}")
    if not (spec and official and output):
        raise ValueError("usage: python -m vatt.convert --config=<config>[:<arg>] "
                         "[--config.<key>=<value> ...] --official_checkpoint=<dir>/ckpt-<N> "
                         "--output=<dir>")
    return spec, overrides, official, output


def main(argv: Sequence[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        spec, overrides, official, output = _parse(argv)
        config = config_files.load(spec, overrides)
        result = convert(config, official, output)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr, flush=True)
        return 2
    print(f"Converted {result['variables']} variables of {official} into {result['state_dir']} "
          f"(config: {os.path.join(output, 'config.json')}); use "
          f"--config.init_from={output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
