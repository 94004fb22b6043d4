"""Colours of the terminal log: each worker's name in a colour of its own (pure).

A name's colour is a hash of the name into ``PALETTE``: the same name has the same colour
in every run, every process and every command (``run``, and what shows its lines). The hash
is CRC-32 of the UTF-8 name, not ``hash()``, which Python salts anew in every process.
"""
from __future__ import annotations

import zlib

__all__ = ["CHOICES", "PALETTE", "RESET", "code_of", "colour_of", "paint", "wanted"]

# xterm-256 colours of the 6x6x6 cube, one a hue, each with a contrast of at least 3.5:1
# against both black and white (WCAG's measure), so a name reads on dark and light
# terminals alike. No pure red or yellow: those say ERROR and WARNING. Orange, brown,
# olive, green, sea green, teal, sky blue, blue, slate blue, purple, violet, magenta, pink.
PALETTE = (166, 94, 64, 28, 29, 30, 32, 27, 62, 98, 128, 164, 162)
RESET = "\033[0m"
CHOICES = ("auto", "always", "never")  # --color


def code_of(name: str) -> str:
    """The SGR parameters of ``name``'s colour (xterm-256 foreground): ``38;5;N``."""
    index = PALETTE[zlib.crc32(name.encode("utf-8", "surrogatepass")) % len(PALETTE)]
    return f"38;5;{index}"


def colour_of(name: str) -> str:
    """The escape sequence that sets the foreground to ``name``'s colour."""
    return f"\033[{code_of(name)}m"


def paint(text: str, code: str) -> str:
    """``text`` in the SGR colour ``code`` (``"32"``, ``"1;31"``, ``code_of(name)``)."""
    return f"\033[{code}m{text}{RESET}"


def wanted(choice: str, terminal: bool, no_color: str | None) -> bool:
    """Whether to colour, for ``--color`` ``choice``: ``auto`` colours a terminal unless
    ``NO_COLOR`` is set to a non-empty value (https://no-color.org); ``always`` and ``never``
    override both, as a command-line option should."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return terminal and not no_color
