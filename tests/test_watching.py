"""Watching holds up: git checkouts in a row, a workers folder deleted and recreated, a
native watcher that cannot start."""
import shutil
import subprocess

from conftest import HOTRELOAD, worker_source, write

HELPERS = [f"_h{i}" for i in range(1, 6)]


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def write_version(folder, version):
    for helper in HELPERS:
        write(folder / f"{helper}.py", f"V = {version}\n")
    body = "report(ctx.name, 'saw', VERSION, " + ", ".join(f"{h}.V" for h in HELPERS) + ")"
    write(folder / "w.py", worker_source(version, top=f"from . import {', '.join(HELPERS)}", body=body))


def test_back_to_back_git_checkouts_never_start_a_worker_on_a_mix_of_versions(tmp_path, folder, start_host):
    """The workers folder is a sub-folder of the work tree; git holds .git/index.lock while
    it rewrites files."""
    write_version(folder, 1)
    git(tmp_path, "init", "-q", "-b", "one")
    git(tmp_path, "add", "workers")
    git(tmp_path, "commit", "-qm", "one")
    git(tmp_path, "checkout", "-qb", "two")
    write_version(folder, 2)
    git(tmp_path, "commit", "-qam", "two")
    host = start_host(folder)
    host.wait_started("w", 2)
    for i in range(100):
        git(tmp_path, "checkout", "-q", "one" if i % 2 == 0 else "two")
    host.wait_for(lambda: host.events("w")[-1].startswith("w saw 2 ") or host.events("w")[-1].startswith("w stop 2"),
                  "the last checkout running")
    host.barrier()
    seen = [line.split()[2:] for line in host.events("w") if line.split()[1] == "saw"]
    mixed = [versions for versions in seen if len(set(versions)) > 1]
    assert not mixed, f"{len(mixed)} of {len(seen)} starts on a mix (worker, helpers): {mixed}\n{host.log()}"
    assert seen[-1] == ["2"] * 6
    assert host.stop() == 0


def test_a_workers_folder_deleted_and_recreated_is_watched_again(tmp_path, folder, start_host):
    write(folder / "svc.py", worker_source(1))
    write(folder / "_util.py", "X = 1\n")
    shutil.copytree(folder, tmp_path / "saved")
    host = start_host(folder)
    host.wait_started("svc", 1)
    shutil.rmtree(folder)
    host.wait_log(f"the watched folder {folder} is gone")
    host.wait_for(lambda: host.events("svc")[-1].startswith("svc stop"), "svc to stop")
    shutil.copytree(tmp_path / "saved", folder)  # rm -rf, then restore
    host.wait_log(f"the watched folder {folder} is back")
    host.wait_started("svc", 1, count=2)
    write(folder / "svc.py", worker_source(2))  # and edits are seen again
    host.wait_started("svc", 2)
    write(folder / "fresh.py", worker_source(1))
    host.wait_started("fresh", 1)
    assert host.stop() == 0


# In a user namespace of its own, the host may open no inotify instance at all: a real
# failure of the native watcher, for this process only (the system's limits are untouched).
NO_INOTIFY = ["unshare", "--user", "--map-root-user", "sh", "-c",
              'echo 0 > /proc/sys/user/max_inotify_instances && exec "$0" "$@"', str(HOTRELOAD)]


def test_a_native_watcher_that_cannot_start_is_reported_and_saves_are_seen_by_polling(folder, start_host):
    write(folder / "svc.py", worker_source(1))
    host = start_host(folder, cmd=NO_INOTIFY)
    host.wait_started("svc", 1)
    log = host.wait_log("Falling back to polling")
    assert "cannot watch for changes natively: the inotify instance limit is reached" in log
    write(folder / "svc.py", worker_source(2))
    host.wait_started("svc", 2)
    write(folder / "fresh.py", worker_source(1))
    host.wait_started("fresh", 1)
    assert host.stop() == 0


def test_a_checkout_of_a_branch_without_the_workers_folder_and_back(tmp_path, folder, start_host):
    write(folder / "svc.py", worker_source(1))
    (tmp_path / "README").write_text("")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "with workers")
    git(tmp_path, "checkout", "-qb", "bare")
    git(tmp_path, "rm", "-rq", "workers")
    git(tmp_path, "commit", "-qm", "without")
    git(tmp_path, "checkout", "-q", "main")
    host = start_host(folder)
    host.wait_started("svc", 1)
    git(tmp_path, "checkout", "-q", "bare")
    host.wait_log(f"the watched folder {folder} is gone")
    host.wait_for(lambda: host.events("svc")[-1].startswith("svc stop"), "svc to stop")
    git(tmp_path, "checkout", "-q", "main")
    host.wait_started("svc", 1, count=2)
    write(folder / "svc.py", worker_source(2))
    host.wait_started("svc", 2)
    assert host.stop() == 0
