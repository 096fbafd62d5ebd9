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
    """Saves every `every_steps` steps, keeps the last `max_to_keep`, resumes the latest good one."""

    def __init__(self, workdir: str, every_steps: int, max_to_keep: int = 3,
                 async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.every_steps = int(every_steps)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

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
            _say(f"Resuming from the checkpoint at step {step} in {self.directory}.")
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
