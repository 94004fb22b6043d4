"""The command line: ``hotreload run [DIR]`` and ``hotreload --version``. Parsing only."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

__all__ = ["main"]

DESCRIPTION = """\
Run the Python modules in a folder as supervised background workers in one process,
and swap in each module's new code as soon as you save it.

A worker is a module in the folder (name.py or name/__init__.py, name not starting
with "_") that defines run(ctx). Modules starting with "_" are helpers the workers
import (from . import _util). Example workers/ticker.py:

    def run(ctx):
        while not ctx.sleep(1):
            ctx.log.info("tick")
"""

RUN_EPILOG = """\
Optional settings in a worker module:
  RESTART = "always" | "on-failure" | "never"     (default "always")
  BACKOFF = {"initial": 0.5, "factor": 2.0, "max": 30.0, "jitter": 0.5, "fatal_after": 10}
  STOP_TIMEOUT = 5.0

Ctrl-C (or SIGTERM) stops every worker and exits; a second Ctrl-C exits at once.
"""


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line (and exit status 2), not a page of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _version() -> str:
    """The installed version, read from the one header that holds it: parsing the whole
    METADATA file would import the ``email`` package, a third of ``--version``'s time."""
    import importlib_metadata

    try:
        text = importlib_metadata.distribution("hotreload").read_text("METADATA") or ""
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"
    return next((line[len("Version:"):].strip() for line in text.splitlines() if line.startswith("Version:")),
                "unknown")


class _Version(argparse.Action):
    """``--version``, looked up only when asked for, so that start-up stays fast."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"hotreload {_version()}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hotreload", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    run = commands.add_parser(
        "run", help="run the workers in a folder, reloading them as they change",
        description="Run the workers in DIR, each in its own thread, restarting crashed ones "
        "with backoff and reloading any module you save.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("dir", nargs="?", default="workers", metavar="DIR",
                     help="the workers folder (default: ./workers)")
    run.add_argument("--stop-timeout", type=_seconds, default=5.0, metavar="SECONDS",
                     help="how long a worker gets to stop when asked before it is interrupted "
                     "(default: 5; a worker's STOP_TIMEOUT overrides it)")
    run.add_argument("--log-level", default="INFO", type=str.upper,
                     choices=["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"],
                     help="the least severe level shown (default: INFO)")
    run.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    run.add_argument("--log-file", metavar="PATH",
                     help="also log to PATH, rotated at 10 MB, keeping 5 old files")
    run.add_argument("--no-entry-points", dest="entry_points", action="store_false",
                     help="do not run workers from installed packages' 'hotreload.workers' entry points")
    run.add_argument("--no-reload", dest="reload", action="store_false",
                     help="do not watch for changes (for production)")
    run.add_argument("--debounce", type=_seconds, default=0.01, metavar="SECONDS",
                     help="how long a burst of saves may last to be applied as one batch "
                     "(default: 0.01)")
    return parser


def _check_folder(parser: argparse.ArgumentParser, raw: str) -> Path:
    folder = Path(raw)
    if not folder.is_dir():
        parser.error(f"workers folder {raw!r} does not exist" if not folder.exists()
                     else f"{raw!r} is not a folder")
    name = folder.resolve().name
    if not name.isidentifier():
        parser.error(f"the workers folder is imported as a package, so its name must be a "
                     f"Python identifier; {name!r} is not")
    if name in getattr(sys, "stdlib_module_names", ()) or name == "hotreload":
        parser.error(f"the workers folder is imported as package {name!r}, which would clash "
                     f"with the module of that name; rename the folder")
    return folder.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    folder = _check_folder(parser, args.dir)

    from hotreload import host, log

    log.configure(args.log_level, as_json=args.log_json, file=args.log_file)
    options = host.Options(folder, stop_timeout=args.stop_timeout, reload=args.reload,
                           entry_points=args.entry_points, debounce=args.debounce)
    try:
        running = host.create(options)
    except Exception as exc:  # noqa: BLE001 - a broken __init__.py of the folder
        log.logger.error(f"cannot import the workers folder as a package:\n{log.format_error(exc)}")
        return 1
    status = host.serve(running)
    leftover = host.leftover_threads()
    if leftover:
        names = ", ".join(repr(t.name) for t in leftover)
        log.logger.warning(f"threads started by workers are still running: {names}; exiting without them")
    if status or leftover:
        host.exit_now(status)  # not through interpreter shutdown, which would wait for them
    return status


if __name__ == "__main__":
    raise SystemExit(main())
