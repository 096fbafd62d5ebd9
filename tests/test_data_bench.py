"""vatt.data.bench --media_dir end to end: the folder is built (howto100m/default), the training
iterator and the PyAV baseline are measured, and the run ends with one JSON line whose figures
agree with each other. Runs the real CLI in a child process (it starts its own children: the
pipeline measurements and the PyAV workers), at small clip sizes and few clips."""

import json
import os
import subprocess
import sys

import pytest

from subprocess_utils import REPO_ROOT, child_env
from vatt.testing import media

SHARED_MEDIA = "/work/shared/media/video_with_audio"
KEYS = {"pipeline_clips_per_s_per_core", "pipeline_clips_per_s_1core", "pyav_clips_per_s_per_core",
        "pyav_clips_per_s_1core", "ratio", "cores", "media_dir", "num_videos", "build_summary",
        "settings"}
SMALL = ["--num_frames=8", "--frame_size=64", "--clips=4", "--seconds=0", "--batch_size=2",
         "--warmup=2"]


def _written_folder(root: str) -> str:
    """Three real clips with sound, 3 s at 160x120 (two codecs), written here."""
    folder = os.path.join(root, "videos")
    for i in range(3):
        media.write_video(os.path.join(folder, f"clip{i}.mp4"), seconds=3.0, width=160, height=120,
                          sample_rate=48000, seed=i, codec="h264" if i % 2 else "mpeg4")
    return folder


@pytest.mark.parametrize("source", ["written", "shared"])
def test_media_bench_end_to_end(source, tmp_path):
    if source == "shared":
        if not os.path.isdir(SHARED_MEDIA):
            pytest.skip(f"{SHARED_MEDIA} is not on this machine (real camera clips)")
        folder = SHARED_MEDIA
    else:
        if os.path.isdir(SHARED_MEDIA):
            # The same command on real camera clips runs above; written clips stand in for them
            # in a clone without the shared recordings (CI's time is spent once).
            pytest.skip(f"{SHARED_MEDIA} is here: the shared-media case runs the same command")
        folder = _written_folder(str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "vatt.data.bench", f"--media_dir={folder}", *SMALL],
                          env=child_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1])  # the run ends with exactly one JSON line
    assert not any(line.startswith("{") for line in lines[:-1])
    assert KEYS <= set(out)
    assert out["pipeline_clips_per_s_per_core"] > 0 and out["pyav_clips_per_s_per_core"] > 0
    assert out["pipeline_clips_per_s_1core"] > 0 and out["pyav_clips_per_s_1core"] > 0
    assert out["ratio"] == pytest.approx(out["pipeline_clips_per_s_per_core"]
                                         / out["pyav_clips_per_s_per_core"], rel=1e-12)
    assert out["cores"] == len(os.sched_getaffinity(0))
    assert out["pipeline_clips_per_s_per_core"] == pytest.approx(
        out["pipeline_clips_per_s_all_cores"] / out["cores"], rel=1e-12)
    settings = out["settings"]
    assert (settings["num_frames"], settings["frame_size"], settings["audio_seconds"]) == (8, 64, 0.8)
    build = settings["build"]  # the `default` config: 10 fps, short side 256, 48 kHz
    assert (build["name"], build["fps"], build["short_side"], build["sample_rate"]) == (
        "default", 10.0, 256, 48000)
    assert out["runs"]["pipeline_1core"]["batch_shapes"]["video"] == [2, 8, 64, 64, 3]
    assert out["runs"]["pipeline_1core"]["batch_shapes"]["audio"] == [2, int(0.8 * 48000)]
    counts = out["build_summary"]
    assert "build howto100m/default" in proc.stdout  # the build summary line
    if source == "written":
        # Each 3 s video is one clip (HowTo100M windows are 8 s): kept, reported as short.
        assert out["num_videos"] == 3 and out["num_videos_pyav"] == 3
        assert counts == {"written": 3, "skipped": {}, "kept_with_fix": {"shorter_than_clip_kept": 3}}
    else:
        files = [f for f in os.listdir(folder) if not f.startswith(".")]
        assert out["num_videos"] == len(files)
        # Every real clip with sound is read: at least one example per video, none skipped.
        assert counts["written"] >= len(files) and counts["skipped"] == {}
        assert out["num_videos_pyav"] == len(files)
