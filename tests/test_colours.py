"""Each worker's name in a colour of its own, the same in every run; colour only where wanted."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import read_terminal, run_cli, worker_source, write
from hotreload.colours import PALETTE, RESET, colour_of, wanted

NAMES = [f"worker{i}" for i in range(200)] + ["ticker", "poller", "http_server", "é", ""]


def rgb(index: int) -> tuple[int, int, int]:
    """An xterm-256 colour of the 6x6x6 cube as red, green, blue."""
    levels = (0, 95, 135, 175, 215, 255)
    assert 16 <= index <= 231, index
    n = index - 16
    return levels[n // 36], levels[n // 6 % 6], levels[n % 6]


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio."""

    def luminance(colour: tuple[int, int, int]) -> float:
        linear = [(c / 255 / 12.92) if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_colour_of_the_palette_reads_on_a_black_and_on_a_white_background():
    assert len(set(PALETTE)) == len(PALETTE) >= 10
    for index in PALETTE:
        colour = rgb(index)
        assert contrast(colour, (0, 0, 0)) >= 3.5 and contrast(colour, (255, 255, 255)) >= 3.5, (index, colour)


def test_a_name_gets_an_xterm_256_foreground_of_the_palette_and_names_spread_over_all_of_it():
    used = set()
    for name in NAMES:
        match = re.fullmatch(r"\033\[38;5;(\d+)m", colour_of(name))
        assert match, repr(colour_of(name))
        used.add(int(match[1]))
    assert used == set(PALETTE)


def test_a_name_has_the_same_colour_in_every_process_whatever_the_hash_seed():
    """Python's hash() of a str changes from one process to the next (PYTHONHASHSEED)."""
    program = f"from hotreload.colours import colour_of; print([colour_of(n) for n in {NAMES!r}])"
    outputs = {
        subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {f"{[colour_of(n) for n in NAMES]!r}\n"}


def test_colour_is_on_for_a_terminal_without_no_color_unless_the_command_line_says_otherwise():
    assert wanted("auto", terminal=True, no_color=None)
    assert wanted("auto", terminal=True, no_color="")  # empty: no effect, as no-color.org says
    assert not wanted("auto", terminal=True, no_color="1")
    assert not wanted("auto", terminal=False, no_color=None)
    for terminal in (True, False):
        for no_color in (None, "1"):
            assert wanted("always", terminal, no_color)  # the command line wins over NO_COLOR
            assert not wanted("never", terminal, no_color)


# --- through the real command ------------------------------------------------------------------

TWO = ("alpha", "beta")  # two names of different colours (checked below)


def two_workers(folder):
    assert colour_of(TWO[0]) != colour_of(TWO[1])
    for name in TWO:
        write(folder / f"{name}.py", worker_source(body=f"ctx.log.warning('a warning'); ctx.log.info('{name} is up')"))


def test_on_a_terminal_each_worker_name_has_its_colour_and_levels_theirs(folder, tmp_path):
    two_workers(folder)
    screen = read_terminal(folder, tmp_path, {}, until=tuple(f"{name} is up" for name in TWO))
    for name in TWO:
        assert f"{colour_of(name)}{name.ljust(10)}{RESET}" in screen
    warning_line = next(line for line in screen.splitlines() if "a warning" in line)
    assert "\033[33m" in warning_line.split("WARNING")[0]  # loguru's yellow, as before
    assert f"\033[1m{'host'.ljust(10)}{RESET}" in screen  # the host's own lines: bold, no colour


def test_color_never_leaves_a_terminal_plain_and_the_config_file_can_say_it_too(folder, tmp_path):
    two_workers(folder)
    until = tuple(f"{name} is up" for name in TWO)
    assert "\033[" not in read_terminal(folder, tmp_path, {}, "--color=never", until=until)
    (tmp_path / "pyproject.toml").write_text("[tool.hotreload]\ncolor = 'never'\n")
    assert "\033[" not in read_terminal(folder, tmp_path, {}, until=until)
    assert colour_of("alpha") in read_terminal(folder, tmp_path, {}, "--color", "auto", until=until)


def test_color_always_colours_a_pipe_and_wins_over_no_color(folder, tmp_path, start_host):
    two_workers(folder)
    host = start_host(folder, "--color=always", env={"NO_COLOR": "1"})
    host.wait_log("beta is up")
    host.wait_log("alpha is up")
    log = host.log()
    assert f"{colour_of('alpha')}alpha" in log and f"{colour_of('beta')}beta" in log
    assert host.stop() == 0


def test_a_pipe_is_plain_by_default_and_the_log_file_and_json_never_coloured(folder, tmp_path, start_host):
    two_workers(folder)
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-file", str(log_file))
    host.wait_log("alpha is up")
    host.wait_log("beta is up")
    assert "\033[" not in host.log()
    assert host.stop() == 0
    json_host = start_host(folder, "--log-json", "--color=always", "--log-file", str(log_file))
    json_host.wait_log("beta is up", count=1)
    json_host.wait_log("alpha is up", count=1)
    assert "\\u001b" not in json_host.log() and "\033[" not in json_host.log()
    assert "\033[" not in log_file.read_text()
    assert json_host.stop() == 0


def test_a_bad_color_choice_is_a_usage_error(folder, tmp_path):
    result = run_cli("run", str(folder), "--color=sometimes", cwd=tmp_path)
    assert result.returncode == 2 and "--color" in result.stderr and len(result.stderr.splitlines()) == 1
