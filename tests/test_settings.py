"""Validation of RESTART, BACKOFF and STOP_TIMEOUT."""
import pytest

from hotreload.settings import MAX_SECONDS, Backoff, Settings, SettingsError, differences, parse, seconds


def test_defaults_when_nothing_is_set():
    assert parse({}) == Settings()
    assert Settings().backoff == Backoff(initial=0.5, factor=2.0, max=30.0, jitter=0.5, fatal_after=10)


def test_each_setting_is_read():
    settings = parse({"RESTART": "never", "BACKOFF": {"initial": 1, "jitter": 0}, "STOP_TIMEOUT": 2})
    assert settings.restart == "never"
    assert settings.backoff == Backoff(initial=1.0, jitter=0.0)
    assert settings.stop_timeout == 2.0


def test_a_partial_backoff_keeps_the_other_defaults():
    defaults = Settings(backoff=Backoff(max=5.0))
    assert parse({"BACKOFF": {"factor": 3}}, defaults).backoff == Backoff(factor=3.0, max=5.0)


class Unprintable:
    def __repr__(self):
        raise AttributeError("detail")

    def __eq__(self, other):
        raise AttributeError("detail")

    __hash__ = object.__hash__


@pytest.mark.parametrize(
    "namespace, message",
    [
        ({"RESTART": "sometimes"}, "RESTART: must be one of 'always', 'on-failure', 'never', got 'sometimes'"),
        ({"BACKOFF": [1, 2]}, "BACKOFF: must be a dict, not list"),
        ({"BACKOFF": {"inital": 1}}, "BACKOFF: unknown key 'inital'"),
        ({"BACKOFF": {"initial": "1"}}, "BACKOFF['initial']: must be a number, not str"),
        ({"BACKOFF": {"initial": True}}, "BACKOFF['initial']: must be a number, not bool"),
        ({"BACKOFF": {"initial": 0}}, "BACKOFF['initial']: must be > 0 and <= 86400 seconds, got 0"),
        ({"BACKOFF": {"factor": 0.5}}, "BACKOFF['factor']: must be >= 1"),
        ({"BACKOFF": {"jitter": 1.5}}, "BACKOFF['jitter']: must be between 0 and 1"),
        ({"BACKOFF": {"fatal_after": 2.5}}, "BACKOFF['fatal_after']: must be a whole number >= 1"),
        ({"STOP_TIMEOUT": -1}, "STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got -1"),
        ({"STOP_TIMEOUT": None}, "STOP_TIMEOUT: must be a number, not NoneType"),
        ({"STOP_TIMEOUT": float("inf")}, "STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got inf"),
        ({"STOP_TIMEOUT": float("nan")}, "STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got nan"),
        ({"STOP_TIMEOUT": 1e10}, "STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got 10000000000.0"),
        ({"STOP_TIMEOUT": 10**400}, "STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got 1000"),
        ({"BACKOFF": {"initial": float("inf")}}, "BACKOFF['initial']: must be > 0 and <= 86400 seconds"),
        ({"BACKOFF": {"max": 1e10}}, "BACKOFF['max']: must be > 0 and <= 86400 seconds"),
        ({"BACKOFF": {"factor": float("inf")}}, "BACKOFF['factor']: must be >= 1 and finite, got inf"),
        ({"BACKOFF": {"fatal_after": float("inf")}}, "BACKOFF['fatal_after']: must be a whole number >= 1"),
        ({"BACKOFF": {1: 2, "x": 3}}, "BACKOFF: unknown key 'x'; allowed keys"),
        ({"STOP_TIMEOUT": Unprintable()},
         "STOP_TIMEOUT: must be a number, not Unprintable <Unprintable: repr() failed>"),
        ({"RESTART": Unprintable()}, "RESTART: must be one of 'always', 'on-failure', 'never', got <Unprintable: repr"),
        ({"STATE_VERSION": "2"}, "STATE_VERSION: must be a whole number (int), not str '2'"),
        ({"STATE_VERSION": 2.0}, "STATE_VERSION: must be a whole number (int), not float 2.0"),
        ({"STATE_VERSION": True}, "STATE_VERSION: must be a whole number (int), not bool True"),
    ],
)
def test_a_wrong_setting_names_itself_and_what_is_allowed(namespace, message):
    with pytest.raises(SettingsError) as caught:
        parse(namespace)
    assert str(caught.value).startswith(message)


def test_state_version_is_an_int_and_1_by_default():
    assert Settings().state_version == 1
    assert parse({"STATE_VERSION": 3}).state_version == 3
    assert parse({"STATE_VERSION": -1}).state_version == -1  # any int: only a change counts


def test_differences_lists_only_what_differs_by_module_level_name():
    defaults = Settings()
    settings = parse({"RESTART": "never", "BACKOFF": {"max": 5, "initial": 0.5}}, defaults)
    assert differences(settings, defaults) == {"RESTART": "never", "BACKOFF": {"max": 5.0}}
    assert differences(parse({"STATE_VERSION": 2}), defaults) == {"STATE_VERSION": 2}
    assert differences(defaults, defaults) == {}


def test_seconds_is_the_one_rule_for_every_duration():
    assert seconds(2) == 2.0 and seconds(MAX_SECONDS) == MAX_SECONDS and seconds(0.001) == 0.001
    for bad in (0, -1, float("inf"), float("nan"), MAX_SECONDS * 2, 10**400, True, "1", None):
        with pytest.raises(ValueError) as caught:
            seconds(bad)
        assert str(caught.value) == "a number of seconds > 0 and <= 86400"
    with pytest.raises(ValueError, match="^a number of seconds > 0 and <= 60$"):
        seconds(61, maximum=60)


def test_the_order_watch_and_heartbeat_settings_are_read():
    settings = parse({"AFTER": ["db", "cache", "db"], "READY": "tcp:6380", "WATCH": ("templates/**/*.html",),
                      "HEARTBEAT": 30})
    assert settings.after == ("db", "cache")  # a name given twice counts once
    assert settings.ready == "tcp:6380"
    assert settings.watch == ("templates/**/*.html",)
    assert settings.heartbeat == 30.0
    assert (Settings().after, Settings().ready, Settings().watch, Settings().heartbeat) == ((), "started", (), None)
    assert parse({"READY": "signal", "HEARTBEAT": None}).ready == "signal"


@pytest.mark.parametrize(
    "namespace, message",
    [
        ({"AFTER": "db"}, "AFTER: must be a list of worker names, not str 'db'"),
        ({"AFTER": ["db", 1]}, "AFTER: must be a list of worker names, got 1 in it"),
        ({"AFTER": [""]}, "AFTER: must be a list of worker names, got '' in it"),
        ({"READY": "later"}, "READY: must be 'started', 'signal' or 'tcp:PORT' (PORT from 1 to 65535), got 'later'"),
        ({"READY": "tcp:0"}, "READY: must be 'started', 'signal' or 'tcp:PORT' (PORT from 1 to 65535), got 'tcp:0'"),
        ({"READY": "tcp:65536"}, "READY: must be 'started', 'signal' or 'tcp:PORT'"),
        ({"READY": "tcp:+80"}, "READY: must be 'started', 'signal' or 'tcp:PORT'"),
        ({"READY": 6380}, "READY: must be 'started', 'signal' or 'tcp:PORT'"),
        ({"WATCH": "settings.yaml"}, "WATCH: must be a list of globs, not str 'settings.yaml'"),
        ({"WATCH": [3]}, "WATCH: must be a list of globs, got 3 in it"),
        ({"WATCH": ["../shared/*.yaml"]},
         "WATCH: '../shared/*.yaml' leaves the workers folder: globs are relative to it, and '..' is not allowed"),
        ({"WATCH": ["templates/../../x"]}, "WATCH: 'templates/../../x' leaves the workers folder"),
        ({"WATCH": ["/etc/app.yaml"]},
         "WATCH: '/etc/app.yaml' is an absolute path: globs are relative to the workers folder, and only files in it"),
        ({"WATCH": [""]}, "WATCH: must be a list of globs, got '' in it"),
        ({"HEARTBEAT": 0}, "HEARTBEAT: must be > 0 and <= 86400 seconds, got 0"),
        ({"HEARTBEAT": float("inf")}, "HEARTBEAT: must be > 0 and <= 86400 seconds, got inf"),
        ({"HEARTBEAT": "30"}, "HEARTBEAT: must be a number, not str"),
    ],
)
def test_a_wrong_order_watch_or_heartbeat_setting_names_itself_and_what_is_allowed(namespace, message):
    with pytest.raises(SettingsError) as caught:
        parse(namespace)
    assert str(caught.value).startswith(message)


def test_differences_show_the_new_settings_as_written():
    settings = parse({"AFTER": ["db"], "READY": "signal", "WATCH": ["a.yaml"], "HEARTBEAT": 5})
    assert differences(settings, Settings()) == {"AFTER": ["db"], "READY": "signal", "WATCH": ["a.yaml"],
                                                 "HEARTBEAT": 5.0}
