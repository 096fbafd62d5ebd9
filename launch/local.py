"""Local multi-process launcher: N JAX processes on this machine, each with fake CPU devices.

    python launch/local.py --num_processes=2 --devices_per_process=2 -- \
        python -m vatt.main --config=configs/pretrain.py:tiny --workdir=/tmp/w

Picks a free localhost port for the jax.distributed coordinator and starts the command N times
with, for process i:
    VATT_COORDINATOR_ADDRESS=localhost:<port>  VATT_NUM_PROCESSES=N  VATT_PROCESS_ID=i
    XLA_FLAGS=<existing flags> --xla_force_host_platform_device_count=<devices_per_process>
    JAX_PLATFORMS=cpu (unless --platform='' is given), PYTHONPATH=<repo root>:...
The command must call vatt.parallel.distributed.initialize() (vatt.main does when
VATT_COORDINATOR_ADDRESS is set). Output lines are streamed with a "[pI] " prefix. If any
process fails (or --timeout passes) the others are killed; the exit status is 0 only if all
processes exit 0, otherwise the first failing process's status (or 124 on timeout).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A TCP port that was free on localhost a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def child_env(process_id: int, num_processes: int, port: int, devices_per_process: int,
              platform: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of process `process_id`."""
    env = dict(os.environ if base is None else base)
    env["VATT_COORDINATOR_ADDRESS"] = f"localhost:{port}"
    env["VATT_NUM_PROCESSES"] = str(num_processes)
    env["VATT_PROCESS_ID"] = str(process_id)
    # Replace any existing fake-device-count flag, keep the other XLA flags.
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
    env["XLA_FLAGS"] = " ".join(flags)
    if platform:
        env["JAX_PLATFORMS"] = platform
        if platform == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # so prefixed lines interleave in real time
    return env


def _pump(proc: subprocess.Popen, prefix: str, lock: threading.Lock) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        with lock:
            sys.stdout.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            sys.stdout.flush()


def _kill(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL the process groups of our still-running children."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # each child leads its own session/group
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def launch(command: list[str], num_processes: int, devices_per_process: int = 1,
           platform: str = "cpu", timeout: float | None = None, port: int | None = None) -> int:
    """Runs `command` in `num_processes` processes; returns 0 iff all succeed."""
    if not command:
        raise ValueError("no command given (put it after --)")
    port = port or free_port()
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    for i in range(num_processes):
        p = subprocess.Popen(
            command, env=child_env(i, num_processes, port, devices_per_process, platform),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True)
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p, f"[p{i}] ", lock), daemon=True)
        t.start()
        pumps.append(t)

    status = 0
    start = time.time()
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                with lock:
                    print(f"[launch] process {i} exited with {status}; stopping the others",
                          file=sys.stderr, flush=True)
                break
            if all(c == 0 for c in codes):
                break
            if timeout is not None and time.time() - start > timeout:
                status = 124
                with lock:
                    print(f"[launch] timeout after {timeout:.0f}s; stopping all processes",
                          file=sys.stderr, flush=True)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        status = 130
    finally:
        _kill(procs)
        for t in pumps:
            t.join(timeout=5.0)
    return status


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     usage="%(prog)s [options] -- command [args...]")
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1,
                        help="fake CPU devices per process (XLA_FLAGS)")
    parser.add_argument("--platform", default="cpu",
                        help="JAX_PLATFORMS for the children; '' leaves it unset")
    parser.add_argument("--timeout", type=float, default=None, help="seconds; kill all after")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    args = parser.parse_args(own)
    if not command:
        parser.error("missing command after --")
    if args.num_processes < 1 or args.devices_per_process < 1:
        parser.error("--num_processes and --devices_per_process must be >= 1")
    return launch(command, args.num_processes, args.devices_per_process, args.platform,
                  args.timeout, args.port)


if __name__ == "__main__":
    sys.exit(main())
