"""Batches rendered on the host and put on the devices by a background thread, so the step never
waits for the host; the thread ends (and releases its device buffers) when the loop closes it."""

from __future__ import annotations

import queue
import threading
from typing import Any

import jax
from jax.sharding import Mesh

from vatt.parallel.mesh import host_to_global

_END = object()


class Prefetcher:
    """Iterates (global batch, stream state after it) from a task's data stream: the state that
    a checkpoint taken after this batch's step must record.

    size: batches held ready on the devices. Use as a context manager, or call close(): the
    worker stops at its next put, the queue is emptied (freeing device buffers) and the
    thread is joined. An exception in the worker is raised in the consumer, never swallowed.
    """

    def __init__(self, stream, mesh: Mesh, size: int = 2):
        self._stream, self._mesh = stream, mesh
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="vatt-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Blocks until there is room or close() was called; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for host_batch in self._stream:
                if self._stop.is_set():
                    return
                item = (host_to_global(host_batch, self._mesh), self._stream.get_state())
                if not self._put(item):
                    return
        except BaseException as e:  # surfaced in the consumer
            self._put(e)
            return
        self._put(_END)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> tuple[dict[str, jax.Array], dict]:
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stops the worker, drops the batches it had ready and waits for it to end."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)
        while not self._queue.empty():
            self._queue.get_nowait()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
