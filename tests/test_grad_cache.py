"""Contrastive gradient accumulation (GradCache, vatt.train.grad_cache; config.accumulation_steps):
N = 1, 2, 4, 8 chunks give the big batch's loss, gradients, metrics and batch-norm statistics
(1 device here, 8 fake devices in one subprocess), the compiled step's temporaries fall about
N-fold, training through the ordinary loop gives the N=1 run's first loss, and bad values are
refused at start-up. Per-example randomness (vatt.models.row_random) is what makes the
equality hold with dropout and per-sample DropToken on."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import helpers

SPEC = "pretrain:tiny,runlocal"
# Every random draw of the backbones on: dropout (embeddings, blocks, attention probabilities,
# after the final LayerNorm) and DropToken with one subset per clip; the heads' BatchNorm, the
# CKA loss and the learned temperature all read the global batch.
OVERRIDES = {"model.dropout_rate": 0.1, "model.attention_dropout_rate": 0.1,
             "model.final_dropout": True, "model.droptoken_mode": "sample",
             "loss.cka_weight": 0.5, "loss.learn_temperature": True}
STEPS = (1, 2, 4, 8)
RTOL = 1e-5


# Gradients that are 0 in exact arithmetic: an attention key bias (softmax over keys is invariant
# to q.b_key, the same for every key) and a bias feeding a BatchNorm (the batch mean removes it;
# tiny's heads keep those biases). In float32 both sides hold only rounding (~1e-9 of the
# largest gradient, six orders below the smallest real one), which no relative tolerance can
# compare: they are checked to be ~0 instead.
ZERO_LEAVES = ("['attn']['key']['bias']", "['layer1']['fc']['bias']", "['layer2']['fc']['bias']",
               "['video_va_to_vt']['fc']['bias']")
ZERO_LEVEL = 1e-6  # of the largest gradient


def leaf_errors(grads, reference) -> tuple[float, float]:
    """(largest per-leaf error max|g - ref| / max|ref|, largest |entry| of a ZERO_LEAVES leaf
    relative to the largest gradient). Per leaf, not per entry: float32 sums of B*N terms are
    exact to ~1e-7 of the terms' size, not of an entry that cancels to near zero."""
    top = max(float(np.max(np.abs(r))) for r in jax.tree.leaves(reference))
    worst, zero = 0.0, 0.0
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads),
                            jax.tree.leaves(reference)):
        g, r = np.asarray(g), np.asarray(r)
        name = jax.tree_util.keystr(path)
        if any(z in name for z in ZERO_LEAVES):
            zero = max(zero, float(np.max(np.abs(g))) / top, float(np.max(np.abs(r))) / top)
            continue
        # Any other leaf is a real gradient (the smallest measured: 5e-3 of the largest).
        assert np.max(np.abs(r)) > 1e3 * ZERO_LEVEL * top, name
        worst = max(worst, float(np.max(np.abs(g - r)) / np.max(np.abs(r))))
    return worst, zero


def compare_to_big_batch(batch_size: int, steps=STEPS) -> dict:
    """Loss, metrics, statistics and gradients of the step's differentiating half
    (vatt.train.step.make_loss_and_grads, what the train step runs) for each N against N=1 on
    one batch of the synthetic stream, on every visible device. Returns the figures."""
    from vatt import config_files
    from vatt.parallel.mesh import host_to_global, make_mesh
    from vatt.tasks import build_task
    from vatt.train.optimizer import build_optimizer
    from vatt.train.state import create_train_state
    from vatt.train.step import make_loss_and_grads, step_controls

    config = config_files.load(SPEC, dict(OVERRIDES, batch_size=batch_size))
    mesh = make_mesh(-1)
    out: dict = {"devices": mesh.size, "batch_size": batch_size}
    with jax.set_mesh(mesh):
        task = build_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, _ = create_train_state(task, tx, mesh, config.seed)
        state = state.replace(step=jnp.asarray(5, jnp.int32))  # any step: its own keys
        controls = step_controls(config, schedule, mesh)
        host = next(task.train_stream(0, 0, 1))
        out["clips_without_text"] = int(np.sum(np.max(host["text_mask"], axis=-1) == 0))
        batch = host_to_global(host, mesh)
        results = {}
        for n in steps:
            fn = jax.jit(make_loss_and_grads(graphdef, task.loss_fn, task.trainable, n,
                                             task if n > 1 else None, mesh))
            compiled = fn.lower(state, batch, controls).compile()
            text = compiled.as_text()
            out[f"temp_bytes/{n}"] = int(compiled.memory_analysis().temp_size_in_bytes)
            # Chunks are strided views of the sharded batch: no resharding collectives.
            out[f"resharding_ops/{n}"] = text.count("all-to-all") + text.count(
                "collective-permute")
            results[n] = jax.device_get(compiled(state, batch, controls))
    loss1, metrics1, rest1, grads1 = results[1]
    for n in steps:
        loss, metrics, rest, grads = results[n]
        out[f"loss/{n}"] = float(loss)
        out[f"loss_rel/{n}"] = abs(float(loss) - float(loss1)) / abs(float(loss1))
        out[f"metrics_rel/{n}"] = max(
            abs(float(metrics[k]) - float(metrics1[k])) / max(abs(float(metrics1[k])), 1e-12)
            for k in metrics1)
        out[f"rest_abs/{n}"] = max(float(np.max(np.abs(a - b))) for a, b in
                                   zip(jax.tree.leaves(rest), jax.tree.leaves(rest1)))
        out[f"rest_changed/{n}"] = any(  # the BN statistics did move away from their init
            float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) > 0 for a, b in
            zip(jax.tree.leaves(rest), jax.tree.leaves(jax.device_get(state.rest))))
        out[f"grad_rel/{n}"], out[f"zero_leaves/{n}"] = leaf_errors(grads, grads1)
    return out


def check_figures(f: dict, steps=STEPS) -> None:
    assert f["clips_without_text"] >= 1  # MIL-NCE's text mask is exercised
    for n in steps:
        assert f[f"loss_rel/{n}"] <= RTOL, (n, f)
        assert f[f"metrics_rel/{n}"] <= RTOL, (n, f)
        assert f[f"grad_rel/{n}"] <= RTOL, (n, f)
        assert f[f"zero_leaves/{n}"] <= ZERO_LEVEL, (n, f)
        assert f[f"rest_abs/{n}"] <= 1e-6 and f[f"rest_changed/{n}"], (n, f)
        assert f[f"resharding_ops/{n}"] == 0, (n, f)


def step_temp_bytes(batch_size: int, steps: int) -> int:
    """Compiled temporaries of the loop's own train step (jit_train_step), lowered on abstract
    state and batch: nothing is allocated."""
    from vatt import config_files
    from vatt.bench.step import batch_shapes
    from vatt.parallel.mesh import batch_sharding, make_mesh
    from vatt.tasks import build_task
    from vatt.train.optimizer import build_optimizer
    from vatt.train.state import create_train_state
    from vatt.train.step import jit_train_step, step_controls

    config = config_files.load(SPEC, {"batch_size": batch_size, "accumulation_steps": steps})
    mesh = make_mesh(-1)
    with jax.set_mesh(mesh):
        task = build_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, sharding = create_train_state(task, tx, mesh, config.seed,
                                                       abstract=True)
        step = jit_train_step(config, task, graphdef, tx, sharding, mesh)
        batch = {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sharding(mesh))
                 for k, s in batch_shapes(config).items()}
        compiled = step.lower(state, batch, step_controls(config, schedule, mesh)).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def test_one_device_chunks_equal_the_big_batch():
    figures = compare_to_big_batch(batch_size=32)
    print(figures)
    check_figures(figures)
    # The step's differentiating half alone already shrinks with N.
    assert figures["temp_bytes/8"] < figures["temp_bytes/4"] < figures["temp_bytes/1"]


def test_step_temporaries_fall_about_n_fold():
    # Batch 32 of the tiny model: activations dominate the step's temporaries (measured
    # 35.2 MiB at N=1, 6.9 MiB at N=8); gradients and Adam's temporaries do not shrink.
    one, eight = step_temp_bytes(32, 1), step_temp_bytes(32, 8)
    print(f"train step temporaries, batch 32: N=1 {one / 2**20:.2f} MiB, N=8 "
          f"{eight / 2**20:.2f} MiB ({eight / one:.3f})")
    assert eight <= one / 4


def test_eight_fake_devices_chunks_equal_the_big_batch():
    # Batch 64 on 8 devices: 8 rows per device, at N=8 one row per device per chunk.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    figures = helpers.run_python(f"""
        import json, sys
        sys.path.insert(0, {tests_dir!r})
        import jax
        from test_grad_cache import compare_to_big_batch
        assert jax.device_count() == 8
        figures = compare_to_big_batch(batch_size=64)
        print(figures, file=sys.stderr)
        print("RESULT:" + json.dumps(figures))
        """, num_devices=8)
    print(figures)
    assert figures["devices"] == 8
    check_figures(figures)


def test_loop_trains_with_accumulation_and_matches_the_first_loss(one_device_runs, tmp_path):
    """pretrain:tiny,runlocal (DropToken 50%, one permutation per batch) through
    vatt.experiment.run with N=2: step 1 (initial parameters, the same batch and keys) has the
    N=1 run's loss, and training goes on."""
    from vatt import experiment
    overrides = {"total_steps": 3, "log_every_steps": 1, "eval.plots": False,
                 "optimizer.warmup_steps": 2, "accumulation_steps": 2}
    experiment.run(helpers.config(SPEC, **{k.replace(".", "__"): v
                                           for k, v in overrides.items()}),
                   str(tmp_path), plots=False, tensorboard=False)
    losses = helpers.train_values(str(tmp_path))
    reference = helpers.train_values(one_device_runs["default"])
    assert sorted(losses) == [1, 2, 3] and all(np.isfinite(list(losses.values())))
    assert losses[1] == pytest.approx(reference[1], rel=RTOL)


@pytest.mark.parametrize("overrides, devices, message", [
    ({"accumulation_steps": 0}, 1, "config.accumulation_steps=0 must be an integer >= 1"),
    ({"accumulation_steps": 4}, 8, "config.batch_size=16 is not divisible by 8 devices x 4 "
                                   "accumulation steps"),
])
def test_bad_accumulation_is_refused_at_start(overrides, devices, message):
    from vatt.config_validation import ConfigError, validate
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(helpers.config(SPEC, **overrides), devices)
    validate(helpers.config(SPEC, accumulation_steps=2), 8)  # 16 = 8 devices x 2 chunks


def test_accumulation_is_a_key_of_every_pretraining_config_and_refused_for_finetuning():
    from configs import pretrain
    from vatt.config_validation import ConfigError, validate
    for variant in pretrain.VARIANTS:
        assert helpers.config(f"pretrain:{variant}").accumulation_steps == 1
    with pytest.raises(ConfigError, match="for pretraining only; task 'finetune' needs 1"):
        validate(helpers.config("finetune:synthetic,runlocal", accumulation_steps=2), 1)


def test_benchmark_accumulation_cases_and_summary():
    from vatt.bench import suite
    cases = suite.accumulation_cases(["tiny", "bbs"], STEPS)
    assert [(c.variant, c.accumulation) for c in cases] == [
        (v, n) for v in ("tiny", "bbs") for n in STEPS]
    assert all(c.group == "accumulation" for c in cases)
    assert {c.batch_per_device for c in cases if c.variant == "tiny"} == {64}
    assert {c.batch_per_device for c in cases if c.variant == "bbs"} == {8}  # every N divides
    assert cases[1].name.endswith(" acc=2") and "acc=" not in cases[0].name
    rows = [{"group": "accumulation", "accumulation": n, "temp_bytes": 800 // n,
             "first_loss": 2.0} for n in STEPS]
    out = suite.summarize(rows)
    assert out["accumulation_temp_ratio"] == {1: 1.0, 2: 0.5, 4: 0.25, 8: 0.125}
    assert out["accumulation_loss_rel_diff"] == {n: 0.0 for n in STEPS}


def test_strided_chunks_and_per_example_randomness_do_not_depend_on_the_chunk():
    from flax import nnx

    from vatt.models import row_random
    from vatt.models.droptoken import drop_tokens
    from vatt.train.grad_cache import chunk, unchunk

    x = jnp.arange(24 * 3, dtype=jnp.float32).reshape(24, 3)
    parts = [chunk(x, 4, jnp.int32(i)) for i in range(4)]
    np.testing.assert_array_equal(parts[1], x[1::4])  # rows 1, 5, 9, ...
    np.testing.assert_array_equal(unchunk(jnp.stack(parts)), x)

    key, rows = jax.random.key(0), jnp.arange(24, dtype=jnp.int32)
    tokens = jnp.ones((24, 10, 4))
    whole = row_random.dropout(nnx.Dropout(0.5), tokens, deterministic=False,
                               key=row_random.RowKeys(key, rows))
    seq = jax.random.normal(jax.random.key(1), (24, 10, 4))
    kept = drop_tokens(seq, 0.5, row_random.RowKeys(key, rows), "sample")  # [24, 5, 4]
    for i in range(4):
        sub = row_random.RowKeys(key, chunk(rows, 4, jnp.int32(i)))
        np.testing.assert_array_equal(
            row_random.dropout(nnx.Dropout(0.5), tokens[i::4], deterministic=False, key=sub),
            whole[i::4])
        np.testing.assert_array_equal(drop_tokens(seq[i::4], 0.5, sub, "sample"), kept[i::4])
    assert 0.3 < float(jnp.mean(whole == 0)) < 0.7  # it does drop
    # Clips keep different token subsets ("sample"), each in its original order.
    assert not np.array_equal(kept[0], kept[1]) and kept.shape == (24, 5, 4)
    # A plain key keeps today's behaviour: one draw for the whole batch.
    np.testing.assert_array_equal(
        row_random.dropout(nnx.Dropout(0.5), tokens, deterministic=False, key=key),
        nnx.Dropout(0.5)(tokens, deterministic=False, rngs=key))


if __name__ == "__main__":  # the figures alone: python tests/test_grad_cache.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(compare_to_big_batch(int(sys.argv[1]) if len(sys.argv) > 1 else 32))
