"""Only complete saves are loaded: a file rewritten in place while the host reads it."""
import random
import time

from conftest import worker_source, write

# ~60 KB before run(): half a file is a syntax error or a module without run.
PADDING = "PADDING = (\n" + '    "0123456789012345678901234567890123456789012345678901234567890",\n' * 900 + ")\n"
ERRORS = ("not loaded", "not reloaded", "no longer defines", "ERROR")


def save_in_two_halves(path, text):
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        time.sleep(0.002)
        f.write(text[len(text) // 2:])


def test_a_big_file_rewritten_in_place_160_times_is_never_loaded_half_written(folder, start_host):
    write(folder / "big.py", worker_source(1, top=PADDING))
    host = start_host(folder)
    host.wait_started("big", 1)
    rng = random.Random(9)
    for version in range(2, 162):
        save_in_two_halves(folder / "big.py", worker_source(version, top=PADDING))
        time.sleep(rng.uniform(0.01, 0.02))
    host.wait_started("big", 161)
    host.barrier()
    log = host.log()
    assert not [line for line in log.splitlines() if any(e in line for e in ERRORS)], log
    starts = host.starts("big")
    assert starts == sorted(starts) and starts[-1] == 161, starts
    assert host.stop() == 0
