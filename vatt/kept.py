"""A small process-wide table of the last few functions made per key (jitted steps and
evaluation functions), so that a later run in the same process reuses what an earlier one
traced and compiled instead of doing it again."""

from __future__ import annotations

import collections
from typing import Any, Callable, Hashable


class KeptFunctions:
    """The functions made for the last `size` keys, the least recently used dropped first."""

    def __init__(self, size: int):
        self._size = size
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The function kept for `key`, or make()'s, kept from now on."""
        if key in self._items:
            self._items.move_to_end(key)
        else:
            self._items[key] = make()
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return self._items[key]

    def clear(self) -> None:
        self._items.clear()
