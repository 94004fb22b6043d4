"""WATCH: a worker restarts when a file of the folder its globs match changes; nothing else
does, and a save that leaves the bytes as they were restarts nothing (the real `hotreload run`)."""
import json
import re

from conftest import run_cli, worker_source, write

WATCH = ["templates/**/*.html", "settings.yaml"]


def test_a_watched_file_restarts_its_worker_and_an_unchanged_save_does_not(folder, start_host, tmp_path):
    (folder / "templates" / "mail").mkdir(parents=True)
    template, settings = folder / "templates" / "mail" / "index.html", folder / "settings.yaml"
    write(template, "<p>1</p>")
    write(settings, "a: 1\n")
    write(folder / "page.py", worker_source(WATCH=WATCH))
    write(folder / "other.py", worker_source())
    host = start_host(folder)
    host.wait_started("page", 1)
    host.wait_started("other", 1)

    write(template, "<p>2</p>")
    log = host.wait_log("| page       | restarted (workers/templates/mail/index.html changed) in ")
    assert re.search(r"\| page       \| restarted \(workers/templates/mail/index\.html changed\) in \d+\.\d ms\n",
                     log)
    host.wait_started("page", 1, count=2)  # the new run reports its start itself, maybe after the log line
    assert host.events("page") == ["page start 1 1", "page stop 1 1", "page start 1 2"]
    assert "reloaded" not in log  # no module was reloaded

    write(template, "<p>2</p>")  # saved unchanged
    write(folder / "templates" / "mail" / "notes.txt", "not watched")
    host.barrier()
    assert len(host.starts("page")) == 2

    write(folder / "templates" / "new.html", "<p>new</p>")  # a new file that matches
    host.wait_started("page", 1, count=3)
    settings.unlink()  # a deleted one
    host.wait_started("page", 1, count=4)  # its report may come before the host's log line:
    assert host.wait_log("| page       | restarted (workers/settings.yaml changed) in ").count(
        "| page       | restarted (workers/settings.yaml changed) in ") == 1
    assert host.starts("other") == [1]
    row = next(w for w in json.loads(run_cli("status", "-d", str(folder), "--json", cwd=tmp_path).stdout)["workers"]
               if w["name"] == "page")
    assert (row["state"], row["generation"]) == ("running", 0)
    assert host.stop() == 0


def test_a_watched_file_and_the_worker_s_own_code_saved_together_reload_it_once(folder, start_host):
    write(folder / "settings.yaml", "a: 1\n")
    write(folder / "page.py", worker_source(1, WATCH=WATCH))
    host = start_host(folder, "--debounce", "0.5")  # the two saves below land in one batch
    host.wait_started("page", 1)
    write(folder / "settings.yaml", "a: 2\n")
    write(folder / "page.py", worker_source(2, WATCH=WATCH))
    host.wait_started("page", 2)
    host.barrier()
    assert host.starts("page") == [1, 2]


def test_a_glob_that_leaves_the_workers_folder_is_a_load_error(folder, tmp_path):
    write(folder / "page.py", worker_source(WATCH=["../secrets/*.yaml"]))
    write(folder / "abs.py", worker_source(WATCH=["/etc/passwd"]))
    listed = run_cli("list", str(folder), cwd=tmp_path)
    assert listed.returncode == 1
    assert "WATCH: '../secrets/*.yaml' leaves the workers folder: globs are relative to it, and '..' is not allowed" \
        in listed.stdout
    assert "WATCH: '/etc/passwd' is an absolute path" in listed.stdout
