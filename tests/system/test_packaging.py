"""``pip install .`` (README "Using it in your project") must ship everything the app needs at run time:
the admin's templates and static files are not Python modules, so they need package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_carries_templates_static_files_and_migrations(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "fusion_jobs", source / "fusion_jobs", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path)]
    built = subprocess.run(
        [*pip_wheel, str(source)], cwd=source, capture_output=True, text=True, timeout=600, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob("fusion_jobs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped = {
        path.relative_to(ROOT).as_posix()
        for folder in ("templates", "static", "migrations")
        for path in (ROOT / "fusion_jobs" / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped, "nothing found to compare"
    assert not shipped - names, f"missing from the wheel: {sorted(shipped - names)}"
    assert not any(name.startswith(("example/", "tests/", "bench/")) for name in names)
