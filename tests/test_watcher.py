"""The watcher in-process: batches of saves, and loud fallback to polling."""
import errno
import logging
import queue
import time

import pytest
from loguru import logger

from hotreload import watcher
from hotreload.debounce import Windows
from hotreload.filters import SourceFilter
from hotreload.records import Changes
from hotreload.watcher import Watcher

WAIT = 20.0


@pytest.fixture
def messages():
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    yield lines
    logger.remove(sink)


@pytest.fixture
def watch(tmp_path):
    started = []

    def start(settle=0.2):
        inbox = queue.SimpleQueue()
        w = Watcher(SourceFilter([tmp_path]), inbox, Windows(settle=settle))
        w.start()
        started.append(w)
        return w, inbox

    yield start
    for w in started:
        w.stop()
        assert not w.thread.is_alive()


def next_changes(inbox) -> set:
    message = inbox.get(timeout=WAIT)
    assert isinstance(message, Changes)
    return set(message.paths)


def saves_are_seen(path, inbox) -> bool:
    """Save ``path`` until a batch names it. A polling observer compares with a snapshot it
    takes as it starts, so a save racing that snapshot is missed; the next one is not."""
    for attempt in range(int(WAIT)):
        path.write_text(f"x = {attempt}")
        try:
            message = inbox.get(timeout=1.0)
        except queue.Empty:
            continue
        return isinstance(message, Changes) and str(path) in message.paths
    return False


def test_a_save_is_one_batch_and_temp_files_are_ignored(watch, tmp_path):
    w, inbox = watch()
    assert not w.polling
    (tmp_path / "4913").write_text("")
    (tmp_path / ".a.py.swp").write_text("")
    (tmp_path / "a.py").write_text("x = 1")
    (tmp_path / "b.py").write_text("x = 1")
    assert next_changes(inbox) == {str(tmp_path / "a.py"), str(tmp_path / "b.py")}


def test_reads_of_watched_files_make_no_batch(watch, tmp_path):
    """The host's own reads during a reload must not come back as changes."""
    (tmp_path / "a.py").write_text("x = 1")
    w, inbox = watch()
    for _ in range(20):
        (tmp_path / "a.py").read_bytes()
    (tmp_path / "b.py").write_text("x = 1")  # events arrive in order: b's come after any of a's
    assert next_changes(inbox) == {str(tmp_path / "b.py")}


def test_a_reader_gets_the_certified_content_and_a_frozen_view_during_a_swap(watch, tmp_path):
    """What the host reads is what the watcher read when it knew the save complete."""
    path = tmp_path / "a.py"
    w, inbox = watch()
    path.write_text("x = 1")
    assert next_changes(inbox) == {str(path)}
    with open(path, "w") as writer:  # truncated, half-written, and being read
        writer.write("x = ")
        writer.flush()
        assert w.read_source(str(path)) == b"x = 1"
        w.freeze()
        writer.write("2")
    assert next_changes(inbox) == {str(path)}
    assert w.read_source(str(path)) == b"x = 1"  # frozen: the swap's own version
    w.thaw()
    assert w.read_source(str(path)) == b"x = 2"


def test_hitting_the_inotify_limit_falls_back_to_polling_and_says_how_to_fix_it(
    watch, tmp_path, monkeypatch, messages
):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watcher._NativeObserver, "schedule", no_space)
    w, inbox = watch()
    assert w.polling
    assert any("inotify watch limit" in m and "sysctl fs.inotify.max_user_watches" in m for m in messages)
    assert saves_are_seen(tmp_path / "a.py", inbox)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_observer_thread_is_reported_and_replaced_by_polling(watch, tmp_path, monkeypatch, messages):
    def die(self, *args, **kwargs):
        raise RuntimeError("observer thread died")

    monkeypatch.setattr(watcher._NativeObserver, "dispatch_events", die)
    w, inbox = watch()
    assert saves_are_seen(tmp_path / "a.py", inbox)
    assert w.polling and any("the file watcher thread died" in m for m in messages)


def test_a_kernel_queue_overflow_rescans_every_source_file(watch, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.py", "sub/b.py", "notes.txt"):
        (tmp_path / name).write_text("x = 1")
    w, inbox = watch()
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert next_changes(inbox) == {str(tmp_path / "a.py"), str(tmp_path / "sub" / "b.py")}


def test_a_rescan_includes_the_files_a_worker_watches(tmp_path):
    (tmp_path / "templates").mkdir()
    for name in ("a.py", "templates/t.html", "templates/t.html~", "notes.txt"):
        (tmp_path / name).write_text("x = 1")
    inbox = queue.SimpleQueue()
    files = SourceFilter([tmp_path])
    files.watch("page", ["templates/*.html"])
    w = Watcher(files, inbox, Windows(settle=0.2))
    w.start()
    try:
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; events were lost")
        assert next_changes(inbox) == {str(tmp_path / "a.py"), str(tmp_path / "templates" / "t.html")}
    finally:
        w.stop()


def test_the_git_folder_is_found_from_a_sub_folder_and_through_a_gitdir_file(tmp_path):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "workers").mkdir(parents=True)
    assert watcher.git_dir(tmp_path / "repo" / "src" / "workers") == tmp_path / "repo" / ".git"
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".git").write_text("gitdir: ../repo/.git/worktrees/linked\n")
    assert watcher.git_dir(tmp_path / "linked") == (tmp_path / "repo" / ".git" / "worktrees" / "linked").resolve()


def test_a_batch_waits_while_git_holds_its_index_lock(watch, tmp_path, monkeypatch, messages):
    (tmp_path / ".git").mkdir()
    lock = tmp_path / ".git" / "index.lock"
    lock.write_text("")
    w, inbox = watch()
    (tmp_path / "a.py").write_text("x = 1")
    with pytest.raises(queue.Empty):  # git is still rewriting files
        inbox.get(timeout=0.3)
    lock.unlink()  # the checkout is done: its event releases the batch
    assert next_changes(inbox) == {str(tmp_path / "a.py")}
    monkeypatch.setattr(watcher, "LOCK_WAIT", 0.1)
    lock.write_text("")  # left behind by a crashed git: applied anyway, with a warning
    (tmp_path / "b.py").write_text("x = 1")
    assert next_changes(inbox) == {str(tmp_path / "b.py")}
    assert any("index.lock has existed for 0.1 s" in m for m in messages)


def test_a_watch_whose_thread_ends_is_reported_and_replaced_by_polling(watch, tmp_path, messages):
    w, inbox = watch()
    emitter = w.observer._emitter_for_watch[w.watches[tmp_path]]
    emitter.stop()  # its thread ends while the folder is still there
    emitter.join(WAIT)
    assert saves_are_seen(tmp_path / "a.py", inbox)
    assert w.polling and any(f"watching {tmp_path} stopped unexpectedly" in m for m in messages)


def test_a_deleted_root_is_awaited_and_rescanned_when_it_comes_back(watch, tmp_path, messages):
    root = tmp_path / "root"
    root.mkdir()
    inbox = queue.SimpleQueue()
    w = Watcher(SourceFilter([root]), inbox, Windows())
    w.start()
    try:
        root.rmdir()
        wait = time.monotonic() + WAIT
        while not any("is gone" in m for m in messages):
            assert time.monotonic() < wait, messages
            time.sleep(0.01)
        root.mkdir()
        (root / "a.py").write_text("x = 1")
        changes = set()
        while str(root / "a.py") not in changes:
            changes |= next_changes(inbox)
        assert not w.polling and any(f"the watched folder {root} is back" in m for m in messages)
    finally:
        w.stop()


def test_symlinked_folders_are_no_false_alarm_of_the_inotify_limit(watch, tmp_path, messages):
    """A folder linked into the workers folder (data, a checkout, a link back up) gets no
    watch of its own, as watchdog does not follow links: counting it as one that could not
    be watched claimed the inotify limit was reached and fell back to polling."""
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "sub").mkdir(parents=True)
    try:
        (tmp_path / "templates").mkdir()
        (tmp_path / "data").symlink_to(outside)
        (tmp_path / "templates" / "up").symlink_to("..")
        (tmp_path / "templates" / "sub").symlink_to(outside / "sub")
        w, inbox = watch()
        assert not w.polling, messages
        assert not any("inotify watch limit" in m for m in messages)
        assert saves_are_seen(tmp_path / "a.py", inbox)
    finally:
        for link in ("data", "templates/up", "templates/sub"):
            (tmp_path / link).unlink()
        (outside / "sub").rmdir()
        outside.rmdir()
