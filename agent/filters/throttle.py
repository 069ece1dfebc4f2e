"""``throttle``: let at most ``rate`` records through per sliding ``window``, per key.

The window is cut into ``panes`` equal slots; a record passes when fewer than ``rate`` records
passed during the last ``panes`` slots (the current one included), so the limit holds over any
window-long span to one slot's precision. Excess records are dropped and counted. fluent-bit
averages ``rate`` per ``interval`` over ``window`` intervals with a slow start; here the limit is
a plain count per window, which is easier to reason about for audit streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.filters.base import Batch, FilterConfig, FilterContext, KeepFilter, Record
from agent.filters.common import as_text, make_getter, parse_path
from common.units import Duration


class ThrottleConfig(FilterConfig, tag_field="type", tag="throttle"):
    rate: int
    """Records allowed per window (per key)."""
    window: Duration = Duration(1.0)
    """Window length: at most ``rate`` records pass in any span this long."""
    panes: int = 10
    """Slots the window slides by."""
    key: str | None = None
    """Field path to throttle by separately (``container_id``); none: one limit for all."""
    max_keys: int = 10000
    """Distinct keys tracked at most; beyond it, the least recently seen key is forgotten."""
    print_status: bool = False
    """Log one status line per window: records passed and dropped."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate < 1:
            raise ValueError("rate must be at least 1")
        if self.window <= 0:
            raise ValueError("window must be positive")
        if self.panes < 1:
            raise ValueError("panes must be at least 1")
        if self.max_keys < 1:
            raise ValueError("max_keys must be at least 1")


class _Window:
    __slots__ = ("counts", "slot", "total")

    def __init__(self, panes: int, slot: int) -> None:
        self.counts = [0] * panes
        self.slot = slot
        self.total = 0

    def advance(self, slot: int) -> None:
        panes = len(self.counts)
        if slot - self.slot >= panes:
            self.counts = [0] * panes
            self.total = 0
        else:
            for passed in range(self.slot + 1, slot + 1):
                index = passed % panes
                self.total -= self.counts[index]
                self.counts[index] = 0
        self.slot = slot


class ThrottleFilter(KeepFilter):
    def __init__(self, config: ThrottleConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        self._pane = float(config.window) / config.panes
        self._getter = make_getter(parse_path(config.key, "key")) if config.key else None
        self._windows: dict[Any, _Window] = {}
        self._passed = 0
        self._dropped = 0
        self._status_at = self.clock()

    def _window(self, key: Any, slot: int) -> _Window:
        found = self._windows.pop(key, None)  # re-inserted: the dict stays in LRU order
        if found is None:
            window = _Window(self.config.panes, slot)
            if len(self._windows) >= self.config.max_keys:
                del self._windows[next(iter(self._windows))]
        else:
            window = found
            window.advance(slot)
        self._windows[key] = window
        return window

    def keep(self, records: list[Record]) -> list[bool]:
        now = self.clock()
        slot = int(now / self._pane)
        rate = self.config.rate
        if self._getter is None:
            window = self._window(None, slot)
            room = max(rate - window.total, 0)
            passed = min(room, len(records))
            mask = [True] * passed + [False] * (len(records) - passed)
            window.counts[slot % len(window.counts)] += passed
            window.total += passed
        else:
            getter = self._getter
            passed = 0
            mask = []
            windows: dict[Any, _Window] = {}
            for record in records:
                value = getter(record)
                key = value if value.__class__ is str else as_text(value)
                current = windows.get(key)
                if current is None:
                    current = windows[key] = self._window(key, slot)
                if current.total < rate:
                    current.total += 1
                    current.counts[slot % len(current.counts)] += 1
                    passed += 1
                    mask.append(True)
                else:
                    mask.append(False)
        self._passed += passed
        self._dropped += len(records) - passed
        if self.config.print_status:
            self._status(now)
        return mask

    def flush(self, now: float) -> list[Batch]:
        if self.config.print_status:
            self._status(now)
        return []

    def _status(self, now: float) -> None:
        if now - self._status_at < self.config.window:
            return
        self.context.logger.info(
            "throttle %s: %d passed, %d dropped in the last %.1fs (rate %d per %gs, %d keys)",
            self.context.name,
            self._passed,
            self._dropped,
            now - self._status_at,
            self.config.rate,
            self.config.window,
            len(self._windows),
        )
        self._passed = self._dropped = 0
        self._status_at = now
