"""vatt.ablation: the grid, the equal-time step counts, the mean/std table, and a real
ablation through the CLI (2 points x 2 seeds of the tiny model, each with a linear probe),
resumed without rerunning what finished."""

import json
import math
import os
import statistics

import pytest

from vatt.ablation import cli, grid, report, runner


def test_grid_points_labels_and_parsing():
    axes = [grid.parse_axis("loss.cka_weight=0,0.1"), grid.parse_axis("--config.seed=1,2")]
    points = grid.build_points(axes, [grid.parse_point("loss.cka_weight=0.1;loss.cka_kernel=rbf"),
                                      grid.parse_point("loss.cka_weight=0;seed=1")])
    assert [p.label for p in points] == [
        "loss.cka_weight=0 seed=1", "loss.cka_weight=0 seed=2", "loss.cka_weight=0.1 seed=1",
        "loss.cka_weight=0.1 seed=2", "loss.cka_weight=0.1 loss.cka_kernel=rbf"]
    assert len({p.slug for p in points}) == 5 and all("/" not in p.slug for p in points)
    assert grid.build_points([]) == [grid.Point(())] and grid.Point(()).label == "baseline"
    only = grid.parse_point("model.video.droptoken_keep=0.5;model.audio.droptoken_keep=0.5")
    assert grid.build_points([], [only]) == [only]  # points alone: no baseline added
    # A tuple value keeps its commas through --point.
    assert grid.parse_point("model.video.patch_size=(4,8,8)").get(
        "model.video.patch_size") == "(4,8,8)"
    for bad in ("loss.cka_weight", "=1", "loss.cka_weight="):
        with pytest.raises(ValueError, match="write key=value"):
            grid.parse_assignment(bad, "--set")
    with pytest.raises(ValueError, match="repeats a value"):
        grid.parse_axis("seed=1,1")
    with pytest.raises(ValueError, match="names a key twice"):
        grid.build_points([("seed", ["1"]), ("seed", ["2"])])



def test_plot_labels_are_short_but_never_ambiguous():
    keep = [grid.parse_point(f"model.video.droptoken_keep={k};model.audio.droptoken_keep={k};"
                             f"total_steps={n}") for k, n in (("1.0", 300), ("0.5", 441))]
    assert report.plot_labels(keep) == ["droptoken_keep=1.0\ntotal_steps=300",
                                        "droptoken_keep=0.5\ntotal_steps=441"]
    # video keep 0.5 / audio keep 1.0 and the reverse shorten alike: full labels instead.
    mixed = [grid.parse_point("model.video.droptoken_keep=0.5;model.audio.droptoken_keep=1.0"),
             grid.parse_point("model.video.droptoken_keep=1.0;model.audio.droptoken_keep=0.5")]
    assert report.plot_labels(mixed) == [p.label.replace(" ", "\n") for p in mixed]
    assert report.plot_labels([grid.Point(())]) == ["baseline"]

def test_equal_time_steps():
    # keep 1.0 at 40 ms/step for 100 steps = 4 s; keep 0.5 at 25 ms gets 160 steps.
    steps = grid.equal_time_steps({"k1": 0.040, "k05": 0.025, "k025": 0.016}, 100)
    assert steps == {"k1": 100, "k05": 160, "k025": 250}
    with pytest.raises(ValueError, match="positive and finite"):
        grid.equal_time_steps({"a": 0.0}, 10)


def test_summary_mean_and_sample_std(tmp_path):
    points = [grid.Point((("k", "a"),)), grid.Point((("k", "b"),)), grid.Point((("k", "c"),))]
    results = [{"point": "k=a", "seed": s, "metrics": {"m": v}, "step_s": 0.1 * (s + 1),
                "total_steps": 10, "train_wall_s": 1.0} for s, v in enumerate([1.0, 2.0, 4.0])]
    results.append({"point": "k=b", "seed": 0, "metrics": {"m": 3.0, "only_b": 1.0},
                    "step_s": 0.5, "total_steps": 10, "train_wall_s": 1.0})
    rows = report.summarize(points, results)
    assert [r["point"] for r in rows] == ["k=a", "k=b"]  # c has no runs
    a, b = rows
    assert a["m/mean"] == pytest.approx(7 / 3)
    assert a["m/std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert a["seeds"] == "0,1,2" and a["k"] == "a"
    assert math.isnan(a["only_b/mean"]) and b["only_b/mean"] == 1.0 and b["m/std"] == 0.0
    assert a["step_s/mean"] == pytest.approx(0.2)
    table = report.to_markdown(rows, ["m", "step_s"], scale={"step_s": 1000})
    assert "| k=a | 3 | 2.33 ± 1.5 | 200 ± 1e+02 |" in table
    files = report.write(str(tmp_path), points, results, ["m", "missing"], title="t")
    assert json.load(open(files["summary_json"])) == json.loads(json.dumps(rows))
    assert open(files["summary_csv"]).readline().startswith("point,k,seeds,")
    assert os.path.getsize(files["plot"]) > 10_000


def test_equal_time_points_read_an_earlier_summary(tmp_path):
    earlier = tmp_path / "steps"
    earlier.mkdir()
    (earlier / "summary.json").write_text(json.dumps([
        {"point": "keep=1.0", "step_s/mean": 0.04, "total_steps/mean": 100},
        {"point": "keep=0.5", "step_s/mean": 0.02, "total_steps/mean": 100}]))
    points = [grid.Point((("keep", "1.0"),)), grid.Point((("keep", "0.5"),))]
    out = cli.equal_time_points(points, str(earlier))
    assert [p.label for p in out] == ["keep=1.0 total_steps=100", "keep=0.5 total_steps=200"]
    # A subset of the points keeps the whole earlier ablation's budget (keep 1.0's 4 s).
    (half,) = cli.equal_time_points([grid.Point((("keep", "0.5"),))], str(earlier))
    assert half.label == "keep=0.5 total_steps=200"
    with pytest.raises(ValueError, match="has no runs of"):
        cli.equal_time_points([grid.Point((("keep", "0.25"),))], str(earlier))
    with pytest.raises(ValueError, match="no summary.json"):
        cli.equal_time_points(points, str(tmp_path))


ABLATION = ["--config=pretrain:tiny,runlocal", "--set=total_steps=6", "--set=log_every_steps=2",
            "--set=eval.num_clips=32", "--set=optimizer.warmup_steps=2", "--set=eval.plots=False",
            "--set=plots=False"]


def test_a_points_value_wins_over_a_fixed_one(tmp_path):
    # An equal-time point sets total_steps while --set=total_steps holds the reference length:
    # the point's flag must come last (ml_collections applies flags in order).
    study = runner.Study(config="pretrain:tiny", workdir=str(tmp_path),
                         fixed=(("total_steps", "300"), ("model.video.droptoken_keep", "1.0")))
    point = grid.Point((("model.video.droptoken_keep", "0.25"), ("total_steps", "548")))
    (_, train), = runner.commands(study, point, 0)
    flags = [a for a in train if a.startswith("--config.")]
    assert flags == ["--config.total_steps=300", "--config.model.video.droptoken_keep=1.0",
                     "--config.model.video.droptoken_keep=0.25", "--config.total_steps=548",
                     "--config.seed=0"]


def test_ablation_through_the_cli_is_resumable(tmp_path, capsys):
    work = str(tmp_path / "abl")
    args = [*ABLATION, f"--workdir={work}", "--grid=loss.cka_weight=0,1", "--seeds=0,1",
            "--metrics=zeroshot/t2v/R@1,train/loss,step_s"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["runs"] == 4 and last["failed"] == []
    results = json.load(open(last["results"]))
    summary = {r["point"]: r for r in json.load(open(last["summary_json"]))}
    assert set(summary) == {"loss.cka_weight=0", "loss.cka_weight=1"}
    for label, row in summary.items():
        runs = [r for r in results if r["point"] == label]
        assert [r["seed"] for r in runs] == [0, 1]
        point = grid.Point(tuple(runs[0]["overrides"].items()))
        for key in ("zeroshot/t2v/R@1", "zeroshot/cka/video_text", "train/loss"):
            # The table is the mean and sample std of what each run's own metrics.jsonl says.
            values = [_last_logged(os.path.join(work, "runs", point.slug, f"seed{s}", "train"),
                                   key) for s in (0, 1)]
            assert row[f"{key}/mean"] == pytest.approx(statistics.fmean(values))
            assert row[f"{key}/std"] == pytest.approx(statistics.stdev(values))
        assert all(r["total_steps"] == 6 and r["step_s"] > 0 for r in runs)
        # The seed reaches the run: the two seeds train different models.
        assert runs[0]["metrics"]["train/loss"] != runs[1]["metrics"]["train/loss"]
    cka_runs = [r for r in results if r["point"] == "loss.cka_weight=1"]
    assert all("train/loss_cka" in r["metrics"] for r in cka_runs)
    assert all("train/loss_cka" not in r["metrics"] for r in results if r not in cka_runs)
    assert "| loss.cka_weight=1 | 2 |" in out and os.path.getsize(last["plot"]) > 10_000

    # Run again: nothing reruns. Then lose one run's result: only that run goes again (its
    # train loop finds the final checkpoint, evaluates again) and reports the same metrics.
    logs = {p: os.path.getmtime(p) for p in _logs(work)}
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("[done]") == 4
    assert {p: os.path.getmtime(p) for p in _logs(work)} == logs
    lost = os.path.join(work, "runs", "loss.cka_weight=1", "seed1")
    before = json.load(open(os.path.join(lost, runner.RESULT_FILE)))
    os.remove(os.path.join(lost, runner.RESULT_FILE))
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("[done]") == 3
    after = json.load(open(os.path.join(lost, runner.RESULT_FILE)))
    assert after["metrics"]["zeroshot/t2v/R@1"] == before["metrics"]["zeroshot/t2v/R@1"]
    assert "Resuming from" in open(os.path.join(lost, "train.log")).read()


def test_downstream_evaluation_runs_on_the_trained_model(tmp_path, capsys):
    # --eval: a linear probe of each trained model, in its own workdir, from --config.init_from
    # = the run, building the model with the point's model.* keys.
    work = str(tmp_path / "abl")
    assert cli.main([*ABLATION, f"--workdir={work}", "--point=model.video.droptoken_keep=0.75",
                     "--seeds=3", "--eval=linear_probe:synthetic,runlocal"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (result,) = json.load(open(last["results"]))
    run = os.path.join(work, "runs", "model.video.droptoken_keep=0.75", "seed3")
    probe = os.path.join(run, "linear_probe_synthetic_runlocal")
    assert result["metrics"]["linear_probe/top1"] == _last_logged(probe, "linear_probe/top1")
    assert 0 <= result["metrics"]["linear_probe/top1"] <= 100
    probe_log = open(os.path.join(run, "linear_probe_synthetic_runlocal.log")).read()
    assert f"--config.init_from={os.path.join(run, 'train')}" in probe_log
    assert "--config.model.video.droptoken_keep=0.75" in probe_log
    assert json.load(open(os.path.join(probe, "config.json")))["model"]["video"][
        "droptoken_keep"] == 0.75


def _last_logged(workdir, key):
    """The value of `key` in the last metrics.jsonl record that has it."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if key in r][-1][key]


def _logs(work):
    return [os.path.join(d, f) for d, _, files in os.walk(work) for f in files
            if f.endswith(".log")]


def test_a_failed_run_is_reported_and_the_rest_still_run(tmp_path, capsys):
    work = str(tmp_path / "abl")
    code = cli.main(["--config=pretrain:tiny,runlocal", f"--workdir={work}",
                     "--grid=loss.mil_nce_variant=bogus", "--seeds=0"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] loss.mil_nce_variant=bogus seed 0: train exited 2" in out
    assert "loss.mil_nce_variant" in open(os.path.join(
        work, "runs", "loss.mil_nce_variant=bogus", "seed0", "train.log")).read()
    assert json.loads(out.strip().splitlines()[-1])["failed"]
