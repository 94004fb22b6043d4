"""What the host costs: crash -> restart overhead, idle CPU, scale, soak and start-up."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BIN, Probe, Process, child_pid, proc_stats, save_in_place, settled_stats, summary, task_wakeups,
    wait_exactly, worker_source,
)

__all__ = ["crash_restart", "idle", "scale", "soak", "startup"]

HOTRELOAD = str(BIN / "hotreload")
# A fixed delay (no growth, no jitter) so that the restart overhead is what is left over.
FIXED_BACKOFF = 'BACKOFF = {{"initial": {delay}, "factor": 1.0, "max": {delay}, "jitter": 0.0, "fatal_after": 10**9}}'


def _host(root: Path, folder: Path, probe: Probe, *args: str, guard: bool = False) -> Process:
    """A host on ``folder``; bare unless ``guard``, so that its pid is the host's."""
    argv = [HOTRELOAD, "run", str(folder), *args, *([] if guard else ["--no-guard"])]
    return Process(argv, probe.env(), root, root / f"{folder.parent.name}.log")


def _workers(root: Path, label: str, count: int, prefix: str = "w") -> Path:
    """A folder of ``count`` sleeping workers named ``prefix0``, ``prefix1``…"""
    folder = root / label / "svc"
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{prefix}{i}.py").write_text(worker_source(0))
    return folder


def _wait_started(probe: Probe, names: list[str], version: int = 0) -> float:
    """The moment the last of ``names`` reported its start."""
    return max(probe.wait_for(name, version).at for name in names)


def crash_restart(root: Path, probe: Probe, cycles: int, delay: float = 0.05) -> dict[str, Any]:
    """A worker that raises at once, restarted after a fixed ``delay``: the time from its
    crash to its next start, minus ``delay``, is what supervision itself costs."""
    folder = root / "crash" / "svc"
    folder.mkdir(parents=True)
    body = (
        "    n = ctx.state['n'] = ctx.state.get('n', 0) + 1\n"
        "    _report('began', n)\n"
        "    if n <= CYCLES:\n"
        "        _report('crashed', n)\n"
        "        raise RuntimeError('crash')\n"
        "    ctx.sleep(float('inf'))"
    )
    settings = FIXED_BACKOFF.format(delay=delay) + f"\nCYCLES = {cycles}"
    (folder / "crasher.py").write_text(worker_source(0, body=body, settings=settings))
    host = _host(root, folder, probe)
    try:
        overheads = [
            probe.wait_for("began", n + 1).at - probe.wait_for("crashed", n).at - delay
            for n in range(1, cycles + 1)
        ]
    finally:
        host.stop()
    return {"backoff_ms": delay * 1000, **summary(overheads)}


def _status_ms(folder: Path) -> float:
    """Milliseconds one ``status`` request takes the host to answer, its CPU sampling included."""
    from hotreload import control

    began = time.perf_counter()
    reply = control.request(folder, "status")
    assert reply["ok"], reply
    return (time.perf_counter() - began) * 1000


def idle(root: Path, probe: Probe, workers: int, seconds: float) -> dict[str, Any]:
    """CPU, RSS and wake-ups of a host whose ``workers`` all sleep in ``ctx.sleep``, and of
    the guardian above it. Two ``status`` requests come first: CPU is sampled only when
    asked, and nothing of it may keep running once answered."""
    folder = _workers(root, "idle", workers, prefix="idle")
    guardian = _host(root, folder, probe, guard=True)
    try:
        _wait_started(probe, [f"idle{i}" for i in range(workers)])
        host_pid = child_pid(guardian.pid)
        status_ms = [_status_ms(folder)]
        time.sleep(0.6)
        status_ms.append(_status_ms(folder))  # this one measures CPU% from the first
        time.sleep(1.0)  # let start-up logging and imports finish before the window opens
        before, tasks_before, guardian_before = proc_stats(host_pid), task_wakeups(host_pid), proc_stats(guardian.pid)
        time.sleep(seconds)
        after, tasks_after, guardian_after = proc_stats(host_pid), task_wakeups(host_pid), proc_stats(guardian.pid)
    finally:
        guardian.stop()
    cpu = after["cpu_s"] - before["cpu_s"]
    woke = {tid: tasks_after.get(tid, 0) - n for tid, n in tasks_before.items() if tasks_after.get(tid, 0) > n}
    return {
        "workers": workers,
        "seconds": seconds,
        "cpu_s": round(cpu, 3),
        "core_percent": round(100 * cpu / seconds, 3),
        "rss_mb": round(after["rss_mb"], 1),
        "threads": after["threads"],
        "wakeups_per_s": round((after["wakeups"] - before["wakeups"]) / seconds, 2),
        "threads_that_woke": len(woke),
        "status_ms": [round(ms, 1) for ms in status_ms],
        "guardian": {
            "rss_mb": round(guardian_after["rss_mb"], 1),
            "cpu_s": round(guardian_after["cpu_s"] - guardian_before["cpu_s"], 3),
            "wakeups": guardian_after["wakeups"] - guardian_before["wakeups"],
        },
    }


def scale(root: Path, probe: Probe, counts: list[int], reloads: int) -> dict[str, Any]:
    """Start, reload one worker and stop, for hosts of each size in ``counts``.

    Hosts start one at a time (start-up is timed alone), then run side by side while the
    reloads go round them in turn, so that the largest and the smallest are compared under
    the same conditions. RSS per worker is taken against a host with one worker.
    """
    hosts: dict[int, tuple[Process, Path]] = {}
    results: dict[int, dict[str, Any]] = {}
    try:
        for count in [1, *counts]:
            folder = _workers(root, f"scale{count}", count, prefix=f"n{count}w")
            began = time.monotonic()
            hosts[count] = (_host(root, folder, probe), folder)
            ready = _wait_started(probe, [f"n{count}w{i}" for i in range(count)]) - began
            results[count] = {"start_all_ms": round(ready * 1000, 1)}
        base_rss = proc_stats(hosts[1][0].pid)["rss_mb"]
        for count in counts:
            rss = proc_stats(hosts[count][0].pid)["rss_mb"]
            results[count]["rss_mb"] = round(rss, 1)
            results[count]["rss_kb_per_worker"] = round((rss - base_rss) * 1024 / (count - 1), 1)
        times: dict[int, list[float]] = {count: [] for count in counts}
        for version in range(1, reloads + 1):
            for count in counts:
                began = time.monotonic()
                save_in_place(hosts[count][1] / f"n{count}w0.py", worker_source(version))
                times[count].append(probe.wait_for(f"n{count}w0", version).at - began)
        for count in counts:
            results[count]["reload_one_ms"] = summary(times[count])
            results[count]["stop_all_ms"] = round(hosts.pop(count)[0].stop() * 1000, 1)
    finally:
        for host, _ in hosts.values():
            host.stop()
    return {str(count): results[count] for count in counts}


SOAK_BODY = """\
    n = ctx.state['n'] = ctx.state.get('n', 0) + 1
    _report('soak_run', n, _threading.active_count(), len(_sys.modules))
    if n <= CRASH_UNTIL:
        raise RuntimeError('crash')
    ctx.sleep(float('inf'))"""


def soak(root: Path, probe: Probe, cycles: int, warmup: int = 20) -> dict[str, Any]:
    """``cycles`` reloads of one worker, then ``cycles`` crash-restart cycles of it, with
    the host's RSS, threads, fds and watches (and the worker's view of its thread and module
    counts) read before and after each, once the worker sleeps again."""
    folder = root / "soak" / "svc"
    folder.mkdir(parents=True)
    path = folder / "soak.py"
    runs = 0

    def save(version: int, crashes: int) -> tuple[dict[str, float], int]:
        """Save ``version``, whose run crashes ``crashes`` times, and wait for the sleeper."""
        nonlocal runs
        settings = FIXED_BACKOFF.format(delay=0.001) + f"\nCRASH_UNTIL = {runs + crashes}"
        save_in_place(path, worker_source(version, body=SOAK_BODY, settings=settings))
        runs += crashes + 1
        report = probe.wait_for("soak_run", runs)
        threads, modules = map(int, report.extra)
        return {**settled_stats(host.pid), "worker_threads": threads, "modules": modules}, version

    def reading(stats: dict[str, float]) -> dict[str, float]:
        keys = ("rss_mb", "threads", "fds", "watches", "worker_threads", "modules")
        return {key: round(stats[key], 2) for key in keys}

    path.write_text(worker_source(0, body=SOAK_BODY, settings="CRASH_UNTIL = 0"))
    host = _host(root, folder, probe)
    try:
        runs = 1
        probe.wait_for("soak_run", 1)
        version = 0
        for _ in range(warmup):
            stats, version = save(version + 1, 0)
        before = stats
        for _ in range(cycles):
            stats, version = save(version + 1, 0)
        reloads = {"before": reading(before), "after": reading(stats)}
        before, version = save(version + 1, warmup)
        stats, version = save(version + 1, cycles)
        crashes = {"before": reading(before), "after": reading(stats)}
    finally:
        host.stop()
    for phase in (reloads, crashes):
        phase["rss_growth_mb"] = round(phase["after"]["rss_mb"] - phase["before"]["rss_mb"], 2)
        phase["back_to_baseline"] = all(
            phase["after"][key] == phase["before"][key]
            for key in ("threads", "fds", "watches", "worker_threads", "modules")
        )
    return {"cycles": cycles, "reloads": reloads, "crashes": crashes}


def startup(root: Path, runs: int) -> dict[str, Any]:
    """Wall time of ``hotreload --version``, and of ``hotreload run`` on an empty folder up to
    its ready line (with its guardian, as users start it, and bare), with bare
    ``python -c pass`` beside them as the floor, interleaved."""
    folder = root / "startup" / "svc"
    folder.mkdir(parents=True)
    python = str(BIN / "python")
    times: dict[str, list[float]] = {"python": [], "version": [], "run_ready": [], "run_ready_no_guard": []}
    for _ in range(runs):
        for label, argv in (("python", [python, "-c", "pass"]), ("version", [HOTRELOAD, "--version"])):
            began = time.monotonic()
            status = wait_exactly(subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True))
            times[label].append(time.monotonic() - began)
            if status:
                raise RuntimeError(f"{' '.join(argv)} exited with status {status}")
        for label, extra in (("run_ready", []), ("run_ready_no_guard", ["--no-guard"])):
            began = time.monotonic()
            with subprocess.Popen([HOTRELOAD, "run", str(folder), *extra], cwd=root, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True) as proc:
                assert proc.stderr is not None
                for line in proc.stderr:
                    if "worker(s) in" in line:
                        break
                times[label].append(time.monotonic() - began)
                os.killpg(proc.pid, 2)
                wait_exactly(proc)  # its few stop lines fit in the pipe; the with block closes it
    return {label: summary(values) for label, values in times.items()}
