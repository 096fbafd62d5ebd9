"""Multi-process (multi-host) JAX initialisation.

Call `initialize()` once per process, before any other JAX call (before jax.devices(), before
creating arrays), when running more than one process. After it, jax.devices() lists the devices
of all processes, jax.process_index()/process_count() identify this process, and a jit over a
Mesh built from jax.devices() runs SPMD across all of them; the global batch of every loss is the
batch over all hosts (assemble it with jax.make_array_from_process_local_data).

Arguments, in order of precedence:
  1. explicit arguments;
  2. environment variables VATT_COORDINATOR_ADDRESS ("host:port" of process 0),
     VATT_NUM_PROCESSES, VATT_PROCESS_ID (what launch/local.py sets);
  3. nothing: jax.distributed.initialize() auto-detects the cluster (Cloud TPU, Slurm, Open MPI,
     ... see jax._src.clusters) and fills in whatever is still missing.
On CPU, cross-process collectives need an implementation: we select "gloo" (jax's option
`jax_cpu_collectives_implementation`; already the default in jax 0.10, set explicitly so older
defaults or a user's None do not silently give single-process collectives).
"""

from __future__ import annotations

import logging
import os

import jax

ENV_COORDINATOR = "VATT_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "VATT_NUM_PROCESSES"
ENV_PROCESS_ID = "VATT_PROCESS_ID"

_log = logging.getLogger(__name__)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from e


def _enable_cpu_collectives() -> None:
    """Selects gloo for CPU cross-process collectives unless mpi was chosen explicitly."""
    current = jax.config.values.get("jax_cpu_collectives_implementation")
    if current not in ("gloo", "mpi"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *,
               local_device_ids: list[int] | None = None,
               initialization_timeout: int = 300) -> None:
    """Initialises jax.distributed (explicit args > VATT_* env vars > cluster auto-detection).

    Args:
      coordinator_address: "host:port" of process 0's coordinator service.
      num_processes: total number of processes.
      process_id: this process's index in [0, num_processes).
      local_device_ids: optional restriction of this process's visible devices.
      initialization_timeout: seconds to wait for all processes to connect.
    Calling it again after a successful initialisation is a no-op. Raises ValueError if
    num_processes/process_id are inconsistent.
    """
    if jax.distributed.is_initialized():
        _log.info("jax.distributed already initialised; skipping")
        return
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if (num_processes is not None and process_id is not None
            and not 0 <= process_id < num_processes):
        raise ValueError(f"process_id {process_id} not in [0, {num_processes})")

    _enable_cpu_collectives()
    # Missing values (None) are auto-detected by jax from the cluster environment.
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )
    _log.info("jax.distributed initialised: process %d of %d, %d local / %d global devices",
              jax.process_index(), jax.process_count(), jax.local_device_count(),
              jax.device_count())


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Waits until every process reaches `name` (no-op with one process).

    Through the coordination service (jax.distributed's client), not a device collective:
    it is what to call before the first collective of a program that processes may have
    finished compiling at very different times. With the persistent compilation cache on,
    process 0 reads a program from the cache while the others (whose cache keys differ on CPU,
    and which never write the cache) compile it; gloo gives a process 30 s to join a new
    collective context, and a loaded machine exceeds that. Names must be unique per call
    site and step (the service refuses to reuse a barrier).
    """
    if jax.process_count() == 1:
        return
    # The distributed client is not public API; jax uses it the same way for its own
    # barriers (jax.experimental.array_serialization).
    from jax._src import distributed as jax_distributed
    client = jax_distributed.global_state.client
    if client is None:
        return
    client.wait_at_barrier(f"vatt:{name}", timeout_in_ms=timeout_s * 1000)


def shutdown() -> None:
    """Shuts jax.distributed down if it was initialised (optional; jax also does it at exit)."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
