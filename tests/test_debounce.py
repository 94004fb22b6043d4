"""Debouncing file events into batches of complete files: a pure state machine."""
from pathlib import PurePath

import pytest

from hotreload.debounce import Debouncer, Windows, classify

ROOT = PurePath("/w")
W = Windows(coalesce=0.01, hold=0.1, settle=0.5)


def test_events_that_say_nothing_about_content_are_ignored():
    assert [classify(e) for e in ("opened", "closed_no_write", "attrib")] == [None, None, None]
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "opened", 0.0)
    assert debouncer.due() is None


def test_close_after_write_is_flushed_after_the_coalescing_window():
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "modified", 0.0)
    debouncer.add("/w/a.py", "closed", 0.001)
    assert debouncer.due() == pytest.approx(0.011)
    assert debouncer.take(0.005) == frozenset()
    assert debouncer.take(0.011) == {"/w/a.py"}
    assert debouncer.due() is None


def test_a_rename_into_place_is_complete_at_once():
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "moved_to", 1.0)
    assert debouncer.due() == pytest.approx(1.01)


def test_a_write_without_close_waits_for_quiet():
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "modified", 0.0)
    debouncer.add("/w/a.py", "modified", 0.3)  # a slow writer: still busy
    assert debouncer.due() == pytest.approx(0.8)
    assert debouncer.take(0.79) == frozenset()


def test_delete_then_create_is_a_rewrite_not_a_removal():
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "deleted", 0.0)
    assert debouncer.due() == pytest.approx(0.1)
    debouncer.add("/w/a.py", "created", 0.001)
    debouncer.add("/w/a.py", "closed", 0.002)
    assert debouncer.take(0.012) == {"/w/a.py"}


def test_a_burst_across_files_is_one_batch_waiting_for_its_slowest_member():
    debouncer = Debouncer(W)
    for i in range(50):
        debouncer.add(f"/w/m{i}.py", "closed", i * 0.0001)
    debouncer.add("/w/gone.py", "deleted", 0.002)
    assert debouncer.take(0.02) == frozenset()
    batch = debouncer.take(0.103)
    assert len(batch) == 51


def test_vim_backup_rename_save_ends_with_the_file_complete():
    """created 4913 .. moved a.py -> a.py~, created a.py, modified, closed, deleted a.py~;
    the watcher keeps only source paths, so a.py sees: moved_from, created, modified, closed."""
    debouncer = Debouncer(W)
    for when, event in enumerate(["moved_from", "created", "modified", "closed"]):
        debouncer.add("/w/a.py", event, when * 0.0001)
    assert debouncer.pending["/w/a.py"][0] == "ready"
    assert debouncer.take(0.011) == {"/w/a.py"}


def test_an_open_after_the_close_means_the_file_may_be_half_written_again():
    """Opening with truncation sends only "opened": the file waits for quiet, or for its close."""
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "closed", 0.0)
    debouncer.add("/w/a.py", "opened", 0.005)
    assert debouncer.due() == pytest.approx(0.505)
    debouncer.add("/w/a.py", "modified", 0.006)
    debouncer.add("/w/a.py", "closed", 0.007)
    assert debouncer.due() == pytest.approx(0.017)


def test_ready_leaves_the_batch_pending_and_take_removes_it():
    debouncer = Debouncer(W)
    debouncer.add("/w/a.py", "closed", 0.0)
    assert debouncer.ready(0.02) == {"/w/a.py"} and debouncer.ready(0.02) == {"/w/a.py"}
    assert debouncer.take(0.02) == {"/w/a.py"} and debouncer.ready(0.02) == frozenset()
