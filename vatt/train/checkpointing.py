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
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vatt.models.transfer import flatten_tree


def _say(message: str) -> None:
    """Messages about checkpoints go to the console of process 0 (and the log)."""
    logging.warning(message)
    if jax.process_index() == 0:
        print(message, flush=True)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class Checkpointer:
    """Saves every `every_steps` steps, keeps the last `max_to_keep`, resumes the latest good one.

    read_only: only restore (a report reading a run that may still be writing): nothing in the
      directory is created, cleaned up or deleted.
    """

    def __init__(self, workdir: str, every_steps: int = 0, max_to_keep: int = 3,
                 async_save: bool = True, read_only: bool = False):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.every_steps = int(every_steps)
        self.read_only = read_only
        if read_only:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                                   save_interval_steps=0)
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
                enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def has_checkpoints(self) -> bool:
        return bool(self.manager.all_steps())

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict, int] | None:
        """(state, data_state, step) of the newest checkpoint that loads, or None.

        abstract_state: jax.ShapeDtypeStruct tree with the target shardings.
        """
        for step in sorted(self.manager.all_steps(read=True), reverse=True):
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore()))
            except Exception as e:  # damaged files surface as many different errors
                _say(f"Checkpoint at step {step} in {self.directory} could not be loaded "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); skipping it and "
                     "trying the previous one.")
                continue
            if not bool(_all_finite(restored.state)):
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
        if not bool(_all_finite(state)):
            _say(f"Not saving step {step}: the state holds non-finite values "
                 "(the last good checkpoint is kept).")
            return False
        if step in self.manager.all_steps():
            return True
        return self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=force)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def checkpoint_state_dir(path: str) -> str:
    """Resolves a workdir, its checkpoints/ folder, a step folder or a state folder to the
    `state` directory of the newest finished checkpoint."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.basename(path) == "state" and os.path.isdir(path):
        return path
    if os.path.isdir(os.path.join(path, "state")):
        return os.path.join(path, "state")
    ckpt_dir = path
    if os.path.isdir(os.path.join(path, "checkpoints")):
        ckpt_dir = os.path.join(path, "checkpoints")
    # Finished orbax steps are plain integer folders (unfinished ones carry a tmp suffix).
    steps = sorted((int(d) for d in (os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else [])
                    if re.fullmatch(r"\d+", d) and os.path.isdir(os.path.join(ckpt_dir, d, "state"))),
                   reverse=True)
    if not steps:
        raise FileNotFoundError(
            f"init_from={path!r}: no finished checkpoint found (expected <workdir>/checkpoints/"
            "<step>/state, as written by a pretraining run)")
    return os.path.join(ckpt_dir, str(steps[0]), "state")


def load_model_tree(path: str) -> dict[str, np.ndarray]:
    """Flat {"video_backbone/encoder/...": array} of a checkpoint's params and `rest` (batch-norm
    statistics, frozen embeddings). Host numpy arrays; no target shapes or shardings needed.

    path: a workdir, its checkpoints/ folder, a step folder or a state folder.
    """
    state_dir = checkpoint_state_dir(path)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(state_dir)
    flat = flatten_tree(restored.get("params", {}))
    flat.update(flatten_tree(restored.get("rest", {})))
    if not flat:
        raise ValueError(f"{state_dir} holds no model parameters (is it a vatt TrainState?)")
    return flat


class PreemptionGuard:
    """Turns SIGTERM/SIGINT into a request to checkpoint and exit at a step boundary.

    Every process must agree on the step at which it stops (saving is collective). With
    one process the flag is read every step. With several, the flags are combined by a
    cross-process all-gather every `check_every` steps, after the state of that step is
    ready: a host-side collective must not overlap the asynchronously dispatched step's
    own collectives (with gloo on CPU that corrupted FSDP all-gathers).
    """

    def __init__(self, check_every: int = 1):
        self._requested = False
        self._check_every = max(int(check_every), 1)
        self._previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame) -> None:
        if self._requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self._requested = True
        _say(f"Received {signal.Signals(signum).name}: saving a checkpoint at the end of "
             "this step, then exiting.")

    def requested(self, step: int = 0, state: Any = None) -> bool:
        if jax.process_count() == 1:
            return self._requested
        if step % self._check_every:
            return False
        from jax.experimental import multihost_utils
        jax.block_until_ready(state)
        flags = multihost_utils.process_allgather(np.asarray(self._requested, np.int32))
        return bool(np.max(flags))

    def restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
