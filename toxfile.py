"""tox's hook for this project: find every Python that pyenv installed.

tox finds a pyenv interpreter through pyenv's shims only while it is one of pyenv's active
versions (``pyenv global``, ``.python-version``, ``PYENV_VERSION``), so on a machine with
one active version every other env of the envlist was skipped as missing. The interpreters
under ``$PYENV_ROOT/versions/`` are offered to tox's discovery first, as ``--discover``
would; tox still picks, for each env, the one that matches its ``pyXY``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from tox.config.sets import ConfigSet
from tox.plugin import impl
from tox.session.state import State


def pyenv_pythons(root: Path) -> list[str]:
    """The ``python3.Y`` executables of each version installed under pyenv's ``root`` (a Python 2
    among them would stop the discovery with an error)."""
    found = (path for path in root.glob("versions/*/bin/python*") if re.fullmatch(r"python3\.\d+", path.name))
    return sorted(str(path) for path in found)


@impl
def tox_add_core_config(core_conf: ConfigSet, state: State) -> None:
    options = state.conf.options
    if hasattr(options, "discover"):  # the commands that create envs
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
        options.discover = [*options.discover, *pyenv_pythons(root)]
