"""Durations and sizes as config values: ``Duration`` (seconds) and ``Size`` (bytes), the parsers
that accept ``"500ms"`` or ``"64KiB"``, and the msgspec ``dec_hook`` that applies them. Every
component's config struct uses these; this module imports nothing of ours."""

from __future__ import annotations

import re


class Duration(float):
    """Seconds. Config accepts a number of seconds or a string with a unit: "500ms", "3s", "10m"."""


class Size(int):
    """Bytes. Config accepts a number of bytes or a string with a unit: "64KiB", "2MiB", "1GiB"."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> Duration:
    """Seconds from a number or a string such as "500ms", "3s", "1.5m"; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration such as 5, "500ms" or "3s", got {value!r}')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return Duration(value)
    if isinstance(value, str):
        match = _QUANTITY.match(value)
        if match:
            unit = match.group(2).lower() or "s"
            if unit in _DURATION_UNITS:
                return Duration(float(match.group(1)) * _DURATION_UNITS[unit])
    raise ValueError(f'expected a duration such as 5, "500ms", "3s" or "10m", got {value!r}')


def parse_size(value: object) -> Size:
    """Bytes from a number or a string such as "64KiB", "2MiB"; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f'expected a size such as 65536 or "64KiB", got {value!r}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value!r}")
        return Size(value)
    if isinstance(value, str):
        match = _QUANTITY.match(value)
        if match:
            unit = match.group(2).lower() or "b"
            if unit in _SIZE_UNITS:
                return Size(int(float(match.group(1)) * _SIZE_UNITS[unit]))
    raise ValueError(f'expected a size such as 65536, "64KiB", "2MiB" or "1GiB", got {value!r}')


def config_dec_hook(type_: type, obj: object) -> object:
    """msgspec ``dec_hook`` that turns config values into ``Duration`` and ``Size``."""
    if type_ is Duration:
        return parse_duration(obj)
    if type_ is Size:
        return parse_size(obj)
    raise NotImplementedError(f"no config conversion for {type_!r}")
