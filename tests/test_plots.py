"""Observability: t-SNE, the PNG plots, TensorBoard events from MetricsWriter, evaluator plots."""

import glob
import json
import os
import struct

import numpy as np
import pytest

from helpers import config

from vatt import plots


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _events(logdir):
    """All Event protos of the tfevents files in logdir (TFRecord framing, no TensorFlow)."""
    from tensorboardX.proto import event_pb2
    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            pos += 12
            event = event_pb2.Event()
            event.ParseFromString(data[pos:pos + length])
            events.append(event)
            pos += length + 4
    return events


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 8, size=(3, 10))
    labels = np.repeat(np.arange(3), 25)
    x = centres[labels] + rng.normal(size=(75, 10))
    y = plots.tsne_2d(x, num_iters=300)
    assert y.shape == (75, 2) and np.all(np.isfinite(y))
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(labels[d.argmin(1)] == labels) > 0.95
    assert plots.pca_2d(x).shape == (75, 2)


def test_plot_functions_write_pngs(tmp_path):
    rng = np.random.default_rng(1)
    n = 24
    sim = rng.normal(size=(n, n)) + 3 * np.eye(n)
    group = np.sort(rng.integers(0, 8, n))
    paths = [
        plots.plot_similarity(sim, str(tmp_path / "sim.png"), title="t", query_label="text",
                              item_label="video", group_names=[str(i) for i in range(8)],
                              group_of=group),
        plots.plot_recall_at_k({"a": rng.integers(1, n + 1, n)}, n, str(tmp_path / "r.png"),
                               title="recall"),
        plots.plot_cka_heatmaps({"linear": rng.uniform(size=(3, 2))}, str(tmp_path / "c.png"),
                                x_name="video", y_name="text", x_labels=["a", "b", "c"],
                                y_labels=["d", "e"], title="cka"),
        plots.plot_embedding_maps(
            {"vt": {"video": rng.normal(size=(n, 8)), "text": rng.normal(size=(n, 8))}},
            rng.integers(0, 2, size=(n, 5)), str(tmp_path / "e.png"), title="map",
            method="pca"),
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "train/loss": 3.0, "train/learning_rate": 1e-3},
        {"step": 2, "train/loss": "nan", "train/learning_rate": 1e-3},
        {"step": 2, "zeroshot/t2v/R@1": 10.0, "zeroshot/cka/video_text": 0.3}]) + "\n{broken")
    series = plots.read_metrics(str(metrics))
    assert list(series["train/loss"][0]) == [1, 2] and np.isnan(series["train/loss"][1][1])
    paths.append(plots.plot_training_curves(str(metrics), str(tmp_path / "curves.png")))
    for p in paths:
        assert _is_png(p) and os.path.getsize(p) > 5000, p
    assert not glob.glob(str(tmp_path / "*.tmp.png"))


def test_metrics_writer_tensorboard_and_curves(tmp_path):
    from vatt import metrics_writer
    from vatt.metrics_writer import MetricsWriter
    # No global registry of writers: a run's writer is handed down explicitly.
    assert not hasattr(metrics_writer, "active_writer")
    writer = MetricsWriter(str(tmp_path))
    for step in (1, 2, 3):
        writer.write(step, {"train/loss": 4.0 - step, "train/learning_rate": np.float32(1e-3)})
    writer.write(3, {"zeroshot/t2v/R@1": 12.5})
    writer.write_image(3, "zeroshot/t2v_similarity", np.eye(6))
    writer.write_text("config", "lr: 0.001")
    writer.close()
    writer.close()  # idempotent
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 3]
    assert [r.get("train/loss") for r in records] == [3.0, 2.0, 1.0, None]
    events = _events(str(tmp_path / "tensorboard"))
    scalars = {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value
               if v.HasField("simple_value")}
    assert scalars[("train/loss", 2)] == pytest.approx(2.0)
    # The tag is the metric name itself (tensorboardX's add_scalar would make "R@1" "R_1").
    assert scalars[("zeroshot/t2v/R@1", 3)] == pytest.approx(12.5)
    images = [v for e in events for v in e.summary.value if v.HasField("image")]
    assert [v.tag for v in images] == ["zeroshot/t2v_similarity"]
    assert images[0].image.width >= 96  # small matrices are upscaled
    assert _is_png(tmp_path / "plots" / "training_curves.png")
    assert not writer.errors
    other = MetricsWriter(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="plot_nonsense"):
        other.plot("nonsense")
    other.close()


class RecordingWriter:
    """A Writer (vatt.evaluation.base) that only records what it is asked to do."""

    def __init__(self):
        self.plots, self.images, self.metrics = [], [], []

    def write(self, step, metrics):
        self.metrics.append((step, dict(metrics)))

    def write_text(self, tag, text, step=0):
        pass

    def write_image(self, step, tag, image):
        self.images.append((step, tag, np.asarray(image).shape))

    def plot(self, kind, *args, **kwargs):
        path = next(a for a in args if isinstance(a, str) and a.endswith(".png"))
        self.plots.append((kind, path))

    def close(self):
        pass


def test_synthetic_evaluator_writes_plots_through_its_writer(tmp_path):
    """SyntheticZeroShotEvaluator draws nothing itself: every figure and image goes to the writer
    of its EvalContext (the run's MetricsWriter, which draws them; a NullWriter drops them)."""
    import jax

    from vatt.evaluation.base import EvalContext, NullWriter
    from vatt.metrics_writer import MetricsWriter
    from vatt.parallel.mesh import make_mesh
    from vatt.tasks import build_task
    from vatt.train.state import create_train_state

    cfg = config("pretrain:tiny,runlocal", eval__num_clips=32, eval__embedding_map_clips=16)
    task = build_task(cfg)
    mesh = make_mesh(-1)
    graphdef, state, _ = create_train_state(task, None, mesh, cfg.seed)
    (evaluator,) = task.evaluators()

    def run(workdir, writer):
        ctx = EvalContext(graphdef, state.params, state.rest, mesh, str(workdir), 7, writer)
        with jax.set_mesh(mesh):
            return evaluator.run(ctx)

    # 1. A writer that records: the evaluator asks for these figures and images, nothing more,
    # and writes no file of its own.
    recorder = RecordingWriter()
    recorded = run(tmp_path / "recorded", recorder)
    assert not os.path.exists(tmp_path / "recorded")
    plots_dir = str(tmp_path / "recorded" / "plots")
    assert sorted(recorder.plots) == sorted([
        ("similarity", os.path.join(plots_dir, "zeroshot_t2v_similarity.png")),
        ("similarity", os.path.join(plots_dir, "zeroshot_v2a_similarity.png")),
        ("recall_at_k", os.path.join(plots_dir, "zeroshot_recall_at_k.png")),
        ("cka_heatmaps", os.path.join(plots_dir, "cka_layers_video_text.png")),
        ("cka_heatmaps", os.path.join(plots_dir, "cka_layers_video_audio.png")),
        ("embedding_maps", os.path.join(plots_dir, "embeddings_tsne.png"))])
    assert sorted(recorder.images) == sorted([
        (7, "zeroshot/t2v_similarity", (32, 32)), (7, "zeroshot/v2a_similarity", (32, 32)),
        (7, "cka/video_text_layers", (3, 3)), (7, "cka/video_audio_layers", (3, 3))])
    assert recorder.metrics == []  # metrics are returned; the loop writes them

    # 2. The default NullWriter: same metrics, no file anywhere.
    assert run(tmp_path / "null", NullWriter()) == recorded
    assert not os.path.exists(tmp_path / "null")

    # 3. The run's MetricsWriter draws them in <workdir>/plots and mirrors them to TensorBoard.
    writer = MetricsWriter(str(tmp_path))
    metrics = run(tmp_path, writer)
    writer.write(7, metrics)
    writer.close()
    assert metrics == recorded
    assert metrics["zeroshot/num_clips"] == 32
    for task_name in ("t2v", "v2a"):
        for k in ("R@1", "R@5", "R@10", "MedR", "MeanR"):
            assert f"zeroshot/{task_name}/{k}" in metrics
    for k in ("video_text", "video_audio"):
        assert 0.0 <= metrics[f"zeroshot/cka/{k}"] <= 1.0 + 1e-6
    names = sorted(os.listdir(tmp_path / "plots"))
    assert names == sorted(["zeroshot_t2v_similarity.png", "zeroshot_v2a_similarity.png",
                            "zeroshot_recall_at_k.png", "cka_layers_video_text.png",
                            "cka_layers_video_audio.png", "embeddings_tsne.png",
                            "training_curves.png"])
    for name in names:
        assert _is_png(tmp_path / "plots" / name)
    tags = {v.tag for e in _events(str(tmp_path / "tensorboard")) for v in e.summary.value}
    assert {"zeroshot/t2v_similarity", "cka/video_text_layers", "zeroshot/cka/video_text"} <= tags
    assert not writer.errors
