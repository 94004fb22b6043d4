"""What the host costs: crash -> restart overhead, idle CPU, scale, soak, start-up, a
worker's printed lines, and the class upgrade of ctx.state at a reload."""
from __future__ import annotations

import gc
import os
import socket
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BIN, WAIT, Probe, Process, child_pid, http_port, proc_stats, save_in_place, settled_stats, summary, task_wakeups,
    wait_exactly, worker_source,
)

__all__ = ["crash_restart", "idle", "output", "scale", "soak", "startup", "state_upgrade"]

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


def idle(root: Path, probe: Probe, workers: int, seconds: float, http: bool = False) -> dict[str, Any]:
    """CPU, RSS and wake-ups of a host whose ``workers`` all sleep in ``ctx.sleep``, and of
    the guardian above it; a ``logs -f`` and an ``events -f`` follow the host all along, and
    two ``status`` requests come first: CPU is sampled only when asked, and nothing of it may
    keep running once answered. With ``http``, the host also serves ``--http`` on loopback,
    with no client in the window; the server's listening thread is told apart as the one
    thread a bare connection (no request: nothing reaches the host loop) wakes before it."""
    folder = _workers(root, "idle", workers, prefix="idle")
    guardian = _host(root, folder, probe, *(["--http", "127.0.0.1:0"] if http else []), guard=True)
    listener: list[str] = []
    followers: list[subprocess.Popen] = []
    try:
        _wait_started(probe, [f"idle{i}" for i in range(workers)])
        host_pid = child_pid(guardian.pid)
        outputs = [root / f"{command}.out" for command in ("logs", "events")]
        for output in outputs:
            with output.open("wb") as out:
                followers.append(subprocess.Popen([HOTRELOAD, output.stem, "-d", str(folder), "-f"], stdout=out))
        deadline = time.monotonic() + WAIT
        while not all(output.stat().st_size for output in outputs):  # each is attached: it printed
            if time.monotonic() > deadline:
                raise TimeoutError("the followers printed nothing")
            time.sleep(0.01)
        status_ms = [_status_ms(folder)]
        time.sleep(0.6)
        status_ms.append(_status_ms(folder))  # this one measures CPU% from the first
        if http:
            listener = _woken_by_a_connection(host_pid, http_port(root / "idle.log"))
        time.sleep(1.0)  # let start-up logging and imports finish before the window opens
        before, tasks_before, guardian_before = proc_stats(host_pid), task_wakeups(host_pid), proc_stats(guardian.pid)
        time.sleep(seconds)
        after, tasks_after, guardian_after = proc_stats(host_pid), task_wakeups(host_pid), proc_stats(guardian.pid)
        following = sum(follower.poll() is None for follower in followers)
    finally:
        guardian.stop()
        for follower in followers:
            follower.kill()
            follower.wait()
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
        "followers": following,
        "http": http,
        "http_listener_wakeups": [tasks_after.get(tid, 0) - tasks_before.get(tid, 0) for tid in listener],
        "guardian": {
            "rss_mb": round(guardian_after["rss_mb"], 1),
            "cpu_s": round(guardian_after["cpu_s"] - guardian_before["cpu_s"], 3),
            "wakeups": guardian_after["wakeups"] - guardian_before["wakeups"],
        },
    }


def _woken_by_a_connection(pid: int, port: int) -> list[str]:
    """The threads of ``pid`` (tids) that a connection to ``port``, opened and closed with no
    request, woke: on an otherwise idle host, the HTTP server's listening thread. (The thread
    it starts for the connection ends, and is not among those found before.)"""
    before = task_wakeups(pid)
    socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    deadline = time.monotonic() + WAIT
    while True:
        now = task_wakeups(pid)
        woken = [tid for tid, n in before.items() if now.get(tid, n) > n]
        if woken:
            return woken
        if time.monotonic() > deadline:
            raise TimeoutError("no thread of the host woke for a connection to its --http port")
        time.sleep(0.01)


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


OUTPUT_BODY = """\
    go = _os.path.join(_os.path.dirname(__file__), "..", "go")
    while not _os.path.exists(go):
        if ctx.sleep(0.01):
            return
    text = "x" * 40

    def timed(write):
        wall, cpu = _time.perf_counter(), _time.thread_time()
        for number in range(LINES):
            write(number)
        return _time.perf_counter() - wall, _time.thread_time() - cpu

    for turn in range(ROUNDS):
        with open(_os.path.join(_os.path.dirname(__file__), "..", "plain.txt"), "w") as plain:
            to_file = timed(lambda number: print("line", number, text, file=plain))
        logged = timed(lambda number: ctx.log.info(f"line {number} {text}"))
        printed = timed(lambda number: print("line", number, text))
        _report(ctx.name + "_printed", turn, *to_file, *logged, *printed)
    ctx.sleep(float('inf'))"""

# What a worker's printed lines cost, by how the host logs: the terminal sink and a log file
# (both files here); the same as JSON; and at --log-level WARNING, where INFO is dropped.
OUTPUT_SETTINGS = {
    "text": ["--log-file", "host.log"],
    "json": ["--log-json", "--log-file", "host.log"],
    "dropped": ["--log-level", "WARNING"],
}


def output(root: Path, probe: Probe, lines: int, rounds: int) -> dict[str, Any]:
    """A worker prints ``lines`` lines as fast as it can, ``rounds`` times, and times it (wall
    and its thread's CPU) against the same lines printed to a file of its own and logged with
    ``ctx.log``. The host's RSS (and its peak, VmHWM) is read before the first line and after
    the last."""
    results: dict[str, Any] = {}
    for label, args in OUTPUT_SETTINGS.items():
        folder = root / f"output-{label}" / "svc"
        folder.mkdir(parents=True)
        settings = f"LINES = {lines}\nROUNDS = {rounds}"
        name = f"printer_{label}"  # a report of each worker is its own: the probe keeps the first
        (folder / f"{name}.py").write_text(worker_source(0, body=OUTPUT_BODY, settings=settings))
        host = _host(folder.parent, folder, probe, *args)
        try:
            probe.wait_for(name, 0)
            before = settled_stats(host.pid)
            (folder.parent / "go").touch()
            reports = [probe.wait_for(f"{name}_printed", turn, timeout=60 + lines / 1000) for turn in range(rounds)]
            after = proc_stats(host.pid)
        finally:
            host.stop()
        kinds = ("print_to_file", "ctx_log", "print_captured")
        wall = {kind: summary([float(r.extra[2 * i]) / lines for r in reports], scale=1e6)["p50"]
                for i, kind in enumerate(kinds)}
        cpu = {kind: summary([float(r.extra[2 * i + 1]) / lines for r in reports], scale=1e6)["p50"]
               for i, kind in enumerate(kinds)}
        results[label] = {
            "us_per_line": wall,
            "cpu_us_per_line": cpu,  # the worker thread's own CPU time: less disturbed by a busy machine
            "overhead_us_per_line": round(wall["print_captured"] - wall["print_to_file"], 2),
            "cpu_overhead_us_per_line": round(cpu["print_captured"] - cpu["print_to_file"], 2),
            "rss_mb": [round(before["rss_mb"], 1), round(after["rss_mb"], 1)],
            "peak_rss_mb": [round(before["peak_rss_mb"], 1), round(after["peak_rss_mb"], 1)],
        }
    return {"lines": lines, "rounds": rounds, **results}


ITEMS = """
class Item:
    def __init__(self, n):
        self.n = n
        self.name = f"item{n}"
        self.tags = [n]

    def version(self):
        return VERSION
"""


def state_upgrade(root: Path, probe: Probe, sizes: list[int], rounds: int) -> dict[str, Any]:
    """The class upgrade of ctx.state: in this process (``upgrade_in_process``), then end to
    end, save -> running of a worker whose state holds N objects of its helper's class,
    beside the same worker with an empty state, the helper saved in turn."""
    return {
        "in_process": upgrade_in_process(sizes, rounds),
        "save_to_running": _upgrade_end_to_end(root, probe, sizes, rounds),
    }


def _upgrade_end_to_end(root: Path, probe: Probe, sizes: list[int], rounds: int) -> dict[str, Any]:
    folder = root / "upgrade" / "svc"
    folder.mkdir(parents=True)
    body = (
        "    if 'items' not in ctx.state:\n"
        "        ctx.state['items'] = [_items.Item(n) for n in range(SIZE)]\n"
        "    items = ctx.state['items']\n"
        "    moved = all(i.version() == VERSION and isinstance(i, _items.Item) for i in items[:1] + items[-1:])\n"
        "    _report(ctx.name + '_moved', VERSION, moved)\n"
        "    ctx.sleep(float('inf'))"
    )
    counts = [0, *sizes]
    for count in counts:
        (folder / f"_items{count}.py").write_text(f"VERSION = 0\n{ITEMS.replace('VERSION', '0')}")
        (folder / f"keeper{count}.py").write_text(worker_source(
            0, body=body, top=f"from . import _items{count} as _items",
            settings=f"VERSION = _items.VERSION\nSIZE = {count}"))
    host = _host(root, folder, probe)
    try:
        _wait_started(probe, [f"keeper{count}" for count in counts])
        times: dict[int, list[float]] = {count: [] for count in counts}
        for version in range(1, rounds + 1):
            for count in counts:
                began = time.monotonic()
                source = f"VERSION = {version}\n{ITEMS.replace('VERSION', str(version))}"
                save_in_place(folder / f"_items{count}.py", source)
                times[count].append(probe.wait_for(f"keeper{count}", version).at - began)
                moved = probe.wait_for(f"keeper{count}_moved", version)
                if moved.extra[-1] != "True":
                    raise RuntimeError(f"keeper{count} version {version}: its objects did not follow the new class")
    finally:
        host.stop()
    return {str(count): summary(times[count]) for count in counts}


def upgrade_in_process(sizes: list[int], rounds: int, heap: int = 1_000_000) -> dict[str, Any]:
    """The class upgrade of a state of N objects (``upgrade.classes``), in this process: each
    object an instance with a list of its own, so 2N + 2 objects are walked. Timed moving all
    of them (a method of their class edited), walking them with nothing to move, and the
    least any walk of them costs in Python (``_bare_walk``), interleaved; then the smallest
    state again beside ``heap`` unrelated objects, which the walk must not see. Timed in CPU
    time of this thread (``time.thread_time``): on a shared machine, wall time also counts
    the time other processes had the core."""
    from hotreload import upgrade

    module = types.ModuleType("bench_upgrade_items")
    sys.modules[module.__name__] = module
    version = 0

    def reload() -> dict:
        nonlocal version
        before = dict(module.__dict__) if "Item" in module.__dict__ else None
        version += 1
        exec(ITEMS.replace("VERSION", str(version)), module.__dict__)
        return {module.__name__: upgrade.Namespaces(module.__dict__, before)}

    def timed(state: dict, moving: bool) -> float:
        modules = reload() if moving else {module.__name__: upgrade.Namespaces(module.__dict__, None)}
        gc.collect()  # the state is old by the time a user saves: no collection owed to it
        began = time.thread_time()
        report = upgrade.classes(state, modules)
        elapsed = time.thread_time() - began
        assert report.moved == (len(state["items"]) if moving else 0) and not report.left
        return elapsed

    def timed_bare(state: dict) -> float:
        gc.collect()
        began = time.thread_time()
        walked = _bare_walk(state)
        elapsed = time.thread_time() - began
        assert walked == 2 * len(state["items"]) + 2
        return elapsed

    try:
        results: dict[str, Any] = {}
        for size in sizes:
            reload()
            state = {"items": [module.Item(n) for n in range(size)]}
            moves: list[float] = []
            walks: list[float] = []
            bare: list[float] = []
            for _ in range(rounds):
                moves.append(timed(state, True))
                walks.append(timed(state, False))
                bare.append(timed_bare(state))
            assert state["items"][0].version() == version
            results[str(size)] = {
                "objects_walked": 2 * size + 2,
                "move_all_ms": summary(moves),
                "nothing_to_move_ms": summary(walks),
                "bare_walk_ms": summary(bare),
                "us_per_object_moved": round(statistics.median(moves) / size * 1e6, 2),
            }
        size = min(sizes)
        reload()
        state = {"items": [module.Item(n) for n in range(size)]}
        elsewhere = [module.Item(n) for n in range(heap)]  # same class, not in the state
        beside = [timed(state, True) for _ in range(rounds)]
        assert elsewhere[0].version() != version  # left alone: only the state was walked
        results["beside_heap"] = {"size": size, "heap_objects": 2 * heap, "move_all_ms": summary(beside)}
        return results
    finally:
        del sys.modules[module.__name__]


def _bare_walk(state: dict) -> int:
    """The least a walk of the benchmark's state costs in Python: each object once, by id,
    through dict values, list items and instance dicts, with nothing decided about any."""
    seen = {id(state): state}
    stack: list = [state]
    while stack:
        obj = stack.pop()
        kind = type(obj)
        children = obj.values() if kind is dict else obj if kind is list else vars(obj).values()
        for child in children:
            if type(child) not in (int, str) and id(child) not in seen:
                seen[id(child)] = child
                stack.append(child)
    return len(seen)
