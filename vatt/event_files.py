"""TensorBoard event files at a URL (gs://bucket/run/tensorboard) through etils.epath.

tensorboardX opens event files through a registry of writer factories keyed by the path's
scheme and falls back to a local `open(path, "wb")`: an az:// or hf:// logdir would become a
local folder named `az:`, and its own gs:// and s3:// writers use other clients (the
google-cloud-storage and boto3 libraries) than the rest of the run. `register(logdir)` makes the
logdir's scheme go through vatt.paths.UploadOnFlush (etils.epath: the same client and settings
as checkpoints' listing, metrics.jsonl and the plots). Each flush (every flush_secs and at
close) uploads the whole event file, as tensorboardX's own GCS writer does.
"""

from __future__ import annotations

from vatt import paths


class _EpathWriterFactory:
    """tensorboardX's writer-factory protocol: `open(path)` and `directory_check(path)`."""

    def open(self, path: str) -> paths.UploadOnFlush:
        return paths.UploadOnFlush(path)

    def directory_check(self, path: str) -> None:
        paths.makedirs(path)  # object stores have no folders: nothing to create


def register(logdir: str) -> None:
    """Routes event files under `logdir` through etils.epath when it is a URL (no-op locally).

    tensorboardX keeps one registry per process; registering the same scheme again replaces
    the entry with an identical one."""
    if paths.is_remote(logdir):
        from tensorboardX import record_writer
        record_writer.register_writer_factory(paths.scheme(logdir), _EpathWriterFactory())
