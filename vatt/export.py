r"""A checkpoint -> one framework-neutral file of arrays: python -m vatt.export.

  python -m vatt.export --workdir=<run or converted dir> --output=<file>.safetensors|.npz \
      [--part=all|video|audio|text]

Writes the parameters and the other model state (batch-norm statistics, frozen word tables) of the
newest finished checkpoint of ``--workdir`` (vatt.train.checkpointing.load_model_tree: the flat
{"video_backbone/encoder/...": array} tree, paths as in the checkpoint) and copies the run's
config.json beside it as ``<output>.config.json``. Both may be local or gs:// (vatt.paths).

``--part``: ``all`` (default) the whole model (backbones, common-space heads; a fine-tuned
Classifier's backbone and head); ``video`` / ``audio`` / ``text`` one modality's backbone only:
``<m>_backbone/...`` of a modality-specific VATT, ``<m>_tokenizer/...`` plus ``shared_backbone/...`` (and ``<m>_post_proj/...``)
of the modality-agnostic VATT-MA, ``backbone/...`` of a Classifier fine-tuned on that modality.

Formats, both without pickle:
- ``.safetensors``: the safetensors layout (an 8-byte little-endian header length, a JSON header
  {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the little-endian bytes of
  every array, contiguous), written with NumPy alone, so no extra dependency; readable by the
  ``safetensors`` package (NumPy, PyTorch, JAX loaders) and by ``load`` here.
- ``.npz``: ``numpy.savez`` with one member per path; bfloat16 arrays are stored as their uint16
  bits and listed in the ``__metadata__`` member (a JSON string), which ``load`` undoes;
  plain ``numpy.load(path, allow_pickle=False)`` reads every other array as it is.

``load(<file>)`` returns the flat {path: numpy array} dict, equal bit for bit to what was exported.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from typing import Sequence

import ml_dtypes
import numpy as np

from vatt import paths

PARTS = ("all", "video", "audio", "text")
FORMATS = (".safetensors", ".npz")
METADATA = "__metadata__"
CONFIG_SUFFIX = ".config.json"

# NumPy dtype name <-> safetensors dtype tag.
_ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64",
              "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}
_NP_DTYPES = {tag: (ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name))
              for name, tag in _ST_DTYPES.items()}


class ExportError(ValueError):
    """An export that cannot be made; the message is one line with the fix."""


def select(tree: dict[str, np.ndarray], part: str, config: dict) -> dict[str, np.ndarray]:
    """The entries of `tree` (load_model_tree's flat dict) that make up `part` of the model
    described by `config` (the run's config.json as a dict)."""
    if part not in PARTS:
        raise ExportError(f"--part={part!r} is not known: use one of {', '.join(PARTS)}")
    if part == "all":
        return dict(tree)
    if any(k.startswith("backbone/") for k in tree):  # a fine-tuned / probed Classifier
        modality = (config.get("finetune") or {}).get("modality")
        if part != modality:
            raise ExportError(f"--part={part}: this checkpoint is a classifier over the "
                              f"{modality!r} backbone: use --part={modality} or --part=all")
        prefixes: tuple[str, ...] = ("backbone/",)
    elif any(k.startswith("shared_backbone/") for k in tree):  # VATT-MA
        # The modality's raw-to-token layers, the shared transformer, and the modality's
        # post-projection when the model has one (ma_medium).
        prefixes = (f"{part}_tokenizer/", "shared_backbone/", f"{part}_post_proj/")
    else:
        prefixes = (f"{part}_backbone/",)
    out = {k: v for k, v in tree.items() if k.startswith(prefixes)}
    if not out:
        raise ExportError(f"--part={part}: the checkpoint holds no {part} backbone (no path "
                          f"starts with {' or '.join(prefixes)}): use --part=all")
    return out


def _format(path: str) -> str:
    ext = next((e for e in FORMATS if path.endswith(e)), None)
    if ext is None:
        raise ExportError(f"--output={path}: name the file <name>.safetensors or <name>.npz")
    return ext


def _little_endian(a: np.ndarray) -> np.ndarray:
    a = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
    return a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a


def to_safetensors(tree: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding `tree` (names sorted, data contiguous)."""
    header: dict = {METADATA: dict(metadata or {})}
    chunks, offset = [], 0
    for name in sorted(tree):
        a = _little_endian(np.asarray(tree[name]))
        tag = _ST_DTYPES.get(a.dtype.name)
        if tag is None:
            raise ExportError(f"{name}: dtype {a.dtype} has no safetensors tag; use .npz")
        data = a.tobytes()
        header[name] = {"dtype": tag, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writer's
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def from_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tree, metadata) of the bytes of a safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    metadata = header.pop(METADATA, None) or {}
    body = memoryview(data)[8 + n :]
    tree = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_NP_DTYPES[entry["dtype"]]).newbyteorder("<")
        tree[name] = np.frombuffer(body[begin:end], dtype).reshape(entry["shape"]).copy()
    return tree, metadata


def to_npz(tree: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of an .npz holding `tree`; bfloat16 arrays as uint16 bits (see the module doc)."""
    meta = dict(metadata or {})
    bf16 = sorted(k for k, v in tree.items() if np.asarray(v).dtype == ml_dtypes.bfloat16)
    meta["bfloat16"] = json.dumps(bf16)
    arrays = {k: (np.asarray(v).view(np.uint16) if k in bf16 else np.asarray(v))
              for k, v in tree.items()}
    if METADATA in arrays:
        raise ExportError(f"a model path is named {METADATA!r}; use .safetensors")
    arrays[METADATA] = np.array(json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        tree = {k: z[k] for k in z.files}
    meta = json.loads(str(tree.pop(METADATA))) if METADATA in tree else {}
    for k in json.loads(meta.pop("bfloat16", "[]")):
        tree[k] = tree[k].view(ml_dtypes.bfloat16)
    return tree, meta


def load(path: str) -> dict[str, np.ndarray]:
    """The flat {path: array} dict of a file written by `export` (.safetensors or .npz)."""
    reader = from_npz if _format(path) == ".npz" else from_safetensors
    return reader(paths.read_bytes(paths.resolve(path)))[0]


def load_metadata(path: str) -> dict[str, str]:
    """The string metadata stored in an exported file (part, source checkpoint)."""
    reader = from_npz if _format(path) == ".npz" else from_safetensors
    return reader(paths.read_bytes(paths.resolve(path)))[1]


def export(workdir: str, output: str, part: str = "all") -> dict:
    """Writes `part` of the newest checkpoint of `workdir` to `output` and the run's config.json
    to `output`.config.json; returns {"output", "config", "arrays", "bytes", "state_dir"}."""
    from vatt.train.checkpointing import checkpoint_state_dir, load_model_tree

    fmt = _format(output)
    if part not in PARTS:
        raise ExportError(f"--part={part!r} is not known: use one of {', '.join(PARTS)}")
    config_path = paths.join(workdir, "config.json")
    if not paths.exists(config_path):
        raise ExportError(f"{config_path} does not exist: --workdir must be a training run or a "
                          "python -m vatt.convert output (both write config.json)")
    config_text = paths.read_text(config_path)
    state_dir = checkpoint_state_dir(workdir)
    tree = select(load_model_tree(state_dir), part, json.loads(config_text))
    metadata = {"format": "np", "vatt_part": part, "vatt_checkpoint": state_dir}
    data = (to_npz if fmt == ".npz" else to_safetensors)(tree, metadata)
    output = paths.resolve(output)
    paths.write_bytes(output, data)
    paths.write_text(output + CONFIG_SUFFIX, config_text)
    return {"output": output, "config": output + CONFIG_SUFFIX, "arrays": len(tree),
            "bytes": len(data), "state_dir": state_dir}


def _parse(argv: Sequence[str]) -> tuple[str, str, str]:
    args = {"--workdir": None, "--output": None, "--part": "all"}
    for a in argv:
        flag, sep, value = a.partition("=")
        if flag not in args or not sep:
            raise ExportError(f"unexpected argument {a!r}: use --workdir=, --output=, --part=")
        args[flag] = value
    if not (args["--workdir"] and args["--output"]):
        raise ExportError("usage: python -m vatt.export --workdir=<run or converted dir> "
                          "--output=<file>.safetensors|.npz [--part=all|video|audio|text]")
    return args["--workdir"], args["--output"], args["--part"]


def main(argv: Sequence[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        workdir, output, part = _parse(argv)
        problem = (paths.unsupported(workdir, "--workdir", "checkpoint")
                   or paths.unsupported(output, "--output", "epath"))
        if problem:
            raise ExportError(problem)
        result = export(workdir, output, part)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr, flush=True)
        return 2
    print(f"Exported {result['arrays']} arrays ({result['bytes'] / 2**20:.1f} MiB) of "
          f"{result['state_dir']} to {result['output']} (config: {result['config']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
