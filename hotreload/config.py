"""Defaults for ``hotreload run`` from a config file, found as pytest finds its own.

From the working directory upward, the first ``pyproject.toml`` with a ``[tool.hotreload]``
table or ``setup.cfg`` with a ``[hotreload]`` section is used (in one folder, pyproject.toml
first). Its keys are the long options of ``run`` (``stop-timeout = 2``) plus the default
``restart`` and ``backoff`` of every worker. Precedence: command line > config file >
built-in defaults. Paths in the file (``dir``, ``log-file``) are relative to the file's
folder, as pytest's are. Pure apart from reading the files: an unknown key or a wrong type
is a ``ConfigError`` naming the file, the key and what is allowed. TOML has types of its own,
and they must be right (``reload = "no"`` is an error); in setup.cfg every value is text, read
strictly: a flag is true/false, yes/no, on/off or 1/0, a number is a number.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from hotreload.settings import Settings

__all__ = ["Config", "ConfigError", "DEFAULT_HTTP_HOST", "LOG_LEVELS", "debounce", "find", "http_address",
           "is_loopback", "origin", "path_of", "stop_timeout", "worker_defaults"]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
# The largest durations allowed, in seconds: a day to stop; a debounce window longer than
# 10 s would hold every save back for longer than anyone waits for a reload.
STOP_TIMEOUT_MAX = 86400.0
DEBOUNCE_MAX = 10.0
DEFAULT_HTTP_HOST = "127.0.0.1"  # --http PORT alone: loopback, reachable from this machine only
WATCH_MAX = 86400.0
FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _duration(most: float) -> Callable[[Any], float]:
    """The check of a number of seconds in (0, ``most``]: ``settings.seconds``, the one rule
    for every duration, with the config's kind of error."""

    def check(value: Any) -> float:
        from hotreload.settings import seconds  # imported only when a duration is given

        try:
            return seconds(value, most)
        except ValueError as exc:  # the config's errors are TypeErrors: what is allowed
            raise TypeError(str(exc)) from None

    return check


stop_timeout = _duration(STOP_TIMEOUT_MAX)
debounce = _duration(DEBOUNCE_MAX)
watch_interval = _duration(WATCH_MAX)  # `status --watch SECONDS`: the command line's only


def _level(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise TypeError(f"one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _colour(value: Any) -> str:
    from hotreload.colours import CHOICES

    if value not in CHOICES:
        raise TypeError(f"one of {', '.join(CHOICES)}")
    return value


def http_address(value: Any) -> tuple[str, int]:
    """``[HOST:]PORT`` (``8377``, ``0.0.0.0:8377``, ``[::1]:8377``; port 0: any free port) as
    (host, port); HOST defaults to ``DEFAULT_HTTP_HOST``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError('[HOST:]PORT, such as "8377" or "0.0.0.0:8377"')
    host, _, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or int(port) > 65535 or any(c.isspace() or c in "[]/" for c in host):
        raise TypeError('[HOST:]PORT with a port from 0 to 65535, such as "8377" or "0.0.0.0:8377"')
    return host or DEFAULT_HTTP_HOST, int(port)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches: ``localhost``, 127.0.0.0/8, ``::1``."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _restart(value: Any) -> str:
    from hotreload.settings import RESTART_POLICIES

    if value not in RESTART_POLICIES:
        raise TypeError(f"one of {', '.join(RESTART_POLICIES)}")
    return value


def _backoff(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        from dataclasses import fields

        from hotreload.settings import Backoff

        raise TypeError(f"a table with keys among {', '.join(f.name for f in fields(Backoff))}")
    return dict(value)  # the numbers are checked by settings.parse, through worker_defaults


# Each key with the function that checks and converts its value (TypeError: what is allowed).
KEYS: dict[str, Callable[[Any], Any]] = {
    "dir": _text,
    "stop-timeout": stop_timeout,
    "log-level": _level,
    "log-json": _flag,
    "log-file": _text,
    "entry-points": _flag,
    "reload": _flag,
    "debounce": debounce,
    "http": http_address,
    "http-token-file": _text,
    "guard": _flag,
    "color": _colour,
    "restart": _restart,
    "backoff": _backoff,
}


class Config(NamedTuple):
    """The file the defaults came from (None: built-in defaults only) and its values.
    Nothing here is imported until a config file is found: ``hotreload --version`` and the
    control commands start without tomllib, configparser or the settings module."""

    path: Path | None = None
    values: dict[str, Any] = {}  # never mutated


def _from_text(key: str, text: str) -> Any:
    """A setup.cfg value as the type its key takes; text that is not one stays text, for the
    key's check to reject with what is allowed."""
    convert = KEYS[key]
    if convert is _flag:
        return FLAG_WORDS.get(text.strip().lower(), text)
    if convert in (stop_timeout, debounce):
        return _number_from_text(text)
    return text


def _number_from_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _check(raw: dict[str, Any], where: str, from_text: bool = False) -> dict[str, Any]:
    from hotreload.settings import SettingsError

    values = {}
    for key, value in raw.items():
        convert = KEYS.get(key)
        if convert is None:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(KEYS)}")
        typed = value
        if from_text and key == "backoff" and not isinstance(value, dict):  # backoff = {} in setup.cfg
            raise ConfigError(f"{where}: backoff must be given key by key in setup.cfg (backoff.initial = 1), "
                              f"not {value!r}")
        if from_text and key == "backoff":
            typed = {name: _number_from_text(number) for name, number in value.items()}
        elif from_text:
            typed = _from_text(key, value)
        try:
            values[key] = convert(typed)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {key} must be {exc}, not {value!r}") from None
    try:
        worker_defaults(values)
    except SettingsError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return values


def _from_setup_cfg(path: Path) -> dict[str, Any] | None:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if not parser.has_section("hotreload"):
        return None
    raw: dict[str, Any] = {}
    for key, value in parser.items("hotreload"):
        if key.startswith("backoff."):  # backoff.initial = 1
            table = raw.setdefault("backoff", {})
            if isinstance(table, dict):  # not after a plain `backoff = ...`, which _check rejects
                table[key[len("backoff."):]] = value
        else:
            raw[key] = value
    return raw


def _from_pyproject(path: Path) -> dict[str, Any] | None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the tests run on 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    section = data.get("tool", {}).get("hotreload")
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.hotreload] must be a table")
    return section


def find(start: Path) -> Config:
    """The config in effect for a command run in ``start``."""
    for folder in [start, *start.parents]:
        for name, read, section in (
            ("pyproject.toml", _from_pyproject, "[tool.hotreload]"),
            ("setup.cfg", _from_setup_cfg, "[hotreload]"),
        ):
            path = folder / name
            if path.is_file():
                raw = read(path)
                if raw is not None:
                    return Config(path, _check(raw, f"{path} {section}", from_text=name == "setup.cfg"))
    return Config()


def path_of(config: Config, key: str) -> str | None:
    """The path a config file gives for ``key`` (``dir``, ``log-file``), relative to the file's
    folder; None when the file does not set it."""
    raw = config.values.get(key)
    if raw is None or config.path is None:
        return None
    return str(config.path.parent / raw)


def origin(config: Config, key: str) -> str:
    """Where ``key``'s value comes from, for an error about it: ``dir = 'x' in /a/pyproject.toml``."""
    return f"{key} = {config.values[key]!r} in {config.path}"


def worker_defaults(values: dict[str, Any]) -> Settings:
    """The default RESTART / BACKOFF / STOP_TIMEOUT of every worker, from checked values."""
    from hotreload.settings import parse

    namespace: dict[str, Any] = {}
    if "restart" in values:
        namespace["RESTART"] = values["restart"]
    if "backoff" in values:
        namespace["BACKOFF"] = values["backoff"]
    if "stop-timeout" in values:
        namespace["STOP_TIMEOUT"] = values["stop-timeout"]
    return parse(namespace)
