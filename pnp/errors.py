"""User-facing errors: one clear message, no traceback (the entry points catch them)."""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """A bad configuration value, a missing file or an impossible setting."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def check_nonnegative(name: str, value: float) -> float:
    """A finite, non-negative number (noise levels, regularisation weights)."""
    check(
        isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number >= 0, got {value!r}",
    )
    return float(value)


def check_positive(name: str, value: float) -> float:
    """A finite, strictly positive number (step sizes, tolerances)."""
    check(
        isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
        f"{name} must be a finite number > 0, got {value!r}",
    )
    return float(value)
