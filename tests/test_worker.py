"""The worker contract's pure parts: can ``run`` be called as ``run(ctx)``?"""
import functools

from hotreload.worker import Execution, call_problem


def takes_ctx(ctx):
    pass


def takes_nothing():
    pass


def takes_two(ctx, extra):
    pass


async def async_takes_ctx(ctx):
    pass


class Callable:
    def __call__(self, ctx):
        pass


def test_run_that_takes_ctx_passes_in_every_form():
    for run in (takes_ctx, async_takes_ctx, Callable(), lambda ctx, extra=1: None, lambda *args: None,
                functools.wraps(takes_ctx)(lambda *a, **k: takes_ctx(*a, **k)), print):
        assert call_problem(run) is None, run


def test_a_run_that_cannot_take_ctx_is_reported_with_its_file_and_line():
    message, path, line = call_problem(takes_nothing)
    assert message == "run() cannot be called as run(ctx): too many positional arguments"
    assert (path, line) == (__file__, takes_nothing.__code__.co_firstlineno)
    message, _, _ = call_problem(takes_two)
    assert message == "run(ctx, extra) cannot be called as run(ctx): missing a required argument: 'extra'"
    message, path, line = call_problem(functools.partial(takes_two, 1, 2))
    assert message.startswith("run() cannot be called as run(ctx)") and (path, line) == (None, None)


def test_migrate_is_checked_against_its_own_call():
    assert call_problem(lambda state, old_version: state, "migrate", ("state", "old_version")) is None
    message, path, line = call_problem(takes_ctx, "migrate", ("state", "old_version"))
    assert message == "migrate(ctx) cannot be called as migrate(state, old_version): too many positional arguments"
    assert (path, line) == (__file__, takes_ctx.__code__.co_firstlineno)


def execution_of(target, **settings):
    import queue

    from hotreload.log import logger
    from hotreload.records import Worker
    from hotreload.settings import Settings

    inbox = queue.SimpleQueue()
    worker = Worker("w", "w.py", logger, Settings(**settings), target=target)
    return Execution(worker, inbox), inbox


def test_ctx_sleep_stopping_and_heartbeat_are_signs_of_life():
    execution, _ = execution_of(takes_ctx, heartbeat=30.0)
    ctx = execution.ctx
    assert execution.heartbeat == 30.0
    for sign in (lambda: ctx.stopping, ctx.heartbeat, lambda: ctx.sleep(0)):
        execution.beat = 0.0
        sign()
        assert execution.beat > 0.0
    assert not execution.sleeping  # only while inside ctx.sleep


def test_a_worker_inside_ctx_sleep_is_marked_sleeping():
    seen = []
    execution, _ = execution_of(takes_ctx)
    execution.stop_event.wait = lambda timeout: seen.append(execution.sleeping)  # what sleep waits on
    execution.ctx.sleep(5)
    assert seen == [True] and not execution.sleeping


def test_ctx_ready_posts_one_ready_message_to_the_inbox():
    from hotreload.records import Ready

    execution, inbox = execution_of(takes_ctx, ready="signal")
    execution.ctx.ready()
    execution.ctx.ready()
    message = inbox.get_nowait()
    assert isinstance(message, Ready) and message.execution is execution and inbox.empty()


def test_a_worker_stays_sleeping_while_any_of_its_threads_is_inside_ctx_sleep():
    import threading

    execution, _ = execution_of(takes_ctx)
    entered, release = threading.Event(), threading.Event()
    execution.stop_event.wait = lambda timeout: (entered.set(), release.wait(5))[1]  # what sleep waits on
    waiting = threading.Thread(target=execution.ctx.sleep, args=(5,), name="test-sleeper")
    waiting.start()
    try:
        assert entered.wait(5)
        execution.stop_event.wait = lambda timeout: False
        execution.ctx.sleep(0)  # another thread of the worker enters ctx.sleep and leaves it
        assert execution.sleeping  # the first is still inside
    finally:
        release.set()
        waiting.join(5)
    assert not execution.sleeping
