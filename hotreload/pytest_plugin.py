"""The pytest plugin (entry point ``pytest11``): the ``hotreload_worker`` fixture."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import pytest

from hotreload.testing import WorkerUnderTest, run_worker

__all__ = ["hotreload_worker"]


@pytest.fixture
def hotreload_worker() -> Iterator[Callable[..., WorkerUnderTest]]:
    """``hotreload_worker(path_or_module, state=None)`` starts a worker in-process (see
    ``hotreload.testing.run_worker``); every worker it started is stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda target, state=None: stack.enter_context(run_worker(target, state))
