"""Build a vatt tfds dataset from a local copy: `python -m vatt.data.build <name> ...`.

  python -m vatt.data.build esc50 --manual_dir=/data/ESC-50 --data_dir=/data/tfds [--config=default]

Shows tfds' progress bars, then prints the build summary (written / skipped / padded items,
also saved as build_summary.json next to the data). Read the result with
`tfds.data_source("esc50/default", split="fold1", data_dir="/data/tfds")` (ArrayRecord, by
index) after `import vatt.data.builders`, or with
`vatt.data.pipeline.make_iterator`. Both folders are local (or a mounted bucket: gcsfuse); a
gs:// URL is refused in one line before anything starts (vatt.paths, kind "local").
"""

from __future__ import annotations

import argparse
import os
import sys

from vatt import paths
from vatt.data.tf_setup import hide_accelerators


def _unsupported_folder(manual_dir: str, data_dir: str) -> str | None:
    """Why one of the folders cannot be used (a URL: the videos are decoded by PyAV from local
    files, tfds writes through TensorFlow's file layer), None when both can."""
    return (paths.unsupported(manual_dir, "--manual_dir", "local")
            or paths.unsupported(data_dir, "--data_dir", "local"))


def build(name: str, *, manual_dir: str, data_dir: str, config=None, overwrite: bool = False) -> dict:
    """Build dataset `name` ("esc50" or "esc50/tiny"); `config` may be a config name or object.

    Returns the build summary dict (see vatt.data.builders.base.BuildReport). Raises ValueError
    for a folder given as a URL (tfds writes through TensorFlow's own file layer).
    """
    problem = _unsupported_folder(manual_dir, data_dir)
    if problem:
        raise ValueError(problem)
    hide_accelerators()
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401  (registers the builders)
    from vatt.data.builders import base

    if "/" in name:
        name, config = name.split("/", 1)
    kwargs = {"data_dir": data_dir}
    if config is not None:
        kwargs["config"] = config
    builder = tfds.builder(name, **kwargs)
    mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    if overwrite and os.path.isdir(builder.data_dir):
        import shutil
        shutil.rmtree(builder.data_dir)
    # ArrayRecord: the input pipeline reads examples by index (vatt.data.positions).
    builder.download_and_prepare(file_format="array_record", download_config=tfds.download.DownloadConfig(
        manual_dir=os.path.abspath(os.path.expanduser(manual_dir)), download_mode=mode))
    # Built earlier as TFRecords (reused, not rebuilt): add the ArrayRecord copy.
    from vatt.data import to_array_record
    to_array_record.ensure_array_record(builder)
    return base.read_summary(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vatt.data.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="howto100m | audioset | ucf101_local | esc50 | msrvtt (optionally /config)")
    p.add_argument("--manual_dir", required=True, help="root of your local copy of the dataset")
    p.add_argument("--data_dir", required=True, help="where the tfds dataset is written")
    p.add_argument("--config", default=None, help="builder config: default | small | tiny")
    p.add_argument("--overwrite", action="store_true", help="rebuild even if already built")
    a = p.parse_args(argv)
    problem = _unsupported_folder(a.manual_dir, a.data_dir)
    if problem:
        p.error(problem)  # one line, exit status 2, before TensorFlow is imported
    summary = build(a.name, manual_dir=a.manual_dir, data_dir=a.data_dir, config=a.config,
                    overwrite=a.overwrite)
    total = sum(summary["written"].values())
    print(f"Done: {total} examples written; summary in build_summary.json", flush=True)
    return 0 if total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
