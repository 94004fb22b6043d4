"""web: a program worker, Python's own static file server serving public/ on loopback.

Save this file without changing what it runs (a comment) and the server runs on; change
COMMAND, ENV, CWD or STOP_SIGNAL, or the port in _config.py, and it restarts with them.
"""
import sys

from ._config import PORT

COMMAND = [sys.executable, "-m", "http.server", str(PORT), "--bind", "127.0.0.1"]
CWD = "public"  # relative to the workers folder
READY = f"tcp:{PORT}"  # the workers AFTER it start once the server accepts connections
STOP_TIMEOUT = 3
