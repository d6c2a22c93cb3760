"""scripts/test.sh names test files for its extra passes (quorum queues, PgBouncer): a file moved
without it would stop the whole run with "file or directory not found" only at the end of CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_path_the_script_names_exists() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    named = set(re.findall(r"(?:--ignore=)?(tests/[\w/.-]*)", script))
    assert named, "the script names no test path: this test reads it wrongly"
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
