"""The control socket: ``hotreload status | restart | stop | start`` talk to a running host.

A host listens on a Unix domain socket found from its workers folder: in
``$XDG_RUNTIME_DIR/hotreload/`` (or ``$TMPDIR/hotreload-UID/``), a folder only its owner may
enter, the socket itself mode 0600. No TCP. If that folder belongs to someone else or is open
to others (anyone may create ``/tmp/hotreload-UID`` first), the host makes a private
``hotreload-UID-XXXXXXXX`` beside it instead and says so; clients look there too, trusting
only folders that are this user's and mode 0700. If the runtime folder is too long for a
socket path, the temp folder is used. A lock file beside the socket, held for the host's
life, makes a second host on the same folder refuse to start; the kernel drops the lock when
a host dies, so a socket left by a killed host is simply replaced.

The protocol is one JSON object per line each way. One thread serves every client at once
with a selector, woken only by a client, an answer or a deadline (never periodically): a
request must arrive whole within ``CLIENT_TIMEOUT`` and the reply be read within as long, so
a slow or silent client holds up no one. A good request is posted to the host's inbox as a
``Command``; if the host loop does not take it within ``ANSWER_TIMEOUT`` (it is busy), it is
never acted on and the client is told it was not done. A client waits longer than that, so
it always hears what happened.

``logs`` and ``events`` are answered by the control thread itself, from the host's journal
(``hotreload.journal``), without the host loop: they work while it is busy. Their reply is a
stream: ``{"ok": true}``, then one JSON line per record or event (a ``--log-json`` line, an
event of ``hotreload.events``), a ``{"gap": N}`` line where N lines were dropped because the
client did not keep up, and an ``{"end": WHY}`` line: ``"done"``, or for a ``follow`` stream
``"the host is stopping"``. A stream has no deadline and is written only as fast as its
client reads; a follower's new lines wait in a bounded queue (``journal.QUEUE_LINES``), so a
client that stops reading costs a bounded amount of memory and holds up no one.
"""
from __future__ import annotations

import errno
from collections import deque
import fcntl
import hashlib
import json
import math
import os
import re
import selectors
import socket
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Iterator, Sequence

from hotreload.records import Command

if TYPE_CHECKING:
    from hotreload.inbox import Inbox
    from hotreload.journal import Follower, Journal

__all__ = [
    "COMMANDS", "AlreadyRunning", "ControlError", "Server", "Tail", "host_socket_path", "request",
    "socket_path", "stream",
]

COMMANDS = ("status", "ping", "restart", "stop", "start", "restart-host", "restart-with-dependents", "logs", "events")
STREAMS = ("logs", "events")  # answered by the control thread from the journal, as a stream
DEFAULT_LINES = 50  # records a ``logs`` request gets when it does not say
MAX_STREAMS = 32  # logs and events streams served at once, beside MAX_CLIENTS requests
CHUNK_BYTES = 64 * 1024  # bytes of a stream handed to one send()
FAREWELL_TIMEOUT = 0.5  # seconds streams get, once the host stops, to take their last lines
MAX_LINE = 64 * 1024  # bytes in one request line (replies have no cap)
MAX_NAMES = 1000
MAX_CLIENTS = 100  # connections served at once; more wait in the listen backlog
CLIENT_TIMEOUT = 1.0  # seconds a client gets to send its whole request, and to read its reply
ANSWER_TIMEOUT = 5.0  # seconds the host loop gets to take a command; later, it is not done
ANSWER_GRACE = 2.0  # seconds a command the host loop took gets to be answered
CONNECT_TIMEOUT = 5.0  # seconds a client retries while the host's backlog is full
REPLY_TIMEOUT = CLIENT_TIMEOUT + ANSWER_TIMEOUT + ANSWER_GRACE + 2.0  # longer than the host can take
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept() failed (out of file descriptors)
JOIN_TIMEOUT = 2.0
SOCKET_PATH_MAX = 107  # bytes: sun_path is 108, with its terminating NUL
FALLBACK_SUFFIX = 9  # "-XXXXXXXX", the random part mkdtemp adds to a fallback folder


class ControlError(Exception):
    """No host to talk to, or a bad request or reply; the message says which."""


class AlreadyRunning(ControlError):
    def __init__(self, folder: Path, pid: str) -> None:
        super().__init__(f"another hotreload host (pid {pid}) is already running on {folder}; "
                         f"stop it first, or use `hotreload status -d {folder}`")
        self.pid = pid


@dataclass(frozen=True)
class Tail:
    """A checked ``logs`` or ``events`` request: the control thread streams the answer."""

    kind: str  # "logs" or "events"
    names: tuple[str, ...] = ()  # logs of these names; every name when empty
    lines: int | None = DEFAULT_LINES  # how many recent ones first; None: all kept
    follow: bool = False  # then every new one, until the client goes or the host stops


def socket_name(folder: Path) -> str:
    """The socket's file name for ``folder``: one per resolved folder path."""
    folder = folder.resolve()
    key = hashlib.blake2b(os.fsencode(folder), digest_size=8).hexdigest()
    return f"{folder.name[:16]}-{key}.sock"


def _places() -> list[Path]:
    """Where sockets go, best first: ``$XDG_RUNTIME_DIR/hotreload``, ``$TMPDIR/hotreload-UID``."""
    temp = Path(tempfile.gettempdir(), f"hotreload-{os.getuid()}")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [Path(runtime, "hotreload"), temp] if runtime else [temp]


def _place(name: str) -> Path:
    """The first place where a socket called ``name`` fits, even in a fallback folder."""
    places = _places()
    for place in places:
        if len(os.fsencode(place)) + FALLBACK_SUFFIX + 1 + len(os.fsencode(name)) <= SOCKET_PATH_MAX:
            return place
    raise ControlError(f"the control socket path {places[-1] / name} would be longer than the "
                       f"{SOCKET_PATH_MAX} bytes a socket path may have: set TMPDIR to a shorter folder")


def _why_not_private(path: Path) -> str | None:
    """Why ``path`` may not hold this user's sockets; None for a folder of this user's alone.
    Raises OSError when it cannot be looked at (FileNotFoundError: there is none)."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != os.getuid():
        return f"it belongs to uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"others may use it: mode {stat.S_IMODE(info.st_mode):o}"
    return None


def _is_private(path: Path) -> bool:
    try:
        return _why_not_private(path) is None
    except OSError:
        return False


def _fallbacks(place: Path) -> list[Path]:
    """The private ``PLACE-XXXXXXXX`` folders beside ``place``, made by hosts that found
    ``place`` unusable, in name order. Only folders this user owns, mode 0700, count: no one
    else can make one of those."""
    named = re.compile(re.escape(place.name) + r"-[a-z0-9_]{8}")  # as tempfile.mkdtemp names them
    try:
        beside = [Path(entry.path) for entry in os.scandir(place.parent) if named.fullmatch(entry.name)]
    except OSError:
        return []
    return sorted(path for path in beside if _is_private(path))


def socket_paths(folder: Path) -> list[Path]:
    """Where the host of ``folder`` may listen, in the order clients try them: the usual place
    if it is private, then its fallbacks."""
    name = socket_name(folder)
    place = _place(name)
    return [where / name for where in ([place] if _is_private(place) else []) + _fallbacks(place)]


def socket_path(folder: Path) -> Path:
    """Where the host of ``folder`` listens: the first of its places holding its socket, or
    else where a host would listen if that place is usable."""
    paths = socket_paths(folder)
    for path in paths:
        if path.exists():
            return path
    name = socket_name(folder)
    return paths[0] if paths else _place(name) / name


def host_socket_path(folder: Path) -> tuple[Path, str | None]:
    """Where a new host of ``folder`` listens, its folder made if need be, and a note for the
    log when that is not the usual place (taken by another user, or too long a path)."""
    name = socket_name(folder)
    place = _place(name)
    usual = _places()[0]
    in_runtime_dir = place == usual and "XDG_RUNTIME_DIR" in os.environ
    try:
        place.mkdir(mode=0o700, parents=in_runtime_dir, exist_ok=True)
    except FileExistsError:  # something else of that name: not private, so not used
        pass
    except OSError as exc:
        raise ControlError(f"cannot use {place} for the control socket: {exc.strerror}") from None
    try:
        why = _why_not_private(place)
    except OSError as exc:
        raise ControlError(f"cannot use {place} for the control socket: {exc.strerror}") from None
    if why is None:
        note = None if place == usual else (
            f"$XDG_RUNTIME_DIR is too long for a socket path: using {place} for the control socket")
        return place / name, note
    fallbacks = _fallbacks(place)
    try:
        chosen = fallbacks[0] if fallbacks else Path(tempfile.mkdtemp(prefix=place.name + "-", dir=place.parent))
    except OSError as exc:
        raise ControlError(f"{place} is not a private folder of this user ({why}), and no other could be "
                           f"made beside it: {exc.strerror}") from None
    return chosen / name, (f"{place} is not a private folder of this user ({why}): "
                           f"using {chosen} for the control socket")


def check(raw: bytes) -> Command | Tail | dict[str, Any]:
    """A ``Command`` (or a ``Tail``) from one request line, or the error reply it deserves."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {"ok": False, "error": "the request is not valid JSON"}
    if not isinstance(data, dict):
        return {"ok": False, "error": "the request must be a JSON object"}
    cmd = data.get("cmd")
    if cmd not in COMMANDS:
        return {"ok": False, "error": f"unknown command {str(cmd)[:50]!r}; one of: {', '.join(COMMANDS)}"}
    names = data.get("names", [])
    if not isinstance(names, list) or len(names) > MAX_NAMES or not all(
        isinstance(n, str) and 0 < len(n) <= 200 for n in names
    ):
        return {"ok": False, "error": f"names must be a list of up to {MAX_NAMES} worker names"}
    all_workers = data.get("all", False)
    if not isinstance(all_workers, bool):
        return {"ok": False, "error": "all must be true or false"}
    if all_workers and cmd not in ("restart", "stop", "start", "restart-with-dependents"):
        return {"ok": False, "error": f"{cmd} does not take \"all\""}
    if cmd in ("restart", "stop", "start", "restart-with-dependents") and not names and not all_workers:
        return {"ok": False, "error": f"{cmd} needs at least one worker name, or \"all\": true"}
    if names and all_workers:
        return {"ok": False, "error": "worker names or \"all\": true, not both"}
    if cmd in STREAMS:
        return _check_tail(cmd, names, data)
    return Command(cmd, names, all_workers)


def _check_tail(cmd: str, names: list[str], data: dict[str, Any]) -> Tail | dict[str, Any]:
    follow = data.get("follow", False)
    if not isinstance(follow, bool):
        return {"ok": False, "error": "follow must be true or false"}
    if cmd == "events":
        if names:
            return {"ok": False, "error": "events takes no worker names"}
        return Tail(cmd, (), None, follow)
    lines = data.get("lines", DEFAULT_LINES)
    if type(lines) is not int or lines < 0:
        return {"ok": False, "error": "lines must be a whole number >= 0"}
    return Tail(cmd, tuple(names), lines, follow)


class Server:
    """The host's end: a lock, a listening socket and one thread that serves every client."""

    def __init__(self, folder: Path, inbox: Inbox, journal: Journal | None = None) -> None:
        self.folder = folder
        self.inbox = inbox
        self.journal = journal  # a hotreload.journal.Journal: what logs and events read
        self.path, self.notice = host_socket_path(folder)
        self.lock_fd: int | None = None
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.stopping = False
        self.thread = threading.Thread(target=self._main, name="hotreload:control", daemon=True)

    def claim(self) -> None:
        """Take the folder's lock and socket, or raise ``AlreadyRunning``."""
        lock = self.path.with_suffix(".lock")
        try:
            self._claim(lock)
            self._refuse_a_twin()
        except OSError as exc:
            raise ControlError(f"cannot create the control socket {self.path}: {exc.strerror or exc}") from None

    def _claim(self, lock: Path) -> None:
        """The lock is a POSIX record lock (``lockf``), which belongs to the process: a
        worker's forked child (``multiprocessing``, ``os.fork``, a C library's fork) inherits
        the lock file's descriptor but not the lock, so a host killed while such a child
        lives on can be replaced. A ``flock`` belongs to the open file and would pass to the
        child. (The catch, that closing any descriptor of the file releases the lock, cannot
        bite: only this opens it. The child's copy of the listening socket needs nothing: a
        new host binds a new socket at the path.)"""
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(self.folder, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.lock_fd = fd
        self.path.unlink(missing_ok=True)  # left by a host that was killed: the lock was free
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(16)
        self.listener = listener

    def _refuse_a_twin(self) -> None:
        """Refuse, as for a host in the same place, when a host of the same folder holds its
        lock in another of the folder's places (made while the usual one was not private)."""
        for other in socket_paths(self.folder):
            if other.parent == self.path.parent:
                continue
            try:
                fd = os.open(other.with_suffix(".lock"), os.O_RDONLY)
            except OSError:
                continue
            try:  # the same kind of lock as _claim's: another process's shows as taken
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    continue
                pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                self._release()
                raise AlreadyRunning(self.folder, pid) from None
            finally:
                os.close(fd)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Wake the control thread: safe from any thread, also once the server is stopped."""
        try:
            self.wake_w.send(b"\0")
        except OSError:  # full of wake-ups already, or closed
            pass

    def stop(self) -> None:
        self.stopping = True
        self.wake()
        if self.thread.ident is not None:
            self.thread.join(JOIN_TIMEOUT)
        self._release()
        self.wake_r.close()
        self.wake_w.close()

    def _release(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            self.path.unlink(missing_ok=True)
        if self.lock_fd is not None:
            self.path.with_suffix(".lock").unlink(missing_ok=True)
            os.close(self.lock_fd)  # releases the lock
            self.lock_fd = None

    def _main(self) -> None:
        assert self.listener is not None
        clients = _Clients(self.listener, self.inbox, self.wake, self.journal)
        try:
            clients.serve(self.wake_r, lambda: self.stopping)
        finally:
            clients.farewell(self.wake_r)


@dataclass(eq=False)
class _Client:
    conn: socket.socket
    deadline: float  # time.monotonic() by which its current phase must be over
    # "reading" -> "waiting" (for the host loop) -> "writing" -> "closed";
    # or "reading" -> "streaming" (logs, events) -> "closed"
    phase: str = "reading"
    received: bytearray = field(default_factory=bytearray)
    command: Command | None = None
    unsent: bytes = b""
    graced: bool = False  # the host loop took its command: a little longer to answer it
    pending: Deque[bytes] = field(default_factory=deque)  # a stream's lines, after unsent
    follower: Follower | None = None  # a following stream's: where its new lines wait
    interest: int = selectors.EVENT_READ  # what the selector watches it for


class _Clients:
    """The control thread's work: every connection, each with its buffers and deadline, served
    at once by one selector. It sleeps until a client, an answer or a deadline needs it: with
    no connection open there is no deadline, and no wake-up at all."""

    def __init__(
        self, listener: socket.socket, inbox: Inbox, wake: Callable[[], None], journal: Journal | None = None,
    ) -> None:
        self.listener = listener
        self.inbox = inbox
        self.wake = wake
        self.journal = journal
        self.selector = selectors.DefaultSelector()
        self.clients: set[_Client] = set()
        self.listening = False
        self.paused_until: float | None = None  # accept() failed (no file descriptors left)

    def serve(self, wake_r: socket.socket, stopping: Callable[[], bool]) -> None:
        self.listener.setblocking(False)
        self.selector.register(wake_r, selectors.EVENT_READ)
        while not stopping():
            self._listen(self._requests() < MAX_CLIENTS and self.paused_until is None)
            deadlines = [c.deadline for c in self.clients if c.phase != "streaming"]
            deadlines += [t for t in [self.paused_until] if t is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, events in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj is wake_r:
                    _drain(wake_r)
                    self._feed_followers()
                else:
                    self._guarded(self._on_event, key.data, events)
            now = time.monotonic()
            if self.paused_until is not None and now >= self.paused_until:
                self.paused_until = None
            for client in list(self.clients):
                self._guarded(self._on_time, client, now)

    def farewell(self, wake_r: socket.socket) -> None:
        """At the host's stop: every client gets its answer if there is one, or is told why
        not, in one attempt that does not wait; a stream gets its last lines and its end
        within ``FAREWELL_TIMEOUT``; then everything is closed."""
        self._end_streams(wake_r)
        for client in list(self.clients):
            if client.phase == "reading":
                client.unsent = _line({"ok": False, "error": "the host is stopping"})
            elif client.phase == "waiting":
                assert client.command is not None
                client.unsent = _line(self._outcome(client.command, "the host is stopping"))
            try:
                client.conn.send(client.unsent)
            except OSError:
                pass
            self._close(client)
        self.selector.close()

    def _listen(self, wanted: bool) -> None:
        if wanted and not self.listening:
            self.selector.register(self.listener, selectors.EVENT_READ)
        elif self.listening and not wanted:
            self.selector.unregister(self.listener)
        self.listening = wanted

    def _accept(self) -> None:
        while self._requests() < MAX_CLIENTS:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the listener would stay readable, so pause
                self.paused_until = time.monotonic() + ACCEPT_PAUSE
                return
            conn.setblocking(False)
            client = _Client(conn, time.monotonic() + CLIENT_TIMEOUT)
            self.clients.add(client)
            self.selector.register(conn, selectors.EVENT_READ, client)

    def _guarded(self, step: Callable[..., None], client: _Client, *args: Any) -> None:
        try:
            step(client, *args)
        except Exception:  # noqa: BLE001 - no client may end this thread
            self._close(client)

    def _on_event(self, client: _Client, events: int) -> None:
        if client.phase == "reading" and events & selectors.EVENT_READ:
            self._read(client)
        elif client.phase == "writing" and events & selectors.EVENT_WRITE:
            self._write(client)
        elif client.phase == "streaming":
            if events & selectors.EVENT_READ:
                self._ignore(client)
            if events & selectors.EVENT_WRITE and client.phase == "streaming":
                self._pump(client)

    def _on_time(self, client: _Client, now: float) -> None:
        if client.phase == "waiting":
            assert client.command is not None
            if client.command.done.is_set() or now >= client.deadline and client.command.expire():
                self._reply(client, self._outcome(client.command, f"the host was busy for {ANSWER_TIMEOUT:g} s"))
            elif now >= client.deadline and not client.graced:
                client.graced = True
                client.deadline = now + ANSWER_GRACE
            elif now >= client.deadline:
                self._reply(client, self._outcome(client.command, ""))
        elif client.phase == "reading" and now >= client.deadline:
            self._reply(client, {"ok": False, "error": f"timed out: a whole request must arrive within "
                                                       f"{CLIENT_TIMEOUT:g} s"})
        elif client.phase == "writing" and now >= client.deadline:
            self._close(client)

    @staticmethod
    def _outcome(command: Command, why_not: str) -> dict[str, Any]:
        """The host's answer; else "not done" for an expired command; else, for one the host
        loop took and did not answer (its log says why), that its outcome is unknown."""
        if command.done.is_set() and command.reply is not None:
            return command.reply
        if command.expire():
            return {"ok": False, "error": f"not done: {why_not}; try again"}
        return {"ok": False, "error": "the host took the command but did not answer; see its log"}

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        client.received += chunk
        line, newline, _ = client.received.partition(b"\n")
        if len(line) > MAX_LINE:
            self._reply(client, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
        elif newline or not chunk:  # a whole line, or all the client will send
            self._request(client, bytes(line))

    def _request(self, client: _Client, raw: bytes) -> None:
        checked = check(raw)
        if isinstance(checked, Tail):
            self._stream(client, checked)
            return
        if not isinstance(checked, Command):
            self._reply(client, checked)
            return
        checked.expires = client.deadline = time.monotonic() + ANSWER_TIMEOUT
        checked.notify = self.wake
        client.command = checked
        client.phase = "waiting"
        self.selector.unregister(client.conn)  # nothing more to read; the host loop answers
        self.inbox.put(checked)

    def _reply(self, client: _Client, reply: dict[str, Any]) -> None:
        client.unsent = _line(reply)
        client.phase = "writing"
        client.deadline = time.monotonic() + CLIENT_TIMEOUT
        self._write(client)
        if client.phase == "writing":
            try:
                self.selector.modify(client.conn, selectors.EVENT_WRITE, client)
            except KeyError:
                self.selector.register(client.conn, selectors.EVENT_WRITE, client)

    def _write(self, client: _Client) -> None:
        if self._send(client) and not client.unsent:
            self._close(client)

    def _send(self, client: _Client) -> bool:
        """Send as much of ``client.unsent`` as its socket takes now, without waiting. False
        if the connection failed: it is closed then."""
        try:
            sent = client.conn.send(client.unsent)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._close(client)
            return False
        client.unsent = client.unsent[sent:]
        return True

    def _close(self, client: _Client) -> None:
        try:
            self.selector.unregister(client.conn)
        except (KeyError, ValueError):
            pass
        client.conn.close()
        client.phase = "closed"
        self.clients.discard(client)
        if client.follower is not None:
            self.journal.unfollow(client.follower)
            client.follower = None
        client.pending.clear()

    # --- streams: logs and events ---------------------------------------------------------

    def _streams(self) -> list[_Client]:
        return [c for c in self.clients if c.phase == "streaming"]

    def _requests(self) -> int:
        """Connections other than streams: those MAX_CLIENTS counts."""
        return len(self.clients) - len(self._streams())

    def _stream(self, client: _Client, tail: Tail) -> None:
        """Answer ``logs`` or ``events`` from the journal: the recent lines, then, following,
        every new one. The client's deadline is gone: it is written as fast as it reads."""
        if self.journal is None:
            self._reply(client, {"ok": False, "error": "this host keeps no journal"})
            return
        if len(self._streams()) >= MAX_STREAMS:
            self._reply(client, {"ok": False, "error": f"{MAX_STREAMS} clients are reading this host's logs "
                                                       f"and events already; try again later"})
            return
        known = self.journal.names()
        unknown = [name for name in tail.names if name not in known]
        if unknown:
            self._reply(client, {"ok": False, "error": f"no worker named {', '.join(unknown)}; "
                                                       f"the names are: {', '.join(sorted(known))}"})
            return
        lines, client.follower = self.journal.tail(tail.kind, tail.names, tail.lines,
                                                   self.wake if tail.follow else None)
        client.phase = "streaming"
        client.deadline = math.inf
        client.pending.append(_line({"ok": True}))
        client.pending.extend(lines)
        if client.follower is None:
            client.pending.append(_line({"end": "done"}))
        self._pump(client)

    def _feed_followers(self) -> None:
        """After a wake-up: the followers with nothing left to send take their new lines."""
        for client in self._streams():
            if client.follower is not None and not client.unsent:
                self._guarded(self._pump, client)

    def _pump(self, client: _Client) -> None:
        """Send what the stream has, as far as its socket takes it without waiting; watch for
        it to take more. A stream that is not following closes once all is sent."""
        while True:
            if not client.unsent:
                client.unsent = self._next_chunk(client)
                if not client.unsent:
                    break
            waiting = len(client.unsent)
            if not self._send(client):
                return
            if len(client.unsent) == waiting:  # the socket takes no more for now
                break
        if not client.unsent and client.follower is None:  # all sent, end line included
            self._close(client)
            return
        reading = client.interest & selectors.EVENT_READ
        interest = reading | (selectors.EVENT_WRITE if client.unsent else 0)
        if interest != client.interest:
            if not client.interest:
                self.selector.register(client.conn, interest, client)
            elif not interest:
                self.selector.unregister(client.conn)
            else:
                self.selector.modify(client.conn, interest, client)
            client.interest = interest

    def _next_chunk(self, client: _Client) -> bytes:
        """Up to ``CHUNK_BYTES`` of the stream's next lines (at least one whole line)."""
        if not client.pending and client.follower is not None:
            self._take(client)
        chunk: list[bytes] = []
        size = 0
        while client.pending and size < CHUNK_BYTES:
            chunk.append(client.pending.popleft())
            size += len(chunk[-1])
        return b"".join(chunk)

    def _take(self, client: _Client) -> None:
        """The follower's new lines join the stream, then a gap line if it missed some."""
        lines, dropped = self.journal.take(client.follower)
        client.pending.extend(lines)
        if dropped:
            client.pending.append(_line({"gap": dropped}))

    def _ignore(self, client: _Client) -> None:
        """A stream's client has nothing more to say: what it sends is dropped. Its end (the
        client closed, Ctrl-C) ends a following stream; the rest of a stream that is not
        following is still sent, as a client may close its sending side once it has asked."""
        try:
            if client.conn.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        if client.follower is not None:
            self._close(client)
            return
        client.interest &= ~selectors.EVENT_READ  # nothing more will come: stop watching
        if client.interest:
            self.selector.modify(client.conn, client.interest, client)
        else:
            self.selector.unregister(client.conn)

    def _end_streams(self, wake_r: socket.socket) -> None:
        """At the host's stop: each stream takes its last lines and its end line, as fast as
        it reads, for up to ``FAREWELL_TIMEOUT`` in all."""
        deadline = time.monotonic() + FAREWELL_TIMEOUT
        self._listen(False)
        for client in self._streams():
            if client.follower is not None:
                self._take(client)  # its last lines
                self.journal.unfollow(client.follower)
                client.follower = None
            client.pending.append(_line({"end": "the host is stopping"}))
            self._guarded(self._pump, client)
        while self._streams():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, events in self.selector.select(remaining):
                if key.fileobj is wake_r:
                    _drain(wake_r)
                elif isinstance(key.data, _Client):
                    self._guarded(self._on_event, key.data, events)
        for client in self._streams():
            self._close(client)


def _line(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply).encode() + b"\n"


def _drain(conn: socket.socket) -> None:
    try:
        while conn.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def request(folder: Path, cmd: str, names: Sequence[str] = (), all_workers: bool = False) -> dict[str, Any]:
    """Send one request to the host of ``folder`` and return its reply; ``all_workers``:
    to every worker, rather than to ``names``.

    Waits longer than the host may take to answer, so that the reply — done, or not done
    because the host was busy — says what happened.
    """
    where = folder.resolve()
    with _connect(where) as conn:
        try:
            conn.settimeout(REPLY_TIMEOUT)
            asked = {"cmd": cmd, **({"all": True} if all_workers else {"names": list(names)})}
            conn.sendall(json.dumps(asked).encode() + b"\n")
            raw = _read_reply(conn, time.monotonic() + REPLY_TIMEOUT)
        except socket.timeout:
            raise ControlError(f"the host on {where} did not reply within {REPLY_TIMEOUT:g} s; "
                               f"whether it acted is unknown") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the host on {where}: {exc.strerror or exc}") from None
    if not raw:
        raise ControlError(f"the host on {where} closed the connection without a reply")
    try:
        reply = json.loads(raw)
    except (ValueError, RecursionError):
        raise ControlError(f"the host on {where} sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError("the host sent a reply that is not an object")
    return reply


def stream(
    folder: Path, cmd: str, names: Sequence[str] = (), lines: int | None = None, follow: bool = False,
) -> Iterator[dict[str, Any]]:
    """Ask the host of ``folder`` for ``logs`` or ``events``; yield each line of its answer
    as a dict — a record, an event, ``{"gap": N}`` — until its end line. Following, waits
    for new lines as long as it takes: the end comes when the host stops. Raises
    ``ControlError`` when there is no host, it refuses (an unknown name), or the connection
    ends before the end line."""
    where = folder.resolve()
    request = {"cmd": cmd, "names": list(names), "follow": follow}
    if lines is not None:
        request["lines"] = lines
    with _connect(where) as conn:
        try:
            conn.settimeout(REPLY_TIMEOUT)
            conn.sendall(json.dumps(request).encode() + b"\n")
            reader = conn.makefile("rb")
            header = _parsed(reader.readline(), where)
            if not header.get("ok"):
                raise ControlError(str(header.get("error", "the host refused")))
            if follow:
                conn.settimeout(None)
            while True:
                line = _parsed(reader.readline(), where)
                if "end" in line:
                    return
                yield line
        except socket.timeout:
            raise ControlError(f"the host on {where} sent nothing for {REPLY_TIMEOUT:g} s") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the host on {where}: {exc.strerror or exc}") from None


def _parsed(raw: bytes, where: Path) -> dict[str, Any]:
    """One whole line of a stream as a dict; a line cut short means the host went away."""
    if not raw.endswith(b"\n"):
        raise ControlError(f"lost the connection to the host on {where}")
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        raise ControlError(f"the host on {where} sent a line that is not JSON") from None
    if not isinstance(line, dict):
        raise ControlError(f"the host on {where} sent a line that is not an object")
    return line


def _connect(folder: Path) -> socket.socket:
    """A connection to the host of ``folder``, retried while its listen backlog is full."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    pause = 0.01
    for path in socket_paths(folder):
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.setblocking(False)
            try:
                conn.connect(str(path))
                return conn
            except (BlockingIOError, InterruptedError):  # the backlog is full: the host is busy
                conn.close()
                if time.monotonic() >= deadline:
                    raise ControlError(f"the host on {folder} is not accepting connections: its backlog "
                                       f"stayed full for {CONNECT_TIMEOUT:g} s") from None
                time.sleep(pause)
                pause = min(2 * pause, 0.1)
            except (FileNotFoundError, ConnectionRefusedError):  # none, or left by a killed host
                conn.close()
                break
            except OSError as exc:
                conn.close()
                raise ControlError(f"cannot reach the host on {folder} at {path}: {exc.strerror or exc}") from None
    raise ControlError(f"no hotreload host is running on {folder}")


def _read_reply(conn: socket.socket, deadline: float) -> bytes:
    """The reply's line, read until its newline (or the end) by ``deadline``; no size cap."""
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        conn.settimeout(remaining)
        chunk = conn.recv(65536)
        end = chunk.find(b"\n")
        if not chunk or end >= 0:
            return bytes(data + chunk[:end] if end >= 0 else data)
        data += chunk
