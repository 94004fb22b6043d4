"""A worker's optional module-level settings: RESTART, BACKOFF, STOP_TIMEOUT.

Validation is pure: it takes the module's namespace and returns a frozen ``Settings``
or raises ``SettingsError`` naming the setting and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

__all__ = ["Backoff", "Settings", "SettingsError", "NAMES", "parse", "differences", "describe"]

RESTART_POLICIES = ("always", "on-failure", "never")
NAMES = ("RESTART", "BACKOFF", "STOP_TIMEOUT")


class SettingsError(ValueError):
    """A setting has a wrong type or value; ``name`` is the module-level name at fault."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Backoff:
    """Restart delays: the n-th consecutive restart waits min(max, initial * factor**(n-1)),
    scaled by a random factor in [1 - jitter, 1]. After ``fatal_after`` consecutive
    failures without a run longer than ``max`` seconds, the worker is given up on."""

    initial: float = 0.5
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.5
    fatal_after: int = 10


@dataclass(frozen=True)
class Settings:
    restart: str = "always"
    backoff: Backoff = field(default_factory=Backoff)
    stop_timeout: float = 5.0


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(name, f"must be a number, not {type(value).__name__} {value!r}")
    return float(value)


def _backoff(value: Any) -> Backoff:
    if not isinstance(value, Mapping):
        raise SettingsError("BACKOFF", f"must be a dict, not {type(value).__name__} {value!r}")
    allowed = [f.name for f in fields(Backoff)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise SettingsError("BACKOFF", f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
    values: dict[str, Any] = {key: _number(f"BACKOFF[{key!r}]", raw) for key, raw in value.items()}
    checks = {
        "initial": (lambda v: v > 0, "must be > 0"),
        "factor": (lambda v: v >= 1, "must be >= 1"),
        "max": (lambda v: v > 0, "must be > 0"),
        "jitter": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        "fatal_after": (lambda v: v >= 1 and v == int(v), "must be a whole number >= 1"),
    }
    for key, number in values.items():
        ok, rule = checks[key]
        if not ok(number):
            raise SettingsError(f"BACKOFF[{key!r}]", f"{rule}, got {value[key]!r}")
    if "fatal_after" in values:
        values["fatal_after"] = int(values["fatal_after"])
    return replace(Backoff(), **values)


def parse(namespace: Mapping[str, Any], defaults: Settings = Settings()) -> Settings:
    """Settings from a module's namespace; names it does not define keep ``defaults``."""
    result = defaults
    if "RESTART" in namespace:
        restart = namespace["RESTART"]
        if restart not in RESTART_POLICIES:
            choices = ", ".join(repr(p) for p in RESTART_POLICIES)
            raise SettingsError("RESTART", f"must be one of {choices}, got {restart!r}")
        result = replace(result, restart=restart)
    if "BACKOFF" in namespace:
        partial = _backoff(namespace["BACKOFF"])
        given = {key: getattr(partial, key) for key in namespace["BACKOFF"]}
        result = replace(result, backoff=replace(defaults.backoff, **given))
    if "STOP_TIMEOUT" in namespace:
        timeout = _number("STOP_TIMEOUT", namespace["STOP_TIMEOUT"])
        if timeout <= 0:
            raise SettingsError("STOP_TIMEOUT", f"must be > 0, got {namespace['STOP_TIMEOUT']!r}")
        result = replace(result, stop_timeout=timeout)
    return result


def differences(settings: Settings, defaults: Settings) -> dict[str, Any]:
    """The settings that differ from ``defaults``, by their module-level names."""
    diff: dict[str, Any] = {}
    if settings.restart != defaults.restart:
        diff["RESTART"] = settings.restart
    changed = {
        f.name: getattr(settings.backoff, f.name)
        for f in fields(Backoff)
        if getattr(settings.backoff, f.name) != getattr(defaults.backoff, f.name)
    }
    if changed:
        diff["BACKOFF"] = changed
    if settings.stop_timeout != defaults.stop_timeout:
        diff["STOP_TIMEOUT"] = settings.stop_timeout
    return diff


def describe(settings: Settings, defaults: Settings) -> str:
    """The differences as the summary and ``hotreload list`` show them: ``RESTART='never' ...``."""
    return " ".join(f"{key}={value!r}" for key, value in differences(settings, defaults).items())
