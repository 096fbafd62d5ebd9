"""tensorflow-datasets builders for locally stored datasets (nothing is downloaded).

`import vatt.data.builders` registers `howto100m`, `audioset`, `ucf101_local`, `esc50` and
`msrvtt` with tfds; build one with `python -m vatt.data.build <name> --manual_dir=... --data_dir=...`
and read it by index with `tfds.data_source("<name>/<config>", split=..., data_dir=...)`.
"""

from vatt.data.builders.audioset import Audioset
from vatt.data.builders.base import BuildReport, MediaConfig, read_summary
from vatt.data.builders.esc50 import Esc50
from vatt.data.builders.howto100m import Howto100m
from vatt.data.builders.msrvtt import Msrvtt
from vatt.data.builders.ucf101_local import Ucf101Local

NAMES = ("howto100m", "audioset", "ucf101_local", "esc50", "msrvtt")

__all__ = ["Audioset", "BuildReport", "Esc50", "Howto100m", "MediaConfig", "Msrvtt", "NAMES",
           "Ucf101Local", "read_summary"]
