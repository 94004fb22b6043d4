"""The suite run as people and CI run it: two sessions at once, from any folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import WAIT, wait_for

PROJECT = Path(__file__).resolve().parent.parent
SESSION = 60.0  # seconds: the most a session of one tiny test may take on a loaded machine

TOY_TEST = '''
import os
import time
from pathlib import Path


def test_my_temp_files_last_until_i_am_done(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("kept")
    if os.environ["TOY_ROLE"] == "waits":
        Path(os.environ["TOY_READY"]).write_text(str(tmp_path))
        deadline = time.monotonic() + float(os.environ["TOY_WAIT"])
        while not Path(os.environ["TOY_GO"]).exists():
            assert time.monotonic() < deadline, "never told to go on"
            time.sleep(0.01)
    assert mine.read_text() == "kept"
'''


def test_two_sessions_at_once_keep_their_temp_folders_apart(tmp_path):
    """A session that ends prunes the numbered folders it finds in pytest's shared base
    (/tmp/pytest-of-USER/): with tox.ini's retention of none they have no lock, so the end of
    one session deleted another's live folders. Here session B starts and ends while session A
    is in a test; A's files must still be there. Both run this project's conftest.py and
    tox.ini, in a temp root of their own (TMPDIR) so that no other session on the machine is
    touched either way."""
    toy = tmp_path / "toy"
    toy.mkdir()
    shutil.copy(PROJECT / "tox.ini", toy / "tox.ini")
    shutil.copy(PROJECT / "tests" / "conftest.py", toy / "conftest.py")
    (toy / "test_toy.py").write_text(TOY_TEST)
    temproot = tmp_path / "tmp"
    temproot.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(TMPDIR=str(temproot), TOY_READY=str(tmp_path / "ready"), TOY_GO=str(tmp_path / "go"),
               TOY_WAIT=str(SESSION + WAIT))  # A waits while B runs
    # the plugins this check has no use for, left out for speed (hypothesis' alone is seconds)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:hypothesispytest", "-p", "no:hotreload", "test_toy.py"]

    waits = subprocess.Popen(command, cwd=toy, env={**env, "TOY_ROLE": "waits"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / "ready").exists() or waits.poll() is not None, SESSION, "session A's test")
        ends = subprocess.run(command, cwd=toy, env={**env, "TOY_ROLE": "ends"}, capture_output=True,
                              text=True, timeout=SESSION)
        (tmp_path / "go").touch()
        out, _ = waits.communicate(timeout=SESSION)
    finally:
        if waits.poll() is None:
            waits.kill()
            waits.wait()
    assert ends.returncode == 0, ends.stdout + ends.stderr
    assert waits.returncode == 0, out
    assert list(temproot.iterdir()) == []  # and each removed its own when it ended
