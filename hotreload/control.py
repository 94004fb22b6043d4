"""The control socket: ``hotreload status | restart | stop | start`` talk to a running host.

A host listens on a Unix domain socket found from its workers folder: in
``$XDG_RUNTIME_DIR/hotreload/`` (or ``/tmp/hotreload-UID/``), a folder only its owner may
enter, the socket itself mode 0600. No TCP. A lock file beside the socket, held for the
host's life, makes a second host on the same folder refuse to start; the kernel drops the
lock when a host dies, so a socket left by a killed host is simply replaced.

The protocol is one JSON object per line each way. Requests are checked here, in the
control thread, and answered with ``{"ok": false, "error": ...}`` when malformed; a good one
is posted to the host's inbox as a ``Command`` and answered with what ``core`` puts in it.
Every read and write has a timeout and a size cap: a client that misbehaves can delay
other clients by one timeout, never the host.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import selectors
import socket
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "COMMANDS", "AlreadyRunning", "Command", "ControlError", "Server", "request", "socket_path",
]

COMMANDS = ("status", "restart", "stop", "start", "restart-host")
MAX_LINE = 64 * 1024  # bytes in one request or reply line
MAX_NAMES = 1000
CLIENT_TIMEOUT = 1.0  # seconds a client gets to send its request or read its reply
ANSWER_TIMEOUT = 5.0  # seconds the host loop gets to answer
JOIN_TIMEOUT = 2.0


class ControlError(Exception):
    """No host to talk to, or a bad request or reply; the message says which."""


class AlreadyRunning(ControlError):
    def __init__(self, folder: Path, pid: str) -> None:
        super().__init__(f"another hotreload host (pid {pid}) is already running on {folder}; "
                         f"stop it first, or use `hotreload status -d {folder}`")
        self.pid = pid


@dataclass(eq=False)
class Command:
    """A checked request, waiting in the inbox for the host loop to answer it."""

    cmd: str
    names: list[str] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def answer(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()


def runtime_dir() -> Path:
    """The private folder for sockets: created 0700, and refused if anyone else can use it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base, "hotreload") if base else Path(tempfile.gettempdir(), f"hotreload-{os.getuid()}")
    try:
        path.mkdir(mode=0o700, parents=bool(base), exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ControlError(f"cannot use {path} for the control socket: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ControlError(f"{path} is not a private folder of this user (it must be a folder, "
                           f"owned by uid {os.getuid()}, mode 0700); remove it and try again")
    return path


def socket_path(folder: Path) -> Path:
    """Where the host of ``folder`` listens: one socket per resolved folder path."""
    folder = folder.resolve()
    key = hashlib.blake2b(str(folder).encode(), digest_size=8).hexdigest()
    return runtime_dir() / f"{folder.name[:16]}-{key}.sock"


def check(raw: bytes) -> Command | dict[str, Any]:
    """A ``Command`` from one request line, or the error reply it deserves."""
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
    if cmd in ("restart", "stop", "start") and not names:
        return {"ok": False, "error": f"{cmd} needs at least one worker name"}
    return Command(cmd, names)


class Server:
    """The host's end: a lock, a listening socket and one thread that serves clients in turn."""

    def __init__(self, folder: Path, inbox: Any) -> None:
        self.folder = folder
        self.inbox = inbox
        self.path = socket_path(folder)
        self.lock_fd: int | None = None
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = os.pipe()
        self.thread = threading.Thread(target=self._main, name="hotreload:control", daemon=True)

    def claim(self) -> None:
        """Take the folder's lock and socket, or raise ``AlreadyRunning``."""
        lock = self.path.with_suffix(".lock")
        try:
            self._claim(lock)
        except OSError as exc:
            raise ControlError(f"cannot create the control socket {self.path}: {exc.strerror}") from None

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

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        os.write(self.wake_w, b"x")
        self.thread.join(JOIN_TIMEOUT)
        if self.listener is not None:
            self.listener.close()
            self.path.unlink(missing_ok=True)
        if self.lock_fd is not None:
            self.path.with_suffix(".lock").unlink(missing_ok=True)
            os.close(self.lock_fd)  # releases the lock
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _main(self) -> None:
        assert self.listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            selector.register(self.wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self.wake_r in ready:
                    return
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                with conn:
                    try:
                        self._serve(conn)
                    except Exception:  # noqa: BLE001 - no client may end this thread
                        pass

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT)
        try:
            raw = _read_line(conn)
        except (OSError, ControlError) as exc:
            reply: dict[str, Any] = {"ok": False, "error": str(exc) or "timed out"}
        else:
            checked = check(raw)
            if isinstance(checked, Command):
                self.inbox.put(checked)
                if checked.done.wait(ANSWER_TIMEOUT) and checked.reply is not None:
                    reply = checked.reply
                else:
                    reply = {"ok": False, "error": "the host did not answer in time"}
            else:
                reply = checked
        conn.sendall(json.dumps(reply).encode() + b"\n")


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ControlError(f"request longer than {MAX_LINE} bytes")
    return data.split(b"\n", 1)[0]


def request(folder: Path, cmd: str, names: Sequence[str] = (), timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the host of ``folder`` and return its reply."""
    path = socket_path(folder)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no hotreload host is running on {folder.resolve()}") from None
        conn.sendall(json.dumps({"cmd": cmd, "names": list(names)}).encode() + b"\n")
        try:
            raw = _read_line(conn)
            reply = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise ControlError(f"no valid reply from the host on {folder.resolve()}: {exc}") from None
    if not isinstance(reply, dict):
        raise ControlError("the host sent a reply that is not an object")
    return reply
