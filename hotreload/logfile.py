"""``--log-file``: the loguru sink that writes the log to a file.

Rotated at ``ROTATE_BYTES`` (the full file becomes ``PATH.1``, the one before ``PATH.2``…,
``KEEP`` old files kept); opened again when it was deleted or replaced (logrotate, a
``rm`` by hand), as the stdlib's WatchedFileHandler does. A file that cannot be written —
a full disk, a folder gone read-only — is reported in one line and given up: the log goes
on to stderr. (loguru's own file sink would print a block of traceback for every line.)
"""
from __future__ import annotations

import os
from typing import Any, BinaryIO

__all__ = ["KEEP", "LogFile", "ROTATE_BYTES"]

ROTATE_BYTES = 10 * 1024 * 1024
KEEP = 5


class LogFile:
    """A loguru sink (a stream: loguru calls ``write`` and, when the sink is removed, ``stop``).
    Opening it raises ``OSError`` when the file cannot be created,
    so that a bad path is refused before anything starts."""

    def __init__(self, path: str, rotate_bytes: int = ROTATE_BYTES, keep: int = KEEP) -> None:
        self.path = os.path.abspath(path)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.broken = False  # once a write failed: the sink's filter drops every record
        self._file: BinaryIO | None = None
        self._identity = (-1, -1)
        self._open()

    def _open(self) -> None:
        try:
            self._file = open(self.path, "ab")
        except FileNotFoundError:  # a folder on the way is missing: create it, as loguru does
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._file = open(self.path, "ab")
        info = os.fstat(self._file.fileno())
        self._identity = (info.st_dev, info.st_ino)

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # what it could not flush is lost either way
            self._file = None

    def _reopen_if_replaced(self) -> None:
        try:
            info = os.stat(self.path)
            current = (info.st_dev, info.st_ino)
        except FileNotFoundError:
            current = None
        if self._file is None or current != self._identity:  # stopped (a sink added again), or replaced
            self._close()
            self._open()

    def _rotate(self) -> None:
        self._close()
        for number in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{number}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{number + 1}")
        if self.keep > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._open()

    def write(self, message: Any) -> None:
        if self.broken:
            return
        data = str(message).encode("utf-8", "replace")
        try:
            self._reopen_if_replaced()
            assert self._file is not None
            size = self._file.tell()
            if size and size + len(data) > self.rotate_bytes:
                self._rotate()
                assert self._file is not None
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self.broken = True
            self._close()
            from loguru import logger

            # Logged from inside this sink: the filter keeps the record away from it.
            logger.bind(worker="host").error(
                f"cannot write the log file {self.path}: {exc.strerror or exc}; logging to stderr only from now on"
            )

    def keep_record(self, record: Any) -> bool:
        """The sink's loguru filter: nothing once the file is given up."""
        return not self.broken

    def stop(self) -> None:
        self._close()
