"""Framework-neutral files of named arrays, written and read without pickle.

A model's flat {"video_backbone/encoder/...": array} tree (vatt.train.checkpointing.load_model_tree)
goes to one file that other frameworks read, and comes back bit for bit:

- ``.safetensors``: the safetensors layout (an 8-byte little-endian header length, a JSON header
  {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the little-endian bytes of
  every array, contiguous), written with NumPy alone, so no extra dependency; readable by the
  ``safetensors`` package (NumPy, PyTorch, JAX loaders) and by ``load`` here.
- ``.npz``: ``numpy.savez`` with one member per path; bfloat16 arrays are stored as their uint16
  bits and listed in the ``__metadata__`` member (a JSON string), which ``load`` undoes;
  plain ``numpy.load(path, allow_pickle=False)`` reads every other array as it is.

``python -m vatt.export`` writes them; ``load`` reads them back, and so does every ``init_from``
(vatt.train.checkpointing.load_model_tree), so an exported file is a warm start like a checkpoint.
Layer 0: NumPy and vatt.paths only (files may be local or gs://).
"""

from __future__ import annotations

import io
import json
import struct

import ml_dtypes
import numpy as np

from vatt import paths

FORMATS = (".safetensors", ".npz")
METADATA = "__metadata__"


class WeightFileError(ValueError):
    """A tree that cannot be written in the requested format, or a file name of no known
    format; the message is one line with the fix."""


def is_weight_file(path: str) -> bool:
    """True when `path` names a file of one of FORMATS (by its suffix)."""
    return str(path).endswith(FORMATS)


def file_format(path: str, what: str = "") -> str:
    """The suffix in FORMATS that `path` ends with, or WeightFileError naming `what` (e.g.
    "--output") when given."""
    ext = next((e for e in FORMATS if str(path).endswith(e)), None)
    if ext is None:
        name = f"{what}={path}" if what else str(path)
        raise WeightFileError(f"{name}: name the file <name>.safetensors or <name>.npz")
    return ext


def encode(tree: dict[str, np.ndarray], path: str, metadata: dict[str, str] | None = None
           ) -> bytes:
    """The bytes of `tree` in the format that `path`'s suffix names."""
    writer = to_npz if file_format(path) == ".npz" else to_safetensors
    return writer(tree, metadata)


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    reader = from_npz if file_format(path) == ".npz" else from_safetensors
    return reader(paths.read_bytes(paths.resolve(path)))


# NumPy dtype name <-> safetensors dtype tag.
_ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64",
              "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}
_NP_DTYPES = {tag: (ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name))
              for name, tag in _ST_DTYPES.items()}


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
            raise WeightFileError(f"{name}: dtype {a.dtype} has no safetensors tag; use .npz")
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
        raise WeightFileError(f"a model path is named {METADATA!r}; use .safetensors")
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
    return _read(path)[0]


def load_metadata(path: str) -> dict[str, str]:
    """The string metadata stored in an exported file (part, source checkpoint)."""
    return _read(path)[1]
