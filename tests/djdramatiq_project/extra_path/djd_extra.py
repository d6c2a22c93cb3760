"""Importable only through `rundramatiq --path tests/djdramatiq_project/extra_path`."""

import os
import time


def mark():
    """A --fork-function: leaves its pid in $DJD_FORK_MARK, then waits to be stopped."""
    with open(os.environ["DJD_FORK_MARK"], "w") as out:
        out.write(str(os.getpid()))
    while True:
        time.sleep(1)
