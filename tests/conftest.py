"""Helpers that keep each integration test a few lines long.

``host = start_host(folder)`` starts the real ``hotreload run`` command in a subprocess.
Workers written with ``worker_source`` append lines such as ``ticker start 2 1`` (name,
event, VERSION, how many starts ctx.state has seen) to a report file, which the test reads
with ``host.events()`` and waits on with ``host.wait_for(...)``. Every wait has a deadline.

In-process, ``core_host(files)`` builds a host on a folder of those files and ``pump(host,
until)`` hands its inbox's messages to ``core.handle`` until a condition holds: core's
branches, with real worker threads, in milliseconds.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import types
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from hotreload import core as hotreload_core
from hotreload import loader, records
from hotreload.log import wake_on_removal

# The tests send SIGINT to the commands they start, as Ctrl-C does. A shell that runs the
# suite in the background (``pytest &``, nohup) starts it with SIGINT ignored, and an ignored
# signal stays ignored across exec: every command started would ignore Ctrl-C. Python's own
# handler here makes it the default again in those commands (a handled signal is reset at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HOTRELOAD = Path(sys.executable).with_name("hotreload")
WAIT = 20.0  # seconds: generous for a noisy 2-core machine; a passing test never waits this long

REPORT_FUNCTION = '''
import os as _os


def report(*words):
    with open(_os.environ["HOTRELOAD_TEST_REPORT"], "a") as _f:
        _f.write(" ".join(str(w) for w in words) + "\\n")
'''

RUN_TEMPLATE = """
def run(ctx):
    ctx.state["starts"] = ctx.state.get("starts", 0) + 1
    report(ctx.name, "start", VERSION, ctx.state["starts"])
    try:
        BODY
        while not ctx.sleep(0.05):
            pass
    finally:
        report(ctx.name, "stop", VERSION, ctx.state["starts"])
"""


def worker_source(version: int = 1, body: str = "", top: str = "", **settings: object) -> str:
    """A worker that reports its starts and stops, tagged with ``version``.

    ``body`` runs once after the start is reported (indented into run); ``top`` goes at
    module level, before run.
    """
    lines = [REPORT_FUNCTION, textwrap.dedent(top), f"VERSION = {version}"]
    lines += [f"{key} = {value!r}" for key, value in settings.items()]
    body = textwrap.indent(textwrap.dedent(body).strip() or "pass", " " * 8)
    lines.append(RUN_TEMPLATE.replace("BODY", body.lstrip()))
    return "\n".join(lines)


def private_package(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the hotreload package in ``tmp_path``, and the ``start_host`` keywords that run
    a host from it: a test may edit its core.py without touching the install other tests and
    sessions use, and nothing but that host opens its files (the host watches its own package)."""
    copy = tmp_path / "pkg" / "hotreload"
    shutil.copytree(Path(hotreload_core.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy, {"cmd": [sys.executable, "-m", "hotreload"], "env": {"PYTHONPATH": str(copy.parent)}}


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``hotreload ARGS`` to completion, output captured."""
    return subprocess.run([str(HOTRELOAD), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=None if env is None else {**os.environ, **env})


def wait_for(condition: Callable[[], object], timeout: float = WAIT, what: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def written(path: Path) -> str:
    """The text of ``path`` up to its last newline. A line still being written is left out:
    a write that straddles a page of the page cache becomes visible a page at a time, so a
    test polling a file can catch the first part of a line."""
    text = path.read_text(errors="replace")
    return text[:text.rfind("\n") + 1]


class Host:
    """A running ``hotreload`` subprocess and what it wrote."""

    def __init__(self, tmp: Path, folder: Path, args: list[str], env: dict[str, str], cmd: list[str],
                 omit_dir: bool = False) -> None:
        self.folder = folder
        self.report = tmp / "report.txt"
        self.stderr_path = tmp / "stderr.txt"
        self.report.touch()
        env = {**env, "HOTRELOAD_TEST_REPORT": str(self.report)}
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "run", *([] if omit_dir else [str(folder)]), *args], cwd=tmp, env=env,
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            )

    def log(self) -> str:
        return written(self.stderr_path)

    def events(self, name: str | None = None) -> list[str]:
        lines = written(self.report).splitlines()
        return [line for line in lines if name is None or line.split()[0] == name]

    def starts(self, name: str) -> list[int]:
        """The VERSION of each start of worker ``name``, in order."""
        return [int(line.split()[2]) for line in self.events(name) if line.split()[1] == "start"]

    def wait_for(self, condition: Callable[[], object], what: str = "condition", timeout: float = WAIT) -> object:
        def check() -> object:
            if self.proc.poll() is not None:
                raise AssertionError(f"hotreload exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            return condition()

        try:
            return wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- events:\n{self.report.read_text()}--- log:\n{self.log()}") from None

    def wait_log(self, text: str, count: int = 1) -> str:
        self.wait_for(lambda: self.log().count(text) >= count, f"{count} x {text!r} in the log")
        return self.log()

    def wait_started(self, name: str, version: int, count: int = 1) -> None:
        self.wait_for(lambda: self.starts(name).count(version) >= count, f"{name} version {version} to start")

    def barrier(self, marker: str = "zz_barrier") -> None:
        """Add a worker and wait for it to start: every file event that happened before has
        then been handled (events are handled in order), so a test can check what did not
        happen."""
        (self.folder / f"{marker}.py").write_text(worker_source())
        self.wait_started(marker, 1)

    def host_pid(self) -> int:
        """The host's pid: the guardian's child, or the process itself under --no-guard."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            children = []
        return int(children[0]) if children else self.proc.pid

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.host_pid()}/task"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hotreload did not exit within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in {self.host_pid(), self.proc.pid}:  # the host has a process group of its own
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(WAIT)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A base temp folder of this session's own, unless one is given with --basetemp.

    pytest's default base (/tmp/pytest-of-USER/) is shared by every session of the user, and
    a session prunes the numbered folders it finds there: two sessions at once (two
    terminals, parallel CI jobs, ``tox -p``) deleted each other's files mid-test.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        base = tempfile.mkdtemp(prefix="hotreload-tests-")
        config.option.basetemp = base
        config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty workers folder."""
    path = tmp_path / "workers"
    path.mkdir()
    return path


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """Start ``hotreload run FOLDER *args`` in the temp folder (``omit_dir=True`` leaves
    FOLDER out, for the default ./workers); every host started is killed at teardown."""
    started: list[Host] = []
    if not HOTRELOAD.exists():
        pytest.fail(f"{HOTRELOAD} is missing: install the project first (pip install -e '.[test]')")

    def start(folder: Path, *args: str, env: dict[str, str] | None = None, cmd: list[str] | None = None,
              omit_dir: bool = False) -> Host:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        host = Host(tmp_path, folder, list(args), {**base, **(env or {})}, cmd or [str(HOTRELOAD)], omit_dir)
        started.append(host)
        return host

    yield start
    for host in started:
        host.kill()


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test's control sockets in a folder of its own (short: a socket path must fit in
    108 bytes), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hr-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def read_terminal(folder: Path, tmp_path: Path, env: dict[str, str], *args: str,
                  until: tuple[str, ...] = ("running",)) -> str:
    """What ``hotreload run FOLDER --no-guard ARGS`` writes on a terminal (a pty, its stdout
    and stderr) until every text of ``until`` has appeared (then it is killed)."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([str(HOTRELOAD), "run", str(folder), "--no-guard", *args], cwd=tmp_path,
                            env={**os.environ, "HOTRELOAD_TEST_REPORT": str(tmp_path / "report.txt"), **env},
                            stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + WAIT
    try:
        while not all(text.encode() in output for text in until) and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    output += os.read(master, 65536)
                except OSError:  # the host is gone: nothing more to read
                    break
    finally:
        proc.kill()
        proc.wait(WAIT)
        os.close(master)
    assert all(text.encode() in output for text in until), output
    return output.decode(errors="replace")


def write(path: Path, text: str) -> None:
    """Write a file the way most tools do: in place, in one go."""
    path.write_text(text)


# --- in-process: core driven by hand --------------------------------------------------------

PUMP_WAIT = 2.0  # seconds: what a pump or a bounded get waits at most; a passing test far less


def pump(host: records.Host, until: Callable[[], object], what: str = "the condition",
         timeout: float = PUMP_WAIT, core: types.ModuleType = hotreload_core) -> None:
    """What ``host.serve`` does, in this thread: hand each message of ``host``'s inbox to
    ``core.handle`` (None when none came before the next timer, so that due timers fire),
    until ``until()`` holds; fail after ``timeout`` seconds. ``core`` may be a copy."""
    deadline = time.monotonic() + timeout
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        due = core.wakeup(host)
        core.handle(host, host.inbox.get(left if due is None else min(max(0.0, due), left)))


def next_message(host: records.Host, kind: type = object, timeout: float = PUMP_WAIT) -> Any:
    """The next message of ``host``'s inbox, which must be a ``kind``, waited for at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    message = None
    while message is None and time.monotonic() < deadline:  # None: a wake-up left by an earlier put
        message = host.inbox.get(deadline - time.monotonic())
    assert isinstance(message, kind), f"expected a {kind.__name__} within {timeout} s, got {message!r}"
    return message


@pytest.fixture
def core_host(tmp_path: Path) -> Iterator[Callable[..., records.Host]]:
    """``core_host(files, start=True, **options)``: a host much as ``hotreload.host.create``
    makes one, on a fresh folder of ``files`` (file name -> source) installed as a package
    of its own, with no importer thread, watcher or signal handler: core imports in the
    calling thread and posts the ``Loaded`` to the inbox. Started (``core.start``, pumped
    until every worker has launched) unless ``start=False``. At teardown every worker thread
    still running is asked to stop and joined, and the package is uninstalled."""
    made: list[records.Host] = []

    def make(files: dict[str, str] | None = None, start: bool = True, **options: Any) -> records.Host:
        package = f"wk_{uuid.uuid4().hex[:8]}"
        folder = (tmp_path / package).resolve()
        folder.mkdir()
        for name, source in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(source)
        chosen = records.Options(folder, **{"entry_points": False, **options})
        host = records.Host(options=chosen, package=package,
                            defaults=replace(chosen.defaults, stop_timeout=chosen.stop_timeout))
        host.finder = loader.install(folder, package)
        made.append(host)
        if start:
            hotreload_core.start(host)
            pump(host, lambda: host.job is None and not host.startup, "the workers to start")
        return host

    yield make
    wake_on_removal(None)
    for host in made:
        for worker in host.workers.values():
            execution = worker.execution
            if execution is not None and execution.thread.is_alive():
                execution.request_stop(0.0)
                execution.thread.join(5.0)
        sys.meta_path.remove(host.finder)
        loader.forget(host.package)
