"""Checkpoints that survive preemption, crashes and bad numbers (orbax CheckpointManager).

- The train state (model, optimizer, step, rng, non-finite counter) and the data
  stream's position are saved together, asynchronously, under <workdir>/checkpoints.
- orbax writes each checkpoint to a temporary directory and renames it only when
  complete, so a crash mid-save (SIGKILL, power loss) leaves no half-written step that
  looks finished. A finished checkpoint that is later damaged fails to restore: it is
  skipped with a message and the previous good one is used.
- A checkpoint with non-finite parameters is never written.
- Restoring targets the shardings of the current mesh, so a checkpoint saved on 8
  devices loads on 1 and the reverse.
- `load_model_tree` reads only the model of a checkpoint, without a target (for fine-tuning,
  probing and zero-shot evaluation from a pretraining run, vatt.models.transfer).
- The workdir may be gs://bucket/run (vatt.paths): orbax writes through tensorstore's GCS
  driver and, having no rename there, marks a finished checkpoint with commit_success.txt;
  listing goes through etils.epath.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from vatt import paths, weight_files
from vatt.models.transfer import flatten_tree
from vatt.parallel.mesh import fetch


def _say(message: str) -> None:
    """Messages about checkpoints go to the console of process 0 (and the log)."""
    logging.warning(message)
    if jax.process_index() == 0:
        print(message, flush=True)


def _all_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of `tree` is finite, the same answer on every process.

    Checked on the host, one replica of each shard (each process its own shards), then agreed
    between processes: a jitted reduction compiled one program per state layout, ~2 s of XLA
    for the tiny model's 277 leaves, more than the save it guards; reading the shards costs a
    device-to-host copy of the state, which the save makes anyway.
    """
    finite = True
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array):
            dtype, parts = leaf.dtype, [s.data for s in leaf.addressable_shards if s.replica_id == 0]
        else:
            dtype, parts = np.asarray(leaf).dtype, [leaf]
        if jnp.issubdtype(dtype, jnp.inexact) and not all(
                np.isfinite(np.asarray(x)).all() for x in parts):
            finite = False
            break
    # Every process gets every answer: all save (or refuse) together, orbax's save is collective.
    return bool(np.all(fetch(np.asarray([finite]))))


# Orbax splits every replicated array among its replicas so that they write it in parallel
# (each replica copies and writes 1/R of it). For an array of a few KiB that is R sliced device
# copies, each a jax op compiled once per shape, for nothing: saving the tiny model's state on 8
# devices took 4.2 s of CPU the first time and 1.6 s after (measured, 8 fake CPU devices), against
# 1.0 and 0.6 s with this threshold. Slices of at least 1 MiB (the large matrices of a real
# model) are still written in parallel; smaller arrays are written whole by replica 0.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """orbax's standard handler (what StandardSave uses, same files) with the threshold above."""
    scalar = ocp.type_handlers.ScalarHandler()
    registry = ocp.type_handlers.create_type_handler_registry(
        (int, scalar), (float, scalar), (bytes, scalar), (np.number, scalar),
        (np.ndarray, ocp.type_handlers.NumpyHandler()),
        (jax.Array, ocp.type_handlers.ArrayHandler(
            min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL)),
        (str, ocp.type_handlers.StringHandler()))
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


class Checkpointer:
    """Saves every `every_steps` steps, keeps the last `max_to_keep`, resumes the latest good one.

    read_only: only restore (a report reading a run that may still be writing): nothing in the
      directory is created, cleaned up or deleted.
    """

    def __init__(self, workdir: str, every_steps: int = 0, max_to_keep: int = 3,
                 async_save: bool = True, read_only: bool = False):
        # Absolute for a local path (tensorstore needs it), a URL stays a URL.
        self.directory = paths.join(paths.resolve(workdir), "checkpoints")
        self.every_steps = int(every_steps)
        self.read_only = read_only
        if read_only:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                                   save_interval_steps=0)
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": _state_handler(), "data": ocp.JsonCheckpointHandler()})

    def has_checkpoints(self) -> bool:
        return bool(self.manager.all_steps())

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict, int] | None:
        """(state, data_state, step) of the newest checkpoint that loads, or None.

        abstract_state: jax.ShapeDtypeStruct tree with the target shardings.
        """
        for step in sorted(self.manager.all_steps(read=True), reverse=True):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        abstract_state,
                        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
                    data=ocp.args.JsonRestore()))
            except Exception as e:  # damaged files surface as many different errors
                _say(f"Checkpoint at step {step} in {self.directory} could not be loaded "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); skipping it and "
                     "trying the previous one.")
                continue
            if not _all_finite(restored.state):
                _say(f"Checkpoint at step {step} holds non-finite values; skipping it.")
                continue
            verb = "Loading" if self.read_only else "Resuming from"
            _say(f"{verb} the checkpoint at step {step} in {self.directory}.")
            return restored.state, dict(restored.data or {}), step
        return None

    def should_save(self, step: int) -> bool:
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(self, step: int, state: Any, data_state: dict, *, force: bool = False) -> bool:
        """Starts an asynchronous save; refuses state with non-finite numbers."""
        if not _all_finite(state):
            _say(f"Not saving step {step}: the state holds non-finite values "
                 "(the last good checkpoint is kept).")
            return False
        if step in self.manager.all_steps():
            return True
        return self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(state), data=ocp.args.JsonSave(data_state)), force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_state_dir(path: str) -> str:
    """Resolves a workdir, its checkpoints/ folder, a step folder or a state folder (local or
    gs://) to the `state` directory of the newest finished checkpoint."""
    path = paths.resolve(path)
    root = epath.Path(path)
    if root.name == "state" and root.is_dir():
        return path
    if (root / "state").is_dir():
        return str(root / "state")
    ckpt_dir = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    # Orbax's own notion of finished: locally a step folder without its tmp suffix, on GCS a
    # step folder holding commit_success.txt (a half-written one has the plain name too).
    finished = ocp.path.step.checkpoint_steps(ckpt_dir) if ckpt_dir.is_dir() else []
    steps = sorted((s for s in finished if (ckpt_dir / str(s) / "state").is_dir()), reverse=True)
    if not steps:
        raise FileNotFoundError(
            f"init_from={path!r}: no finished checkpoint found (expected <workdir>/checkpoints/"
            "<step>/state, as written by a pretraining run)")
    return str(ckpt_dir / str(steps[0]) / "state")


def load_model_tree(path: str) -> dict[str, np.ndarray]:
    """Flat {"video_backbone/encoder/...": array} of a checkpoint's params and `rest` (batch-norm
    statistics, frozen embeddings). Host numpy arrays; no target shapes or shardings needed.

    path: a workdir, its checkpoints/ folder, a step folder or a state folder; or a file written
      by ``python -m vatt.export`` (.safetensors / .npz, vatt.weight_files), whose paths are the
      checkpoint's, so an exported model (or one backbone of it) is a warm start too.
    """
    if weight_files.is_weight_file(path):
        if not paths.exists(paths.resolve(path)):
            raise FileNotFoundError(f"init_from={path!r}: no such file (an exported "
                                    ".safetensors / .npz, as python -m vatt.export writes)")
        return weight_files.load(path)
    state_dir = checkpoint_state_dir(path)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(state_dir)
    flat = flatten_tree(restored.get("params", {}))
    flat.update(flatten_tree(restored.get("rest", {})))
    if not flat:
        raise ValueError(f"{state_dir} holds no model parameters (is it a vatt TrainState?)")
    return flat


class PreemptionGuard:
    """Turns a preemption notice (SIGTERM) or Ctrl-C (SIGINT) into a request to checkpoint and
    exit at a step boundary on which every process agrees (saving is collective).

    One process: a Python handler sets a flag, read every step.
    Several processes: JAX's preemption service decides (jax.distributed starts it; its notifier
    owns SIGTERM). A notice reaching any one host is propagated to all through the coordination
    service, which picks the next step every host can still reach;
    `multihost_utils.reached_preemption_sync_point(step)`, called every step, says True on every
    host at that same step. Ctrl-C becomes a notice too: the handler sends this process a
    SIGTERM, which the service's notifier receives. SLURM's `--signal=TERM@120` and Cloud TPU
    maintenance events arrive as SIGTERM, so both schedulers work unchanged.
    """

    def __init__(self):
        self._requested = False
        self._sync_point = self._uses_preemption_service()
        self._previous: dict[int, Any] = {}
        # With the preemption service, SIGTERM is the service's; installing a Python handler
        # would take it away (signal handlers are per process).
        signals = (signal.SIGINT,) if self._sync_point else (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    @staticmethod
    def _uses_preemption_service() -> bool:
        if jax.process_count() == 1:
            return False
        from jax._src import distributed as jax_distributed  # where jax keeps the service
        return jax_distributed.global_state.preemption_sync_manager is not None

    def _handle(self, signum, frame) -> None:
        if self._requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self._requested = True
        _say(f"Received {signal.Signals(signum).name}: saving a checkpoint at the end of "
             "this step, then exiting.")
        if self._sync_point:
            os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice for every host

    def requested(self, step: int = 0) -> bool:
        """Whether to checkpoint and stop after `step` (call it once per step, on every host:
        the preemption service counts the calls)."""
        if self._sync_point:
            from jax.experimental import multihost_utils
            return bool(multihost_utils.reached_preemption_sync_point(step))
        return self._requested

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
