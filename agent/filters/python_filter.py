"""``python``: call a user function on each batch (or each record).

``function = "module:function"`` is imported at start (``path`` is added to ``sys.path``
first). Batch mode: ``f(records: list[dict]) -> list[dict]``. ``per_record = true``:
``f(record: dict) -> dict | None`` (None drops the record). An exception, or a result of the
wrong type, is counted and the batch (or record) passes through as it came; the traceback is
logged at most once per ``log_interval``.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import own_nested
from common.units import Duration


class PythonConfig(FilterConfig, tag_field="type", tag="python"):
    function: str
    """``"package.module:function"``, imported at start."""
    path: str | None = None
    """A directory added to ``sys.path`` before importing."""
    per_record: bool = False
    """Call the function once per record instead of once per batch."""
    log_interval: Duration = Duration(60.0)
    """Log a failure's traceback at most this often (the failures between are counted)."""


def load_function(spec: str, path: str | None) -> Callable[..., Any]:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f'function: expected "module:function", got {spec!r}')
    if path is not None and path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs user code: any error is a config error
        where = f" (path {path!r})" if path else ""
        raise ValueError(
            f"function: cannot import module {module_name!r}{where}: {type(exc).__name__}: {exc}"
        ) from None
    function: Any = module
    for name in attribute.split("."):
        function = getattr(function, name, None)
        if function is None:
            raise ValueError(f"function: module {module_name!r} has no attribute {attribute!r}")
    if not callable(function):
        raise ValueError(f"function: {spec!r} is not callable")
    return function


class PythonFilter(RecordFilter):
    def __init__(self, config: PythonConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self._function = load_function(config.function, config.path)
        self.clock: Callable[[], float] = time.monotonic
        self._logged_at: float | None = None
        self._suppressed = 0

    def _failed(self, count: int, what: str) -> None:
        self.context.metrics.inc("filter_python_errors_total", count)
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < self.config.log_interval:
            self._suppressed += count
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self.context.logger.error(
            "python filter %s: %s failed, passing records through unchanged%s\n%s",
            self.context.name,
            self.config.function,
            more,
            what,
        )
        self._logged_at = now
        self._suppressed = 0

    def apply(self, records: list[Record]) -> list[Record]:
        function = self._function
        # The user's code may change a record's nested values in place: its own copies.
        own_nested(records)
        if not self.config.per_record:
            try:
                result = function(records)
            except Exception:
                self._failed(1, traceback.format_exc())
                return records
            if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
                self._failed(1, f"returned {type(result).__name__}, expected a list of dicts")
                return records
            return result
        out: list[Record] = []
        for record in records:
            try:
                result = function(record)
            except Exception:
                self._failed(1, traceback.format_exc())
                out.append(record)
                continue
            if result is None:
                continue
            if not isinstance(result, dict):
                self._failed(1, f"returned {type(result).__name__}, expected a dict or None")
                out.append(record)
                continue
            out.append(result)
        return out
