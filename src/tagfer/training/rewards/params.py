"""Checks for reward parameters read from YAML (``rl.rewards[i].params``).

Each check returns the value (converted where harmless) or raises :class:`tagfer.core.config.ConfigError`
naming the reward, the key, the value and what was expected.
"""

from __future__ import annotations

import math

from tagfer.core.config import ConfigError


def param_error(reward: str, key: str, value: object, expected: str) -> ConfigError:
    """The error for ``params.<key>`` of reward ``reward``: what arrived and what was expected."""
    return ConfigError(f"reward {reward!r}: params.{key}={value!r}, expected {expected}")


def number(reward: str, key: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite real number in ``[low, high]`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise param_error(reward, key, value, f"a finite number in [{low:g}, {high:g}]")
    return float(value)


def positive_int(reward: str, key: str, value: object, *, optional: bool = False) -> int | None:
    """An int ≥ 1 (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise param_error(reward, key, value, "a positive integer" + (" or null" if optional else ""))
    return value


def choice(reward: str, key: str, value: object, options: tuple) -> object:
    """One of ``options``."""
    if value not in options:
        raise param_error(reward, key, value, f"one of {list(options)}")
    return value


def flag(reward: str, key: str, value: object, *, optional: bool = False) -> bool | None:
    """A boolean (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise param_error(reward, key, value, "true or false" + (" or null" if optional else ""))
    return value
