"""A worker's optional module-level settings: RESTART, BACKOFF, STOP_TIMEOUT, STATE_VERSION,
AFTER, READY, WATCH, HEARTBEAT.

Validation is pure: it takes the module's namespace and returns a frozen ``Settings``
or raises ``SettingsError`` naming the setting and what is allowed. The values are the
user's objects: they are shown with ``safe.shown``, whose ``repr`` cannot raise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from hotreload import safe

__all__ = [
    "Backoff", "Settings", "SettingsError", "MAX_SECONDS", "NAMES", "READY_RULES", "parse", "differences", "describe",
    "seconds", "tcp_port",
]

RESTART_POLICIES = ("always", "on-failure", "never")
NAMES = ("RESTART", "BACKOFF", "STOP_TIMEOUT", "STATE_VERSION", "AFTER", "READY", "WATCH", "HEARTBEAT")
# When a worker counts as ready for the workers AFTER it: when its run starts, when it calls
# ctx.ready(), or when a port accepts connections on loopback ("tcp:6380").
READY_RULES = ("started", "signal", "tcp:PORT")
# The longest duration any setting or option may have: a day. Longer is a typo, and an
# infinite or huge one cannot be waited for (the platform's timers overflow).
MAX_SECONDS = 86400.0


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
    # The version of ctx.state this code expects: a reload that changes it runs migrate.
    state_version: int = 1
    after: tuple[str, ...] = ()  # the workers it starts after, and stops before
    ready: str = "started"  # one of READY_RULES, with the port for tcp
    watch: tuple[str, ...] = ()  # globs of files in the workers folder whose change restarts it
    heartbeat: float | None = None  # seconds of silence after which it is hung; None: never


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(name, f"must be a number, not {type(value).__name__} {safe.shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an int beyond any float
        return math.inf


def _seconds_range(maximum: float) -> str:
    return f"> 0 and <= {maximum:g}"


def _seconds_rule(maximum: float) -> str:
    return f"a number of seconds {_seconds_range(maximum)}"


def seconds(value: Any, maximum: float = MAX_SECONDS) -> float:
    """A duration: a number (not a bool), finite, > 0 and <= ``maximum`` seconds, as a float.

    The one rule for every duration — a worker's STOP_TIMEOUT and BACKOFF, and the command
    line's and config file's seconds. Anything else raises ``ValueError`` whose text is what
    is allowed ("a number of seconds > 0 and <= 86400"), to follow "must be".
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(_seconds_rule(maximum))
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(_seconds_rule(maximum)) from None
    if not 0 < number <= maximum:  # NaN fails this too
        raise ValueError(_seconds_rule(maximum))
    return number


def _duration(name: str, value: Any) -> float:
    number = _number(name, value)
    try:
        return seconds(number)
    except ValueError:
        raise SettingsError(name, f"must be {_seconds_range(MAX_SECONDS)} seconds, got {safe.shown(value)}") from None


def _backoff(value: Any) -> Backoff:
    if not isinstance(value, Mapping):
        raise SettingsError("BACKOFF", f"must be a dict, not {type(value).__name__} {safe.shown(value)}")
    allowed = [f.name for f in fields(Backoff)]
    unknown = sorted((safe.shown(key) for key in value if not (type(key) is str and key in allowed)))
    if unknown:
        raise SettingsError("BACKOFF", f"unknown key {unknown[0]}; allowed keys: {', '.join(allowed)}")
    durations = ("initial", "max")
    values: dict[str, Any] = {
        key: (_duration if key in durations else _number)(f"BACKOFF[{key!r}]", raw) for key, raw in value.items()
    }
    checks = {
        "factor": (lambda v: 1 <= v < math.inf, "must be >= 1 and finite"),
        "jitter": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        "fatal_after": (lambda v: 1 <= v < math.inf and v == int(v), "must be a whole number >= 1"),
    }
    for key, number in values.items():
        if key in durations:
            continue
        ok, rule = checks[key]
        if not ok(number):
            raise SettingsError(f"BACKOFF[{key!r}]", f"{rule}, got {safe.shown(value[key])}")
    if "fatal_after" in values:
        values["fatal_after"] = int(values["fatal_after"])
    return replace(Backoff(), **values)


def tcp_port(ready: str) -> int | None:
    """The port of a ``READY = "tcp:PORT"`` rule (PORT written as digits, 1 to 65535), or None
    for any other value."""
    kind, _, port = ready.partition(":")
    if kind != "tcp" or not (port.isascii() and port.isdigit()):
        return None
    number = int(port)
    return number if 1 <= number <= 65535 else None


def _ready(value: Any) -> str:
    if isinstance(value, str) and (str.__str__(value) in READY_RULES[:2] or tcp_port(str.__str__(value))):
        return str.__str__(value)
    raise SettingsError("READY", f"must be 'started', 'signal' or 'tcp:PORT' (PORT from 1 to 65535), "
                                 f"got {safe.shown(value)}")


def _strings(name: str, value: Any, what: str) -> tuple[str, ...]:
    """A list (or tuple) of non-empty strings, each once, in order."""
    if not isinstance(value, (list, tuple)):
        raise SettingsError(name, f"must be a list of {what}, not {type(value).__name__} {safe.shown(value)}")
    for item in value:
        if not (isinstance(item, str) and item):
            raise SettingsError(name, f"must be a list of {what}, got {safe.shown(item)} in it")
    return tuple(dict.fromkeys(str.__str__(item) for item in value))


def _watch(value: Any) -> tuple[str, ...]:
    """Globs relative to the workers folder, which cannot leave it: a worker watches its own
    files, not the rest of the disk."""
    globs = _strings("WATCH", value, "globs")
    for glob in globs:
        if glob.startswith("/"):
            raise SettingsError("WATCH", f"{glob!r} is an absolute path: globs are relative to the workers "
                                         f"folder, and only files in it can be watched")
        if ".." in glob.split("/"):
            raise SettingsError("WATCH", f"{glob!r} leaves the workers folder: globs are relative to it, "
                                         f"and '..' is not allowed")
    return globs


def parse(namespace: Mapping[str, Any], defaults: Settings = Settings()) -> Settings:
    """Settings from a module's namespace; names it does not define keep ``defaults``."""
    result = defaults
    if "RESTART" in namespace:
        restart = namespace["RESTART"]
        if not (isinstance(restart, str) and str.__str__(restart) in RESTART_POLICIES):
            choices = ", ".join(repr(p) for p in RESTART_POLICIES)
            raise SettingsError("RESTART", f"must be one of {choices}, got {safe.shown(restart)}")
        restart = str.__str__(restart)
        result = replace(result, restart=restart)
    if "BACKOFF" in namespace:
        partial = _backoff(namespace["BACKOFF"])
        given = {key: getattr(partial, key) for key in namespace["BACKOFF"]}
        result = replace(result, backoff=replace(defaults.backoff, **given))
    if "STOP_TIMEOUT" in namespace:
        result = replace(result, stop_timeout=_duration("STOP_TIMEOUT", namespace["STOP_TIMEOUT"]))
    if "STATE_VERSION" in namespace:
        version = namespace["STATE_VERSION"]
        if type(version) is not int:  # not a bool, nor an int subclass with an __eq__ of its own
            raise SettingsError(
                "STATE_VERSION", f"must be a whole number (int), not {type(version).__name__} {safe.shown(version)}"
            )
        result = replace(result, state_version=version)
    if "AFTER" in namespace:
        result = replace(result, after=_strings("AFTER", namespace["AFTER"], "worker names"))
    if "READY" in namespace:
        result = replace(result, ready=_ready(namespace["READY"]))
    if "WATCH" in namespace:
        result = replace(result, watch=_watch(namespace["WATCH"]))
    if namespace.get("HEARTBEAT") is not None:
        result = replace(result, heartbeat=_duration("HEARTBEAT", namespace["HEARTBEAT"]))
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
    if settings.state_version != defaults.state_version:
        diff["STATE_VERSION"] = settings.state_version
    for name, value in (("AFTER", settings.after), ("READY", settings.ready), ("WATCH", settings.watch),
                        ("HEARTBEAT", settings.heartbeat)):
        if value != getattr(defaults, name.lower()):
            diff[name] = list(value) if isinstance(value, tuple) else value
    return diff


def describe(settings: Settings, defaults: Settings) -> str:
    """The differences as the summary and ``hotreload list`` show them: ``RESTART='never' ...``."""
    return " ".join(f"{key}={value!r}" for key, value in differences(settings, defaults).items())
