"""Run the benchmarks: ``tox -e bench`` (or ``python -m benchmarks.run`` in an env that has
hotreload, watchfiles, jurigged and numpy installed). Prints a table, writes JSON.

Each section starts its own processes on a temp folder and removes it afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import costs, dashboard, downtime, latency
from benchmarks.harness import Probe, cpu_hogs, temp_folder

RESULTS = "benchmarks/results.json"  # the record of the last full run, which BENCHMARKS.md quotes
SECTIONS = ("latency", "bursts", "follow", "crash", "idle", "scale", "soak", "startup", "output", "upgrade",
            "downtime", "metrics", "dashboard")


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True, text=True,
    ).stdout.split()
    wanted = ("hotreload", "watchdog", "loguru", "watchfiles", "jurigged", "numpy", "uvicorn", "starlette", "playwright")
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": [v for v in versions if v.split("==")[0].lower() in wanted],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _row(label: str, figures: dict[str, Any], unit: str = "ms") -> str:
    return f"  {label:<28} p50 {figures['p50']:>8.1f} {unit}   p95 {figures['p95']:>8.1f} {unit}   (n={figures['n']})"


def _print_latency(results: dict[str, Any]) -> None:
    print("Save -> new code running")
    for name, figures in results["subjects"].items():
        print(_row(name, figures) + f"   extra reloads: {figures['extra_starts']}")
        if len(figures["by_save"]) > 1:
            print("    by save: " + ", ".join(f"{how} {f['p50']:.1f}/{f['p95']:.1f}" for how, f in figures["by_save"].items()))
    for worker, ratio in results["ratios"].items():
        print(f"  {worker}: " + ", ".join(f"{tool} / hotreload = {r:.1f}x (p50)" for tool, r in ratio.items()))


def _print(section: str, results: Any) -> None:
    if section == "latency":
        _print_latency(results)
    elif section == "bursts":
        print("git checkout of a worker and 5 helpers, by --debounce window")
        for load, windows in results.items():
            for window, figures in windows.items():
                print(_row(f"{load}, {window}", figures)
                      + f"   extra runs: {figures['extra_runs']}, mixed old/new: {figures['mixed_runs']}")
    elif section == "follow":
        print("A worker's log call -> its line out of `hotreload logs -f`")
        for label, figures in results.items():
            print(_row(label, figures) + f"   max {figures['max']:.1f} ms")
    elif section == "crash":
        print(f"Crash -> restart overhead (beyond a {results['backoff_ms']:g} ms backoff)")
        print(_row("overhead", results))
    elif section == "idle":
        print(f"Idle: {results['workers']} sleeping workers for {results['seconds']:g} s, "
              f"{results['followers']} `logs -f`/`events -f` following")
        print(f"  host: CPU {results['cpu_s']} s ({results['core_percent']} % of a core), RSS {results['rss_mb']} MB, "
              f"{results['wakeups_per_s']} wake-ups/s, threads that woke: {results['threads_that_woke']}, "
              f"after 2 status requests of {' and '.join(f'{ms:g}' for ms in results['status_ms'])} ms")
        if results["http"]:
            print(f"  --http, no client: the listening thread woke {sum(results['http_listener_wakeups'])} times "
                  f"(threads a bare connection woke beforehand: {len(results['http_listener_wakeups'])})")
        guardian = results["guardian"]
        print(f"  guardian: CPU {guardian['cpu_s']} s, RSS {guardian['rss_mb']} MB, {guardian['wakeups']} wake-ups")
    elif section == "scale":
        print("Scale")
        for count, figures in results.items():
            print(f"  {count:>5} workers: all running in {figures['start_all_ms']:.0f} ms, "
                  f"{figures['rss_kb_per_worker']:.1f} KB RSS each, reload one p50 "
                  f"{figures['reload_one_ms']['p50']:.1f} ms p95 {figures['reload_one_ms']['p95']:.1f} ms, "
                  f"stop all {figures['stop_all_ms']:.0f} ms")
    elif section == "soak":
        print(f"Soak: {results['cycles']} reloads, then {results['cycles']} crash-restart cycles")
        for phase in ("reloads", "crashes"):
            r = results[phase]
            b, a = r["before"], r["after"]
            print(f"  {phase:<8} RSS {b['rss_mb']} -> {a['rss_mb']} MB ({r['rss_growth_mb']:+.2f}), "
                  f"threads {b['threads']} -> {a['threads']}, fds {b['fds']} -> {a['fds']}, "
                  f"watches {b['watches']} -> {a['watches']}, modules {b['modules']} -> {a['modules']}: "
                  f"{'back to baseline' if r['back_to_baseline'] else 'NOT back to baseline'}")
    elif section == "output":
        print(f"A worker's printed lines: {results['lines']} lines x {results['rounds']} rounds, p50 per line")
        for label in costs.OUTPUT_SETTINGS:
            r = results[label]
            for clock, key, extra in (("wall", "us_per_line", "overhead_us_per_line"),
                                      ("CPU", "cpu_us_per_line", "cpu_overhead_us_per_line")):
                us = r[key]
                print(f"  {label:<8} {clock:<4} print to a file {us['print_to_file']:.2f} us, ctx.log "
                      f"{us['ctx_log']:.2f} us, print captured {us['print_captured']:.2f} us (+{r[extra]:.2f} us)")
            print(f"  {label:<8} host RSS {r['rss_mb'][0]} -> {r['rss_mb'][1]} MB, "
                  f"peak {r['peak_rss_mb'][0]} -> {r['peak_rss_mb'][1]} MB")
    elif section == "startup":
        print("Start-up (wall time of the whole command)")
        for label, figures in results.items():
            print(_row(label, figures))
    elif section == "upgrade":
        print("Class upgrade of ctx.state, in process (CPU time)")
        inside = results["in_process"]
        for size, figures in inside.items():
            if size == "beside_heap":
                continue
            print(_row(f"{size} objects, move all", figures["move_all_ms"])
                  + f"   {figures['us_per_object_moved']} us per object")
            print(_row(f"{size} objects, nothing to move", figures["nothing_to_move_ms"]))
            print(_row(f"{size} objects, bare walk", figures["bare_walk_ms"]))
        beside = inside["beside_heap"]
        print(_row(f"{beside['size']} beside {beside['heap_objects']} others", beside["move_all_ms"]))
        print("Save of a helper -> worker running, its objects in ctx.state moved")
        for size, figures in results["save_to_running"].items():
            print(_row(f"{size} objects in ctx.state", figures))
    elif section == "metrics":
        scraped = results["metrics_scraped"]
        print(f"Save -> running, /metrics scraped every {results['every_s']:g} s (hosts side by side, saved in turn, "
              f"up to {results['gap_s']:g} s between rounds)")
        for name, label in (("metrics_plain", "no --http"), ("metrics_http", "--http, no client"),
                            ("metrics_scraped", "--http, scraped")):
            print(_row(label, results[name]))
        print(f"  scraped - no client: p50 {results['p50_moved_ms']:+.2f} ms; {scraped['scrapes']} scrapes "
              f"({scraped['scrapes_failed']} failed), each p50 {scraped['scrape_ms']['p50']:.1f} ms, "
              f"max {scraped['scrape_ms']['max']:.1f} ms; {scraped['saves_during_a_scrape']} saves overlapped one "
              f"(slowest {scraped['max_during_a_scrape_ms']:.1f} ms)")
    elif section == "downtime":
        print("Requests while the server's file is saved (4 fresh-connection clients + 1 keep-alive)")
        for label, f in results.items():
            latency, swaps = f["latency_ms"], f["swap_ms"]
            print(f"  {label:<22} {f['saves']} saves, {f['reloads']} reloads: {f['failed']} of {f['requests']} "
                  f"requests failed ({f['failed_percent']} %) {f['failures'] or ''}")
            print(f"  {'':<22} latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, worst "
                  f"{latency['max']:.0f} ms (of a request served: {f['worst_served_ms']:.0f} ms); "
                  f"stale or unknown responses {f['stale_or_unknown_responses']}"
                  + (f"; swap p50 {swaps['p50']:.0f} ms, worst {swaps['max']:.0f} ms" if swaps else ""))
    elif section == "dashboard":
        print("A save's reload event: the host's journal -> its item on the --http dashboard (bar: 200 ms)")
        if "skipped" in results:
            print(f"  skipped: {results['skipped']}")
        else:
            print(_row("event -> page", results) + f"   max {results['max']:.1f} ms")


def _latency(root: Path, probe: Probe, args: argparse.Namespace) -> dict[str, Any]:
    subjects = latency.save_to_running(root, probe, args.rounds, latency.available_tools())
    ratios: dict[str, dict[str, float]] = {}
    for figures in subjects.values():
        if figures["tool"] != "hotreload":
            ours = subjects[f"hotreload_{figures['worker']}"]["p50"]
            ratios.setdefault(figures["worker"], {})[figures["tool"]] = round(figures["p50"] / ours, 1)
    return {"subjects": subjects, "ratios": ratios}


def _bursts(root: Path, probe: Probe, args: argparse.Namespace) -> dict[str, Any]:
    """The checkouts on a quiet machine, then with every core kept busy by another process."""
    quiet = latency.checkout_bursts(root / "quiet", probe, args.checkouts, args.windows)
    fresh = Probe()  # the same worker names again: their reports must not mix
    try:
        with cpu_hogs(len(os.sched_getaffinity(0))):
            loaded = latency.checkout_bursts(root / "loaded", fresh, args.checkouts, args.windows)
    finally:
        fresh.close()
    return {"quiet": quiet, "loaded": loaded}


RUNNERS: dict[str, Callable[[Path, Probe, argparse.Namespace], Any]] = {
    "latency": _latency,
    "bursts": lambda root, probe, args: _bursts(root, probe, args),
    "follow": lambda root, probe, args: latency.follow(root, args.follow_lines),
    "crash": lambda root, probe, args: costs.crash_restart(root, probe, args.cycles),
    "idle": lambda root, probe, args: costs.idle(root, probe, 200, args.idle_seconds, args.idle_http),
    "scale": lambda root, probe, args: costs.scale(root, probe, args.scale, args.scale_reloads),
    "soak": lambda root, probe, args: costs.soak(root, probe, args.soak),
    "startup": lambda root, probe, args: costs.startup(root, args.startup_runs),
    "output": lambda root, probe, args: costs.output(root, probe, args.output_lines, args.output_rounds),
    "upgrade": lambda root, probe, args: costs.state_upgrade(root, probe, args.upgrade_sizes,
                                                             args.upgrade_rounds),
    "downtime": lambda root, probe, args: downtime.downtime(root, args.saves),
    "dashboard": lambda root, probe, args: dashboard.reload_to_page(root, args.dashboard_saves),
    "metrics": lambda root, probe, args: latency.scraped_save_to_running(root, probe, args.scrape_rounds,
                                                                        args.scrape_every, args.scrape_gap),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help=f"which to run (default: all of {', '.join(SECTIONS)})")
    parser.add_argument("--json", metavar="PATH",
                        help=f"where to write the figures (default: {RESULTS} for a run of every "
                             "section; a run of some writes none, so as not to replace the full record)")
    parser.add_argument("--rounds", type=int, default=60, help="saves per latency subject (default: 60)")
    parser.add_argument("--checkouts", type=int, default=50, help="checkouts per window and load (default: 50)")
    parser.add_argument("--windows", type=float, nargs="+", default=[0.002, 0.005, 0.01],
                        help="--debounce values compared by the bursts section (seconds)")
    parser.add_argument("--follow-lines", type=int, default=200,
                        help="lines timed through `logs -f`, alone and beside a busy worker (default: 200)")
    parser.add_argument("--cycles", type=int, default=100, help="crash-restart cycles timed (default: 100)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--idle-http", action="store_true", help="the idle host also serves --http, with no client")
    parser.add_argument("--scale", type=int, nargs="+", default=[10, 100, 500, 1000])
    parser.add_argument("--scale-reloads", type=int, default=20)
    parser.add_argument("--soak", type=int, default=1000, help="reloads, and crash cycles, in the soak")
    parser.add_argument("--startup-runs", type=int, default=30)
    parser.add_argument("--output-lines", type=int, default=20_000, help="lines a worker prints per round")
    parser.add_argument("--output-rounds", type=int, default=5)
    parser.add_argument("--upgrade-sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="objects in ctx.state for the upgrade section")
    parser.add_argument("--upgrade-rounds", type=int, default=20)
    parser.add_argument("--saves", type=int, default=100, help="saves of each server in downtime (default: 100)")
    parser.add_argument("--dashboard-saves", type=int, default=30,
                        help="saves timed from the host's event to the dashboard page (default: 30)")
    parser.add_argument("--scrape-rounds", type=int, default=200, help="saves per host in metrics (default: 200)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes of /metrics (default: 1)")
    parser.add_argument("--scrape-gap", type=float, default=0.3,
                        help="most seconds of pause between rounds of saves in metrics (default: 0.3)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    args.sections = args.sections or list(SECTIONS)

    report: dict[str, Any] = {"machine": _machine(), "argv": sys.argv[1:]}
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores, Python {report['machine']['python']}")
    for section in args.sections:
        probe = Probe()
        try:
            with temp_folder() as root:
                report[section] = RUNNERS[section](root, probe, args)
        finally:
            probe.close()
        _print(section, report[section])
    where = args.json or (RESULTS if set(args.sections) == set(SECTIONS) else None)
    if where is not None:
        Path(where).write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
