"""The README's command-line reference says what `--help` says."""
import re
from pathlib import Path

from hotreload.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"


def parsers() -> dict:
    """Command -> its argparse parser ("" for the top level)."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {"": parser, **subparsers.choices}


def documented() -> dict[str, set[str]]:
    """Command -> the options (as dest names) in the README block after the cli-reference marker."""
    text = README.read_text()
    block = text[text.index("<!-- cli-reference"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    known = parsers()
    commands: dict[str, set[str]] = {}
    current = ""
    for line in filter(str.strip, block.splitlines()):
        words = line.split()
        if words[0] == "hotreload":
            current = "" if words[1].startswith("-") else words[1]
            commands.setdefault(current, set())
        for option in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", line):
            action = known[current]._option_string_actions.get(option)
            commands.setdefault(current, set()).add(action.dest if action else f"unknown {option}")
    return commands


def from_help() -> dict[str, set[str]]:
    return {
        name: {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
        for name, parser in parsers().items()
    }


def test_the_cli_reference_lists_every_command_and_option_and_nothing_else():
    assert documented() == from_help()
