"""Paths that may be local or remote (gs://bucket/run): one abstraction, etils.epath.

Every location a user gives (workdir, init_from, vocabularies, embedding matrices) is joined,
read and written here or through etils.epath, never with os.path/open on the raw string: a URL
handed to os.makedirs becomes a local folder named `gs:`. Local paths keep their plain
behaviour (absolute, created on demand, written then renamed into place); remote ones go
through etils.epath, which reaches Cloud Storage through TensorFlow's GCS client or, with
EPATH_USE_TF=false, through fsspec (gcsfs for gs://, which honours STORAGE_EMULATOR_HOST).

What may be remote depends on who reads it, and `unsupported()` says so in one line:
- "checkpoint" (workdir, init_from): orbax writes and reads checkpoints through tensorstore,
  which orbax points at Cloud Storage for gs:// only;
- "epath" (vocabularies, embedding matrices, a report's output folder): files read or written
  through etils.epath alone: any scheme it knows and has a file system for (gs://, s3://,
  az://, hf://);
- "local" (built datasets, DMVR records, the videos a build reads): ArrayRecord files are read
  through array_record's file layer and written by tfds through TensorFlow's (PyAV decodes local
  files); neither GCS client can be pointed at an emulator, so vatt cannot test them; a bucket is
  used through a mount (gcsfuse) instead.

Layer 0: no JAX, no TensorFlow import.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re

from etils import epath

# The URL schemes etils.epath maps to a file system (etils.epath.gpath._URI_SCHEMES).
EPATH_SCHEMES = ("gs", "s3", "az", "hf")
# Where orbax can keep checkpoints besides a local (or mounted) file system: it builds
# tensorstore's `gcs` kvstore for gs:// and treats every other path as a local file.
CHECKPOINT_SCHEMES = ("gs",)
KINDS = ("checkpoint", "epath", "local")
MOUNT_HINT = ("mount the bucket as a file system (Cloud Storage FUSE: gcsfuse --implicit-dirs "
              "<bucket> /mnt/<bucket>) and give the path under the mount")

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# "gs:/bucket" or "gs:bucket": a URL with a slash missing, which would be a local folder `gs:`.
_BROKEN_URL = re.compile(r"^(gs|s3|az|hf):(?!//)", re.IGNORECASE)
# fsspec's protocol name for each epath scheme (etils.epath.backend asks fsspec for "gcs").
_FSSPEC_PROTOCOL = {"gs": "gcs", "s3": "s3", "az": "az", "hf": "hf"}


def scheme(path: str) -> str | None:
    """"gs" for gs://bucket/x, None for a plain local path."""
    match = _URL.match(str(path))
    return match.group(1).lower() if match else None


def is_remote(path: str) -> bool:
    """True for a URL (gs://bucket/x), False for a local path."""
    return scheme(path) is not None


def resolve(path: str) -> str:
    """The canonical form of a user-given location: a local path made absolute (~ expanded), a
    URL left a URL (never os.path.abspath: that makes it a local `gs:` folder), without a
    trailing slash."""
    path = str(path)
    if is_remote(path):
        return str(epath.Path(path))
    return os.path.abspath(os.path.expanduser(path))


def join(path: str, *parts: str) -> str:
    """`path`/part/... for a local path or a URL."""
    return str(epath.Path(path).joinpath(*parts))


def makedirs(path: str) -> None:
    """Creates a local folder and its parents. Remote: nothing to do, object stores have no
    folders (an object's name makes its prefix), and gcsfs's makedirs would create a missing
    *bucket* rather than fail."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def exists(path: str) -> bool:
    return epath.Path(path).exists()


def read_text(path: str) -> str:
    return epath.Path(path).read_text(encoding="utf-8")


def read_bytes(path: str) -> bytes:
    return epath.Path(path).read_bytes()


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file so that no reader sees half of it: locally written next to it, then
    renamed into place (creating the folder); remotely one object upload, which is atomic."""
    if is_remote(path):
        epath.Path(path).write_bytes(data)
        return
    makedirs(os.path.dirname(os.path.abspath(path)))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


class TextAppender:
    """Appends text to a file that outlives the process (metrics.jsonl across restarts).

    Locally each append opens the file in append mode. Object stores cannot append (gcsfs
    opens "a" as an overwrite), so for a URL the file's content is read once, kept, and the
    whole object rewritten at each append: the same durability as a local append (the line is
    stored when `append` returns) for one upload per call.
    """

    def __init__(self, path: str):
        self.path = path
        self._remote_text: str | None = None

    def append(self, text: str) -> None:
        if not is_remote(self.path):
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
            return
        if self._remote_text is None:
            self._remote_text = read_text(self.path) if exists(self.path) else ""
        self._remote_text += text
        write_text(self.path, self._remote_text)


class UploadOnFlush:
    """A write-only file at a URL for writers that keep a file open and append to it
    (tensorboardX's event files): bytes are kept in memory and the whole object is uploaded at
    each `flush()` and at `close()` (when anything changed). Deliberately not an io.IOBase:
    tensorboardX fsyncs anything with a `fileno` attribute."""

    def __init__(self, path: str):
        self.path = path
        self.closed = False
        self._buffer = io.BytesIO()
        self._dirty = False

    def write(self, data: bytes) -> int:
        self._dirty = True
        return self._buffer.write(data)

    def flush(self) -> None:
        if self._dirty:
            epath.Path(self.path).write_bytes(self._buffer.getvalue())
            self._dirty = False

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True


def _epath_uses_tensorflow() -> bool:
    """Whether etils.epath serves URLs through TensorFlow's file systems: when TensorFlow is
    installed, unless EPATH_USE_TF is false (the rule of etils.epath.gpath._is_tf_installed)."""
    if os.environ.get("EPATH_USE_TF", "").lower() in ("false", "no", "f", "0"):
        return False
    return importlib.util.find_spec("tensorflow") is not None


def _no_filesystem(name: str) -> str | None:
    """Why etils.epath cannot open `name`:// here (None when it can)."""
    if _epath_uses_tensorflow():
        if name == "gs":
            return None
        return (f"etils.epath reads {name}:// through TensorFlow, which has no {name}:// file "
                "system: set EPATH_USE_TF=false so that it uses fsspec")
    try:
        import fsspec
        fsspec.get_filesystem_class(_FSSPEC_PROTOCOL[name])
    except (ImportError, ValueError) as e:
        return f"etils.epath reads {name}:// through fsspec, which cannot: {str(e).splitlines()[0]}"
    return None


def unsupported(path: str, what: str, kind: str) -> str | None:
    """One line naming why `path` (the value of `what`, e.g. "--workdir") cannot be used for
    `kind` ("checkpoint", "epath" or "local", see the module docstring) and the fix; None when
    it can. An empty path is left to the caller."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    path = str(path)
    name = scheme(path)
    if name is None:
        broken = _BROKEN_URL.match(path)
        if broken:
            return (f"{what}={path!r} looks like a URL with a missing slash (it would be a local "
                    f"folder named {broken.group(1)}:): write {broken.group(1)}://<bucket>/<path>")
        return None
    if name == "file":  # etils.epath would take file:///x for a relative path "file:/x"
        return f"{what}={path!r}: give a local path without file://, e.g. {path[len('file://'):]}"
    if kind == "local":
        return (f"{what}={path!r}: dataset files are read and written through TensorFlow's "
                f"(tf.data, tfds) and PyAV's own file layers, where vatt does not support "
                f"{name}:// (TensorFlow's GCS client cannot be tested against an emulator): "
                f"{MOUNT_HINT}")
    allowed = CHECKPOINT_SCHEMES if kind == "checkpoint" else EPATH_SCHEMES
    if name not in allowed:
        urls = ", ".join(f"{s}://" for s in allowed)
        reason = "checkpoints (orbax/tensorstore) reach" if kind == "checkpoint" else \
            "etils.epath reaches"
        return (f"{what}={path!r}: the scheme {name}:// is not supported ({reason} only {urls} "
                f"besides local paths): use a local path, {allowed[0]}://<bucket>/<path>, "
                f"or {MOUNT_HINT}")
    problem = _no_filesystem(name)
    return f"{what}={path!r}: {problem}" if problem else None


def check(path: str, what: str, kind: str) -> str:
    """`resolve(path)`, or ValueError with `unsupported`'s one line."""
    problem = unsupported(path, what, kind)
    if problem:
        raise ValueError(problem)
    return resolve(path)
