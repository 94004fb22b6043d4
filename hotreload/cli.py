"""The command line: ``hotreload run | status | logs | events | restart | stop | start | list | new``.

Parsing here; each command's work lives in its own module, imported only when that command
runs, so that ``--version`` and the control commands start fast.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from hotreload import config as configuration
from hotreload.colours import CHOICES
from hotreload.config import LOG_LEVELS, Config, ConfigError, worker_defaults
from hotreload.config import find as find_config

if TYPE_CHECKING:
    from hotreload.journal import Journal
    from hotreload.records import Host, Options

__all__ = ["main"]

SITE_PACKAGES = Path(__file__).resolve().parent.parent  # where a regular install put hotreload

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
  AFTER = ["db", "cache"]       start once these workers are ready; stop before them
  READY = "started" | "signal" | "tcp:PORT"       when the workers AFTER it may start
  WATCH = ["templates/**/*.html", "settings.yaml"]    restart when these files change
  HEARTBEAT = 30                hung after 30 s without ctx.sleep, ctx.stopping or ctx.heartbeat()

A program worker defines COMMAND instead of run (or is a line of DIR/Procfile):
  COMMAND = ["redis-server", "--port", "6380"]    (or one string, split like a shell would)
  ENV = {"NAME": "value"}   CWD = "."   STOP_SIGNAL = "SIGTERM"

Ctrl-C (or SIGTERM) stops every worker and exits; a second Ctrl-C exits at once.
"""


class _Parser(argparse.ArgumentParser):
    """Reports a usage error in one line (and exit status 2), not a page of usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(check: Callable[[Any], float]) -> Callable[[str], float]:
    """An argparse type for a duration, with the config file's check and range."""

    def parse(text: str) -> float:
        try:
            return check(float(text))
        except (TypeError, ValueError) as exc:
            allowed = str(exc) if isinstance(exc, TypeError) else "a number of seconds"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None

    return parse


def _address(text: str) -> tuple[str, int]:
    """An argparse type for ``--http [HOST:]PORT``, with the config file's check."""
    try:
        return configuration.http_address(text)
    except TypeError as exc:
        raise argparse.ArgumentTypeError(f"must be {exc}, got {text!r}") from None


def _count(text: str) -> int:
    """An argparse type for a number of lines: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def _version(site: Path = SITE_PACKAGES) -> str:
    """The installed version, from the ``Version:`` header of hotreload's METADATA.

    A regular install has its ``.dist-info`` right beside the package: read it there, which
    costs one directory listing. Anywhere else (an editable install, a zip) ask
    importlib-metadata, whose import alone is most of ``--version``'s time. The distribution
    it finds first on sys.path may be an egg-info (``python -m`` puts the current folder
    first, where ``pip install -e .`` leaves one), whose file is PKG-INFO. Both are read as
    text: parsing them with ``metadata`` imports the email package, another third of the
    time, so only a distribution with neither file (an old egg-info written as one file) takes
    that way.
    """
    beside = list(site.glob("hotreload-*.dist-info/METADATA"))
    if len(beside) == 1:
        text = beside[0].read_text(encoding="utf-8")
    else:
        import importlib_metadata

        try:
            found = importlib_metadata.distribution("hotreload")
        except importlib_metadata.PackageNotFoundError:
            return "unknown (not installed)"
        text = found.read_text("METADATA") or found.read_text("PKG-INFO")
        if text is None:
            return found.version
    return next((line[len("Version:"):].strip() for line in text.splitlines() if line.startswith("Version:")),
                "unknown")


class _Version(argparse.Action):
    """``--version``, looked up only when asked for, so that start-up stays fast."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"hotreload {_version()}")
        parser.exit(0)


def _default_dir(config: Config) -> str:
    return configuration.path_of(config, "dir") or "workers"


def _add_dir(parser: argparse.ArgumentParser, config: Config) -> None:
    parser.add_argument("-d", "--dir", default=_default_dir(config), metavar="DIR",
                        help="the workers folder of the running host (default: ./workers)")


def build_parser(config: Config = Config()) -> argparse.ArgumentParser:
    """The parser; ``config`` supplies the defaults the command line overrides."""
    defaults = config.values
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
    run.add_argument("dir", nargs="?", default=_default_dir(config), metavar="DIR",
                     help="the workers folder (default: ./workers)")
    run.add_argument("--stop-timeout", type=_seconds(configuration.stop_timeout),
                     default=defaults.get("stop-timeout", 5.0), metavar="SECONDS",
                     help="how long a worker gets to stop when asked before it is interrupted "
                     f"(default: 5, at most {configuration.STOP_TIMEOUT_MAX:g}; "
                     "a worker's STOP_TIMEOUT overrides it)")
    run.add_argument("--log-level", default=defaults.get("log-level", "INFO"), type=str.upper,
                     choices=LOG_LEVELS, help="the least severe level shown (default: INFO)")
    run.add_argument("--log-json", action=argparse.BooleanOptionalAction, default=defaults.get("log-json", False),
                     help="log one JSON object per line")
    run.add_argument("--log-file", metavar="PATH", default=configuration.path_of(config, "log-file"),
                     help="also log to PATH, rotated at 10 MB (PATH.1 ... PATH.5 kept), "
                     "created again if deleted")
    run.add_argument("--color", choices=CHOICES, default=defaults.get("color", "auto"),
                     help="colour the log, each worker's name in a colour of its own: auto (the default) on a "
                     "terminal unless NO_COLOR is set, always, or never")
    run.add_argument("--entry-points", action=argparse.BooleanOptionalAction, default=defaults.get("entry-points", True),
                     help="run workers from installed packages' 'hotreload.workers' entry points")
    run.add_argument("--reload", action=argparse.BooleanOptionalAction, default=defaults.get("reload", True),
                     help="watch for changes and reload (--no-reload for production)")
    run.add_argument("--guard", action=argparse.BooleanOptionalAction, default=defaults.get("guard", True),
                     help="run the host under a guardian process that starts it again if it dies "
                     "(--no-guard under systemd or a container runtime, which do that)")
    run.add_argument("--debounce", type=_seconds(configuration.debounce), default=defaults.get("debounce", 0.01),
                     metavar="SECONDS", help="how long a burst of saves may last to be applied as one batch "
                     f"(default: 0.01, at most {configuration.DEBOUNCE_MAX:g})")
    run.add_argument("--http", type=_address, default=defaults.get("http"), metavar="[HOST:]PORT",
                     help="serve /healthz, /readyz, /metrics and the worker actions over HTTP on HOST "
                     f"(default {configuration.DEFAULT_HTTP_HOST}) and PORT (0: any free port); off by default")
    run.add_argument("--http-token", metavar="TOKEN", default=None,
                     help="the secret the HTTP actions and logs need (Authorization: Bearer TOKEN); "
                     "required for them when HOST is not loopback")
    run.add_argument("--http-token-file", metavar="PATH", default=configuration.path_of(config, "http-token-file"),
                     help="read the --http-token from PATH (kept out of the process list)")

    status = commands.add_parser("status", help="show the workers of a running host",
                                 description="One row per worker of the host running on DIR.")
    _add_dir(status, config)
    status.add_argument("--json", action="store_true",
                        help="print the host's reply as JSON (with --watch, one object per line)")
    status.add_argument("--watch", nargs="?", const=1.0, type=_seconds(configuration.watch_interval), metavar="SECONDS",
                        help="show the table again every SECONDS (default: 1), sorted by CPU, until Ctrl-C")
    logs = commands.add_parser(
        "logs", help="show what the workers of a running host logged",
        description="The last N records (a traceback is one) that the named workers of the host "
        "running on DIR logged, all workers' and the host's when none is named, in the order "
        "they were logged; the host keeps the last 1,000 of each.",
    )
    _add_dir(logs, config)
    logs.add_argument("names", nargs="*", metavar="NAME", help="a worker, or host for the host's own lines")
    logs.add_argument("-n", "--lines", type=_count, default=50, metavar="N",
                      help="how many of the last records to show (default: 50)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="then show each new record as it is logged, until Ctrl-C or the host stops")
    logs.add_argument("--json", action="store_true", help="one JSON object per record, as --log-json writes them")
    events = commands.add_parser(
        "events", help="show what happened to the workers of a running host",
        description="The recent events of the host running on DIR, one a line: state changes, "
        "reloads, failed reloads, crashes and commands received; the host keeps the last 1,000.",
    )
    _add_dir(events, config)
    events.add_argument("-f", "--follow", action="store_true",
                        help="then show each new event as it happens, until Ctrl-C or the host stops")
    events.add_argument("--json", action="store_true",
                        help="one JSON object per event, in the schema the README documents")
    for name, verb in (("restart", "restart"), ("stop", "stop"), ("start", "start (also a fatal one)")):
        sub = commands.add_parser(name, help=f"{verb} workers of a running host",
                                  description=f"Ask the host running on DIR to {verb} the named workers.")
        _add_dir(sub, config)
        sub.add_argument("names", nargs="*", metavar="NAME")
        sub.add_argument("--all", action="store_true", help=f"{name} every worker")
        if name == "restart":
            sub.add_argument("--host", action="store_true",
                             help="restart the host process itself, gracefully, through its guardian")
            sub.add_argument("--with-dependents", action="store_true",
                             help="also restart the running workers whose AFTER names them: those stop "
                             "first, and start again once these are ready")

    listing = commands.add_parser(
        "list", help="import-check every worker without running it",
        description="Discover and import every worker of DIR without running it; exit 1 if any is broken.",
    )
    listing.add_argument("dir", nargs="?", default=_default_dir(config), metavar="DIR",
                         help="the workers folder (default: ./workers)")
    listing.add_argument("--entry-points", action=argparse.BooleanOptionalAction,
                         default=defaults.get("entry-points", True),
                         help="include workers from installed packages' entry points")
    new = commands.add_parser("new", help="write a new worker from a template",
                              description="Write DIR/NAME.py, a worker showing ctx.sleep, ctx.log and ctx.state, "
                              "or with --command a program worker.")
    new.add_argument("name", metavar="NAME", help="the worker's name: a Python identifier")
    new.add_argument("dir", nargs="?", default=_default_dir(config), metavar="DIR",
                     help="the workers folder (default: ./workers)")
    new.add_argument("--command", metavar="COMMAND", dest="program",  # args.command is the subcommand
                     help="write a program worker that runs COMMAND (split like a shell would, run without one)")
    return parser


def _origin(args: argparse.Namespace, config: Config) -> str:
    """`` (dir = 'x' in FILE)`` when the folder asked for is the config file's, else ''."""
    from_file = configuration.path_of(config, "dir")
    return f" ({configuration.origin(config, 'dir')})" if from_file is not None and args.dir == from_file else ""


def _check_folder(parser: argparse.ArgumentParser, raw: str, origin: str = "") -> Path:
    folder = Path(raw)
    if not folder.is_dir():
        parser.error(f"workers folder {raw!r}{origin} does not exist" if not folder.exists()
                     else f"{raw!r}{origin} is not a folder")
    name = folder.resolve().name
    if not name.isidentifier():
        parser.error(f"the workers folder is imported as a package, so its name must be a "
                     f"Python identifier; {name!r} is not")
    clash = importable_elsewhere(name, folder.resolve())
    if clash is not None:
        parser.error(f"the workers folder is imported as package {name!r}, which would hide the "
                     f"module {name!r} ({clash}) from every worker and from hotreload; rename the folder")
    return folder.resolve()


def importable_elsewhere(name: str, folder: Path) -> str | None:
    """Where a top-level module ``name`` is found other than ``folder`` itself (the standard
    library, an installed package, hotreload): a workers folder of that name would shadow it.
    Looked up with the import system's finders, without importing anything."""
    if name in sys.builtin_module_names or name in getattr(sys, "stdlib_module_names", ()):
        return "the standard library"
    if name == "hotreload":
        return "this program"
    if name in sys.modules:  # __main__ (no finder finds it), or anything loaded already
        return "loaded already"
    import importlib.machinery

    here = {folder.parent, Path.cwd().resolve()}  # the folder, seen from the current folder too
    search = [entry for entry in sys.path if entry and Path(entry).resolve() not in here]
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            if finder is importlib.machinery.PathFinder:
                spec = importlib.machinery.PathFinder.find_spec(name, search)
            else:
                spec = find_spec(name, None)
        except (ImportError, ValueError):
            continue
        if spec is not None:
            locations = list(spec.submodule_search_locations or ())
            return spec.origin if spec.origin not in (None, "namespace") else (locations[:1] or ["installed"])[0]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """The ``hotreload`` command. A reader of its output that went away (``| head -1``) ends
    it quietly, with the status of a process killed by SIGPIPE, as Unix tools do."""
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit, where a broken pipe prints a warning
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + 13  # SIGPIPE


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = find_config(Path.cwd())
    except ConfigError as exc:
        _Parser(prog="hotreload").error(str(exc))
    parser = build_parser(config)
    args = parser.parse_args(argv)
    if args.command == "new":
        return _new(parser, args, _origin(args, config))
    if args.command in ("status", "restart", "stop", "start"):
        return _control(parser, args)
    if args.command in ("logs", "events"):
        return _tail(args)
    folder = _check_folder(parser, args.dir, _origin(args, config))
    if args.command == "list":
        return _list(args, folder, config)
    if args.log_file:
        _check_log_file(parser, args.log_file)
    if args.http_token_file:
        args.http_token = _read_token(parser, args.http_token_file)
    if args.guard:
        from hotreload import guardian

        return guardian.guard([sys.executable, "-m", "hotreload", *argv, "--no-guard"], as_json=args.log_json)
    return _run(args, folder, config)


def _check_log_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Refuse a log file that cannot be opened, before anything starts."""
    from hotreload import logfile

    try:
        logfile.LogFile(path).stop()
    except OSError as exc:
        parser.error(f"cannot write the log file {path}: {exc.strerror or exc}")


def _read_token(parser: argparse.ArgumentParser, path: str) -> str:
    """The secret in a token file (surrounding white space dropped); an error if none."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"cannot read the HTTP token file {path}: {getattr(exc, 'strerror', None) or exc}")
    if not token:
        parser.error(f"the HTTP token file {path} is empty")
    return token


def _run(args: argparse.Namespace, folder: Path, config: Config) -> int:
    from hotreload import guardian

    guardian.connect()  # before anything can fail: leaving early is then a failure it is told of
    guardian.handle_signals_while_starting()
    from hotreload import control, host, journal, log, output, records

    kept = journal.Journal()  # what `hotreload logs` and `events` read
    log.configure(args.log_level, as_json=args.log_json, file=args.log_file, colour=args.color, journal=kept)
    output.install()
    options = records.Options(folder, stop_timeout=args.stop_timeout, reload=args.reload,
                              entry_points=args.entry_points, debounce=args.debounce,
                              config=str(config.path) if config.path else None,
                              defaults=worker_defaults(config.values))
    running = _create_host(options, kept)
    if running is None:
        return 1
    try:
        running.control = control.Server(folder, running.inbox, running.journal)
        running.control.claim()
    except control.ControlError as exc:
        log.logger.error(str(exc))
        return 1
    if running.control.notice:
        log.logger.warning(running.control.notice)
    if args.http is not None:
        from hotreload import web  # http.server and prometheus-client: imported only with --http

        try:
            running.http = web.WebServer(running, args.http, args.http_token)
        except OSError as exc:
            log.logger.error(f"cannot serve HTTP on {web.shown(args.http)}: {exc.strerror or exc}")
            running.control.stop()
            return 1
    status = host.serve(running)
    output.flush_all()
    leftover = host.leftover_threads()
    if leftover:
        names = ", ".join(repr(t.name) for t in leftover)
        log.logger.warning(f"threads started by workers are still running: {names}; exiting without them")
    if running.reexec:
        host.replace_process(running)  # never returns
    if status or leftover:
        host.exit_now(status)  # not through interpreter shutdown, which would wait for them
    return status


def _control(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from hotreload import control, status

    cmd = args.command
    if cmd == "status":
        return status.run(Path(args.dir), as_json=args.json, every=args.watch)
    if cmd == "restart" and args.host:
        if args.names or args.all or args.with_dependents:
            parser.error("restart --host takes no worker names" if args.names else
                         f"restart --host and {'--all' if args.all else '--with-dependents'} do not go together")
        cmd = "restart-host"
    elif args.names and args.all:
        parser.error(f"{cmd} takes worker names or --all, not both")
    elif not args.names and not args.all:
        parser.error(f"{cmd} needs worker names, or --all" + (", or --host" if cmd == "restart" else ""))
    elif cmd == "restart" and args.with_dependents:
        cmd = "restart-with-dependents"
    try:
        reply = control.request(Path(args.dir), cmd, args.names, all_workers=args.all)
    except control.ControlError as exc:
        print(f"hotreload: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"hotreload: {reply.get('error', 'the host refused')}", file=sys.stderr)
        return 1
    results = reply.get("results", {})
    for name, result in results.items():
        print(f"{name}: {result}")
    return 1 if any(map(_failed, results.values())) else 0


def _tail(args: argparse.Namespace) -> int:
    from hotreload import status, tail

    return tail.show(Path(args.dir), args.command, getattr(args, "names", ()), getattr(args, "lines", None),
                     follow=args.follow, as_json=args.json, colour=status.use_colour())


def _failed(result: Any) -> bool:
    """A per-name result of ``start``/``restart``/``stop`` that did not happen: core words
    those ``cannot ...`` (``already running`` or ``not running`` are what was asked for)."""
    return str(result).startswith("cannot ")


def _create_host(options: Options, journal: Journal | None = None) -> Host | None:
    """``host.create(options, journal)``, or None once a folder whose package fails to import
    is reported (its ``__init__.py`` raised)."""
    from hotreload import host, log

    try:
        return host.create(options, journal)
    except Exception as exc:  # noqa: BLE001 - a broken __init__.py of the folder
        log.logger.error(f"cannot import the workers folder as a package:\n{log.format_error(exc)}")
        return None


def _list(args: argparse.Namespace, folder: Path, config: Config) -> int:
    from hotreload import listing, log, records

    log.configure("WARNING")
    options = records.Options(folder, reload=False, entry_points=args.entry_points,
                              defaults=worker_defaults(config.values))
    checked = _create_host(options)
    return 1 if checked is None else listing.report(checked)


def _new(parser: argparse.ArgumentParser, args: argparse.Namespace, origin: str = "") -> int:
    from hotreload import scaffold

    try:
        path = scaffold.new_worker(Path(args.dir), args.name, args.program)
    except ValueError as exc:
        parser.error(f"{exc}{origin}" if not Path(args.dir).is_dir() else str(exc))
    print(f"wrote {path}: edit it, then `hotreload run {args.dir}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
