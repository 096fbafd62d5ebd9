"""Convert data the pipeline cannot read by index into ArrayRecord files, once.

  # a vatt tfds build written as TFRecords (before the random-access pipeline): adds ArrayRecord
  # shards next to the TFRecord ones (which are kept) and records the format in dataset_info.json
  python -m vatt.data.to_array_record howto100m/default --data_dir=/data/tfds

  # DMVR TFRecords of tf.SequenceExample (the official VATT input format): one .array_record file
  # per input file in --out_dir, bad records skipped and counted (conversion_summary.json)
  python -m vatt.data.to_array_record dmvr '/data/dmvr/howto100m/train-*.tfrecord' --out_dir=/data/dmvr_ar
  # then: --config.data.name='dmvr:/data/dmvr_ar/*.array_record'

Folders are local (or a gcsfuse mount), as for vatt.data.build.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vatt import paths
from vatt.data.tf_setup import hide_accelerators


def convert_tfds_build(version_dir: str) -> int:
    """Adds ArrayRecord shards to one built dataset version folder (<data_dir>/<name>/<config>/
    <version>): every `<name>-<split>.tfrecord-NNNNN-of-MMMMM` gets a `.array_record-...` twin
    with the same records in the same order, and dataset_info.json lists array_record as an
    alternative format (what tfds' own converter does, without needing Apache Beam). Returns the
    number of records written."""
    hide_accelerators()
    import tensorflow as tf
    from array_record.python import array_record_module

    shards = sorted(f for f in os.listdir(version_dir) if ".tfrecord-" in f)
    if not shards:
        raise FileNotFoundError(f"no TFRecord shards (*.tfrecord-*) in {version_dir}")
    written = 0
    for name in shards:
        out = os.path.join(version_dir, name.replace(".tfrecord-", ".array_record-"))
        partial = out + ".incomplete"  # a crash leaves no half shard under the real name
        writer = array_record_module.ArrayRecordWriter(partial, "group_size:1")
        for record in tf.data.TFRecordDataset(os.path.join(version_dir, name)).as_numpy_iterator():
            writer.write(record)
            written += 1
        writer.close()
        os.replace(partial, out)
    info_path = os.path.join(version_dir, "dataset_info.json")
    with open(info_path) as f:
        info = json.load(f)
    formats = info.setdefault("alternativeFileFormats", [])
    if "array_record" not in formats and info.get("fileFormat") != "array_record":
        formats.append("array_record")
    with open(info_path + ".incomplete", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(info_path + ".incomplete", info_path)
    return written


def array_record_available(builder) -> bool:
    """Whether a prepared tfds builder's dataset has ArrayRecord shards (written so, or converted
    here). tfds 4.9 restores a converted build's alternative formats into the info proto only,
    while as_data_source checks the info's list: this adds it there, so reading works."""
    from tensorflow_datasets.core.file_adapters import FileFormat

    info = builder.info
    if FileFormat.ARRAY_RECORD in info.available_file_formats():
        return True
    if FileFormat.ARRAY_RECORD.value in info.as_proto.alternative_file_formats:
        info.alternative_file_formats.append(FileFormat.ARRAY_RECORD)
        return True
    return False


def ensure_array_record(builder) -> None:
    """Adds ArrayRecord shards to a prepared build that has only TFRecords (once)."""
    if not array_record_available(builder):
        convert_tfds_build(str(builder.data_dir))


def convert_tfds(name: str, data_dir: str) -> str:
    """Converts built dataset `name` ("esc50/default") in `data_dir`; returns its folder."""
    hide_accelerators()
    import tensorflow_datasets as tfds

    import vatt.data.builders  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(f"Dataset {name!r} is not built in {data_dir}: nothing to convert")
    ensure_array_record(builder)
    return str(builder.data_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vatt.data.to_array_record", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", help="a built dataset name[/config], or 'dmvr'")
    p.add_argument("pattern", nargs="?", help="dmvr: glob of the TFRecord files")
    p.add_argument("--data_dir", help="tfds data_dir of the built dataset")
    p.add_argument("--out_dir", help="dmvr: folder for the .array_record files")
    p.add_argument("--audio_only", action="store_true",
                   help="dmvr: keep records without frames (audio-only sets such as ESC-50)")
    a = p.parse_args(argv)
    if a.what == "dmvr":
        if not a.pattern or not a.out_dir:
            p.error("dmvr needs the TFRecord glob and --out_dir")
        problem = paths.unsupported(a.out_dir, "--out_dir", "local")
        if problem:
            p.error(problem)
        from vatt.data import dmvr

        hide_accelerators()
        summary = dmvr.convert(a.pattern, a.out_dir, require_frames=not a.audio_only)
        print(json.dumps({k: v for k, v in summary.items() if k != "files"}), flush=True)
        return 0 if summary["written"] else 1
    if not a.data_dir:
        p.error("a built dataset needs --data_dir")
    problem = paths.unsupported(a.data_dir, "--data_dir", "local")
    if problem:
        p.error(problem)
    print(f"ArrayRecord shards in {convert_tfds(a.what, a.data_dir)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
