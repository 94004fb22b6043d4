"""The seam between the host loop and core.py: what the loop calls is guarded, a new core
is checked before it is accepted, and one that fails is rolled back. In-process, on
stand-in cores."""
import importlib
import re
import signal
import sys
import types

import pytest

from hotreload import corereload
from hotreload import host as hosting
from hotreload.records import Changes
from hotreload.records import Host, Options
from hotreload.log import logger


@pytest.fixture
def serve_on(monkeypatch):
    """``serve_on(stand_in, host)``: ``host.serve`` here, in the main thread, with ``stand_in``
    as the core; the test process's signal handlers and wake-up fd are put back after."""
    handlers = {signum: signal.getsignal(signum) for signum in hosting.HANDLED_SIGNALS}
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)

    def serve_on(stand_in, host):
        monkeypatch.setattr(hosting, "core", stand_in)
        return hosting.serve(host)

    yield serve_on
    signal.set_wakeup_fd(wakeup_fd)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@pytest.fixture
def logged():
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="WARNING")
    yield lines
    logger.remove(sink)


def stand_in_core(**replaced):
    """A core that stops the host on the message "stop": enough for ``serve`` to run."""
    def handle(host, message):
        if message == "stop":
            host.stopping = True

    functions = dict(start=lambda host: None, handle=handle, wakeup=lambda host: None,
                     finished=lambda host: host.stopping, exit_status=lambda host: 0)
    functions.update(replaced)
    module = types.ModuleType("stand_in_core")
    vars(module).update((name, f) for name, f in functions.items() if f is not None)
    return module


def broken_once(function):
    calls = []

    def broken(*args):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("a bug in the new core")
        return function(*args)
    return broken


def test_a_core_without_wakeup_does_not_end_the_host_loop(serve_on, logged, tmp_path):
    host = Host(options=Options(tmp_path, reload=False), package="svc")
    host.inbox.put("stop")
    assert serve_on(stand_in_core(wakeup=None), host) == 0
    assert any("internal error in core.wakeup" in line and "AttributeError" in line for line in logged)


@pytest.mark.parametrize("name", ["start", "handle", "wakeup", "finished", "exit_status"])
def test_every_call_of_the_loop_into_core_is_guarded(serve_on, logged, tmp_path, name):
    host = Host(options=Options(tmp_path, reload=False), package="svc")
    host.inbox.put("first")
    host.inbox.put("stop")
    stand_in = stand_in_core()
    setattr(stand_in, name, broken_once(getattr(stand_in, name)))
    status = serve_on(stand_in, host)
    assert status == (1 if name == "exit_status" else 0)  # a core that cannot say: not a clean stop
    assert any(f"internal error in core.{name}" in line and "a bug in the new core" in line for line in logged)


CORE_V1 = '''
import time

def start(host):
    pass

def handle(host, message):
    return _step(host, message)

def _step(host, message):
    host.handled = (VERSION, message)

def wakeup(host):
    return time.monotonic() and None  # an attribute of a module: no global "monotonic"

def finished(host):
    return host.stopping

def exit_status(host):
    return 0

VERSION = 1
'''


@pytest.fixture
def core_file(tmp_path, monkeypatch):
    """``(path, module)``: a stand-in core.py imported from ``tmp_path``, with a host whose
    core it is."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite within the same second is read
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "stand_in_core_file.py"
    path.write_text(CORE_V1)
    module = importlib.import_module(path.stem)
    yield Host(options=Options(tmp_path), package="svc", inbox=None, core_file=path), path, module
    del sys.modules[path.stem]


def test_a_function_that_uses_an_undefined_global_is_found_but_attribute_names_are_not(tmp_path):
    source = '''
import functools, os

def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper

def calls_a_missing_function(host):
    return _on_changez(host)

def only_attributes(host):
    return host._on_changez + os.path.sep + len(host.items)

def nested(host):
    def inner():
        return [missing_in_comprehension(x) for x in host.items]
    return inner

class Holder:
    def method(self):
        return missing_in_method

    @staticmethod
    def static():
        return missing_in_static

@decorate
def decorated():
    return missing_under_a_decorator

def sets_a_global():
    global made_at_runtime
    made_at_runtime = 1

def reads_it():
    return made_at_runtime
'''
    path = tmp_path / "checked.py"
    path.write_text(source)
    module = types.ModuleType("checked")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), vars(module))
    found = corereload.undefined_globals(module)
    assert f"{path}:11: calls_a_missing_function() uses _on_changez, which checked.py does not define" in found
    used = {re.match(r".*:(\d+): .* uses (\w+), which", line).groups() for line in found}
    assert used == {("11", "_on_changez"), ("18", "missing_in_comprehension"), ("23", "missing_in_method"),
                    ("27", "missing_in_static"), ("31", "missing_under_a_decorator")}  # and nothing else
    assert corereload.undefined_globals(hosting.core) == []  # the real core: no false alarm


def test_a_new_core_is_accepted_only_if_the_loop_can_run_on_it(core_file, logged):
    host, path, module = core_file
    path.write_text(CORE_V1.replace("return _step(host, message)", "return _stepz(host, message)"))
    corereload.on_own_changes(host, module, hosting.CORE_API, [str(path)])
    assert "_stepz" in logged[-1] and module.handle.__code__.co_names[0] == "_step"  # still the old core
    path.write_text(CORE_V1.replace("def wakeup(", "def _wakeup_gone("))
    corereload.on_own_changes(host, module, hosting.CORE_API, [str(path)])
    assert "core.py no longer defines wakeup()" in logged[-1] and callable(module.wakeup)
    assert host.core_generation == 0 and host.previous_core is None

    path.write_text(CORE_V1.replace("VERSION = 1", "VERSION = 2"))
    corereload.on_own_changes(host, module, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1 and module.VERSION == 2 and host.previous_core["VERSION"] == 1


def test_an_internal_error_of_a_reloaded_core_rolls_it_back_at_once(core_file, logged, monkeypatch):
    host, path, module = core_file
    monkeypatch.setattr(hosting, "core", module)
    path.write_text(CORE_V1.replace("    host.handled = (VERSION, message)", "    1 / 0")
                    .replace("VERSION = 1", "VERSION = 2"))
    corereload.on_own_changes(host, module, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1 and module.VERSION == 2

    assert hosting._call_core(host, "handle", host, "first") is None
    assert "internal error in core.handle" in logged[-2] and "ZeroDivisionError" in logged[-2]
    assert "rolled back to the previous core (generation 0)" in logged[-1]
    assert module.VERSION == 1 and host.core_generation == 0 and host.previous_core is None
    hosting._call_core(host, "handle", host, "second")  # the previous core, whole
    assert host.handled == (1, "second")
    assert corereload.roll_back(host, module) is False  # once: no older core is kept


def test_saves_of_hotreloads_own_files_are_the_loops_and_the_rest_is_cores(tmp_path):
    host = Host(options=Options(tmp_path), package="svc", inbox=None, core_file=tmp_path / "pkg" / "core.py")
    own, worker = str(tmp_path / "pkg" / "core.py"), str(tmp_path / "workers" / "w.py")
    assert hosting._take_own_changes(host, Changes(frozenset({own, worker}))) == Changes(frozenset({worker}))
    assert hosting._take_own_changes(host, Changes(frozenset({own}))) is None
    assert host.own_changes == {own}  # applied by the loop once no swap runs
    host.own_changes.clear()
    host.stopping = True
    assert hosting._take_own_changes(host, Changes(frozenset({own}))) is None and not host.own_changes


def test_a_message_whose_repr_raises_is_handled_and_an_error_on_it_reported(serve_on, logged, tmp_path):
    class Unprintable:
        def __repr__(self):
            raise AttributeError("no detail")

    host = Host(options=Options(tmp_path, reload=False), package="svc")
    host.inbox.put(Unprintable())
    host.inbox.put("stop")
    handled = []

    def handle(host, message):
        handled.append(message)
        if message == "stop":
            host.stopping = True
        else:
            raise RuntimeError("a bug in the new core")

    assert serve_on(stand_in_core(handle=handle), host) == 0
    assert len(handled) == 2
    assert any("internal error in core.handle on <Unprintable: repr() failed>" in line for line in logged)
