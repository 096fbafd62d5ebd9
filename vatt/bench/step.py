"""One benchmark case: the loop's own train step (vatt.train.step.jit_train_step,
vatt.train.state.create_train_state, compile_with_memory_check) on synthetic input already on the devices.

No TensorFlow here: the model benchmark runs on a GPU machine without it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vatt import config_files
from vatt.models import summary
from vatt.parallel import mesh as mesh_lib
from vatt.tasks import build_task
from vatt.train.optimizer import build_optimizer
from vatt.train.state import create_train_state
from vatt.train.step import (OutOfMemoryError, StepControls, compile_with_memory_check,
                             jit_train_step, step_controls)

# The shipped pretraining config (vatt.config_files finds it in a checkout and when installed).
CONFIG_FILE = "pretrain"


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the table.

    variant: a configs/pretrain.py variant (tiny, bbs, mbs, lbs).
    batch_per_device: clips per device; 0 = the largest that the compiled step fits (accelerators).
    keep: DropToken keep rate on video and audio (None: the config's, 0.5 for the paper variants).
    layers: override of every encoder's num_layers (0: the config's).
    group: what the row compares ("droptoken", "dtype", "remat", "attention", "config",
      "accumulation").
    accumulation: config.accumulation_steps (contrastive gradient accumulation, GradCache).
    """
    variant: str
    batch_per_device: int = 1
    keep: float | None = None
    dtype: str = "float32"
    remat: str = "none"
    attention: str = "xla"
    layers: int = 0
    group: str = "config"
    accumulation: int = 1

    @property
    def name(self) -> str:
        keep = "cfg" if self.keep is None else f"{round(self.keep * 100)}%"
        layers = f" L{self.layers}" if self.layers else ""
        acc = f" acc={self.accumulation}" if self.accumulation > 1 else ""
        return (f"{self.variant}{layers} keep={keep} {self.dtype} remat={self.remat} "
                f"attn={self.attention}{acc}")


def case_config(case: Case, batch_per_device: int, num_devices: int,
                config_file: str = CONFIG_FILE) -> ml_collections.ConfigDict:
    """The pretraining config of `case` (config_file: a config file or shipped name) with its
    overrides applied."""
    config = config_files.load(f"{config_file}:{case.variant}")
    config.batch_size = batch_per_device * num_devices
    config.accumulation_steps = case.accumulation
    model = config.model
    model.dtype = case.dtype
    model.remat_policy = case.remat
    model.attention_impl = case.attention
    # The fused (cudnn) kernel cannot drop attention probabilities: the official 0.1 of the
    # paper variants would send training through the written-out attention. Every case runs
    # without it, so that xla and cudnn rows run the same computation (their losses are
    # compared) and the figures stay comparable with those measured before it existed.
    model.attention_dropout_rate = 0.0
    if case.keep is not None:
        model.video.droptoken_keep = case.keep
        model.audio.droptoken_keep = case.keep
    if case.layers:
        for group in ("video", "audio", "text", "shared"):
            if group in model:
                model[group].num_layers = case.layers
    return config


def batch_shapes(config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
    """Global batch shapes of the pretraining step (SPEC batch format)."""
    b, m = config.batch_size, config.model
    k = config.data.num_captions
    return {"video": jax.ShapeDtypeStruct((b, *m.video.input_size, 3), jnp.float32),
            "audio": jax.ShapeDtypeStruct((b, m.audio.input_samples), jnp.float32),
            "text": jax.ShapeDtypeStruct((b, k, m.text.max_len), jnp.int32),
            "text_mask": jax.ShapeDtypeStruct((b, k), jnp.float32)}


def synthetic_batch(config: ml_collections.ConfigDict, mesh, seed: int = 0
                    ) -> dict[str, jax.Array]:
    """Random inputs generated on the devices, sharded as the loop shards batches: the step
    under test never waits for a host transfer."""
    shapes = batch_shapes(config)
    vocab = config.model.text.vocab_size

    def make():
        kv, ka, kt = jax.random.split(jax.random.key(seed), 3)
        return {"video": jax.random.uniform(kv, shapes["video"].shape, jnp.float32, -1.0, 1.0),
                "audio": 0.1 * jax.random.normal(ka, shapes["audio"].shape, jnp.float32),
                "text": jax.random.randint(kt, shapes["text"].shape, 1, vocab, jnp.int32),
                "text_mask": jnp.ones(shapes["text_mask"].shape, jnp.float32)}

    return jax.jit(make, out_shardings=mesh_lib.batch_sharding(mesh))()


def _flops(cost: Any) -> float:
    """cost_analysis() is a dict on current jax, a list of dicts (one per program) on older."""
    if isinstance(cost, (list, tuple)):
        return float(sum(c.get("flops", 0.0) for c in cost))
    return float(cost.get("flops", 0.0)) if cost else 0.0


def abstract_step_flops(config: ml_collections.ConfigDict, mesh) -> float:
    """Global FLOPs of one step from the lowered (not compiled) step on abstract state and
    batch: used for the model FLOPs of a rematerialised case (without remat recomputation)."""
    task = build_task(config)
    tx, schedule = build_optimizer(config.optimizer, config.total_steps)
    graphdef, state, sharding = create_train_state(task, tx, mesh, config.seed, abstract=True)
    step_fn = jit_train_step(config, task, graphdef, tx, sharding, mesh)
    controls = StepControls(schedule, np.int32(-1))  # abstract use: host numbers do
    return _flops(step_fn.lower(state, batch_shapes(config), controls).cost_analysis())


def largest_batch(step_fn, state, controls, config, mesh, limit: int = 1024,
                  memory_bytes: int | None = None) -> int:
    """Largest power-of-two clips per device (at most `limit`) whose compiled step fits a
    device's memory (compile_with_memory_check's analysis; nothing runs). 0 if not even one
    fits. memory_bytes: the per-device budget (default: what the device reports)."""
    n = mesh.size
    best, bpd = 0, 1
    while bpd <= limit:
        cfg = ml_collections.ConfigDict(config.to_dict())
        cfg.batch_size = bpd * n
        sharding = mesh_lib.batch_sharding(mesh)
        abstract = {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)
                    for k, s in batch_shapes(cfg).items()}
        try:
            compile_with_memory_check(step_fn, state, abstract, controls, verbose=False,
                                      limit_bytes=memory_bytes)
        except OutOfMemoryError:
            break
        best, bpd = bpd, bpd * 2
    return best


def run_case(case: Case, reps: int = 3, warmup: int = 1, config_file: str = CONFIG_FILE,
             batch_cache: dict | None = None, memory_bytes: int | None = None
             ) -> dict[str, Any]:
    """Compiles and times the train step of `case`.

    memory_bytes: per-device memory budget of the largest-batch search (batch_per_device 0;
    default: what the accelerator reports; required on CPU, which reports none) and of the
    compiled step's pre-check.

    Returns a row: step_s (median of `reps` blocked steps after `warmup`), steps_per_s,
    clips_per_s, flops_per_step (model FLOPs, global: compiled cost analysis x devices, or for a
    remat case the same step without remat; for an accumulated case the same step at
    accumulation 1), hw_flops_per_step (what the compiled step runs, remat recomputation
    included; XLA counts a loop body once, so an accumulated step's figure is not N passes),
    temp_bytes (the compiled step's temporaries per device: memory_analysis), need_bytes (state,
    batch and temporaries per device: what the pre-check compares with the budget), flops_3x_forward (cross-check: 3 x summary.forward_gflops),
    achieved_flops (model FLOPs / step_s), compile_s, loss, and the case's settings.
    """
    mesh = mesh_lib.make_mesh(-1)
    n = mesh.size
    with jax.set_mesh(mesh):
        config = case_config(case, max(case.batch_per_device, 1), n, config_file)
        task = build_task(config)
        tx, schedule = build_optimizer(config.optimizer, config.total_steps)
        graphdef, state, state_sharding = create_train_state(task, tx, mesh, config.seed)
        step_fn = jit_train_step(config, task, graphdef, tx, state_sharding, mesh)
        controls = step_controls(config, schedule, mesh)
        bpd = case.batch_per_device
        if bpd == 0:
            key = (case.variant, case.dtype, case.remat, case.attention, case.layers)
            cache = batch_cache if batch_cache is not None else {}
            if key not in cache:
                if memory_bytes is None and jax.devices()[0].platform == "cpu":
                    raise ValueError("--batch_per_device=0 (largest that fits) needs a memory "
                                     "budget: on CPU give --batch_per_device or "
                                     "--device_memory_gib")
                # Probe at keep 100%, the most memory, so every keep rate runs the same batch.
                probe = dataclasses.replace(case, keep=1.0)
                pcfg = case_config(probe, 1, n, config_file)
                ptask = build_task(pcfg)
                pgraph, pstate, pshard = create_train_state(ptask, tx, mesh, pcfg.seed,
                                                            abstract=True)
                pstep = jit_train_step(pcfg, ptask, pgraph, tx, pshard, mesh)
                cache[key] = largest_batch(pstep, pstate, controls, pcfg, mesh,
                                           memory_bytes=memory_bytes)
                del pstate
            bpd = cache[key]
            if bpd == 0:
                raise OutOfMemoryError(f"{case.name}: one clip per device does not fit")
            config.batch_size = bpd * n
        batch = synthetic_batch(config, mesh)
        t = time.perf_counter()
        compiled = compile_with_memory_check(step_fn, state, batch, controls, verbose=False,
                                             limit_bytes=memory_bytes)
        compile_s = time.perf_counter() - t
        hw_flops = _flops(compiled.cost_analysis()) * n  # cost analysis is per device (SPMD)
        mem = compiled.memory_analysis()
        temp_bytes = int(mem.temp_size_in_bytes)
        need_bytes = int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                         + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
        if case.remat == "none" and case.accumulation == 1:
            model_flops = hw_flops
        else:
            plain = ml_collections.ConfigDict(config.to_dict())
            plain.model.remat_policy = "none"
            plain.accumulation_steps = 1
            model_flops = abstract_step_flops(plain, mesh)
        state, metrics = compiled(state, batch, controls)
        # Step 1 on the initial parameters: what the xla-vs-cudnn numerics comparison reads.
        first = {k: float(np.asarray(v)) for k, v in jax.device_get(
            {k: metrics[k] for k in ("train/loss", "train/grad_norm")}).items()}
        for _ in range(warmup - 1):
            state, metrics = compiled(state, batch, controls)
        jax.block_until_ready((state, metrics))
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            state, metrics = compiled(state, batch, controls)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - t)
        loss = float(np.asarray(jax.device_get(metrics["train/loss"])))
        grad_norm = float(np.asarray(jax.device_get(metrics["train/grad_norm"])))
    step_s = statistics.median(times)
    fwd = summary.forward_gflops(config.model, batch_size=1) * 1e9 * config.batch_size
    return {
        "name": case.name, "group": case.group, "variant": case.variant,
        "layers": case.layers, "keep": case.keep if case.keep is not None else
        float(config.model.video.droptoken_keep), "dtype": case.dtype, "remat": case.remat,
        "attention": case.attention, "accumulation": case.accumulation, "devices": n,
        "batch_per_device": bpd, "temp_bytes": temp_bytes, "need_bytes": need_bytes,
        "global_batch": config.batch_size, "reps": reps, "step_s": step_s,
        "step_s_min": min(times), "steps_per_s": 1.0 / step_s,
        "clips_per_s": config.batch_size / step_s, "flops_per_step": model_flops,
        "hw_flops_per_step": hw_flops, "flops_3x_forward": 3.0 * fwd,
        "achieved_flops": model_flops / step_s, "compile_s": compile_s, "loss": loss,
        "grad_norm": grad_norm, "first_loss": first["train/loss"],
        "first_grad_norm": first["train/grad_norm"],
    }
