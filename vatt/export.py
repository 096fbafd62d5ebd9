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

Formats (both without pickle) are those of vatt.weight_files; an exported file is an ``init_from``
like a checkpoint.

``vatt.weight_files.load(<file>)`` returns the flat {path: numpy array} dict, equal bit for bit
to what was exported.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np

from vatt import paths, weight_files

PARTS = ("all", "video", "audio", "text")
CONFIG_SUFFIX = ".config.json"


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


def export(workdir: str, output: str, part: str = "all") -> dict:
    """Writes `part` of the newest checkpoint of `workdir` to `output` and the run's config.json
    to `output`.config.json; returns {"output", "config", "arrays", "bytes", "state_dir"}."""
    from vatt.train.checkpointing import checkpoint_state_dir, load_model_tree

    weight_files.file_format(output, "--output")
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
    data = weight_files.encode(tree, output, metadata)
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
