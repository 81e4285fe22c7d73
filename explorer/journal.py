"""Maps that remember what changed since they were last asked: the model's checkpoints are these changes.

A checkpoint that copied the model's whole state would cost memory in proportion to the state at every checkpoint,
so a recording holding a million live PASIDs would pay a million entries per checkpoint. A `Journal` notes, at the
first write to a key since the last `changes()`, what that key held before; `changes()` then gives the keys whose
value is now another one (`MISSING` where the key is gone), and starts again. It gives them as one flat tuple
(key, value, key, value...): 16 bytes an entry, where a dict of them took about 80 (a million new PASIDs between
two checkpoints are a million entries). A checkpoint keeps those changes
only: its cost is the writes since the one before, whatever the size of the state.
"""

from __future__ import annotations

from collections import deque
from itertools import chain, compress, repeat
from operator import is_not
from typing import Any

Changes = tuple[Any, ...]  # what `Journal.changes()` gives: key, value, key, value...
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()


class Journal(dict):  # type: ignore[type-arg]
    """A dict that notes each key written since the last `changes()`, with the value it held before (reads stay
    the dict's own). `copy()` is a plain dict: what a checkpoint or a replayer holds reports nothing. Until
    `start()` (or with `keep` true) it notes nothing, so a model that takes no checkpoints pays nothing for it."""

    __slots__ = ("_before",)

    def __init__(self, items: dict[Any, Any] | None = None, *, keep: bool = True) -> None:
        super().__init__()
        self._before: dict[Any, Any] | None = {} if keep else None
        if items:
            for key, value in items.items():
                self[key] = value

    def gone(self, key: Any, old: Any) -> None:
        """`key`, which held `old`, was deleted or popped: remember `old` as its value at the last checkpoint,
        unless it has been written since (a subclass may do more: `intervals.Tracked` closes an interval)."""
        before = self._before
        if before is not None and key not in before:
            before[key] = old

    def came_and_went(self, keys: list[Any]) -> None:
        """`keys`, each absent, were each written and then deleted, in this order: noted as writing and deleting
        them would have noted them (the page-request groups the model settles a batch at a time)."""
        before = self._before
        if before is not None:  # (setdefault: a key noted since keeps what it held, and its place)
            deque(map(before.setdefault, keys, repeat(MISSING)), 0)

    def start(self) -> None:
        """Note changes from now on."""
        if self._before is None:
            self._before = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        before = self._before
        if before is not None and key not in before:
            before[key] = dict.get(self, key, MISSING)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self.gone(key, dict.pop(self, key))

    def pop(self, key: Any, default: Any = MISSING) -> Any:
        value = dict.pop(self, key, MISSING)
        if value is MISSING:
            if default is MISSING:
                raise KeyError(key)
            return default
        self.gone(key, value)
        return value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def popitem(self) -> tuple[Any, Any]:
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self):
            del self[key]

    def copy(self) -> dict[Any, Any]:
        return dict(self)

    def changes(self) -> Changes:
        """Keys whose value is another one than at the last call (MISSING: gone), and forget them."""
        before = self._before
        if not before:  # (most maps, between two checkpoints)
            return ()
        keys = list(before)  # (in C a step at a time: a checkpoint's notes are a hundred thousand at 1M events)
        nows = list(map(dict.get, repeat(self), keys, repeat(MISSING)))
        out = tuple(chain.from_iterable(compress(zip(keys, nows, strict=True), map(is_not, nows, before.values()))))
        self._before = {}
        return out

    @property
    def pending(self) -> int:
        """Keys written since the last `changes()`: what the next one will cost at most."""
        return len(self._before) if self._before is not None else 0


def apply_changes(target: dict[Any, Any], changes: Changes) -> None:
    """Bring a plain dict from one checkpoint's values to the next's."""
    pairs = iter(changes)
    for key, value in zip(pairs, pairs, strict=True):
        if value is MISSING:
            target.pop(key, None)
        else:
            target[key] = value
