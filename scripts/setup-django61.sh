#!/usr/bin/env bash
# Create .venv-django61 (Python 3.12, Django 6.1) for the test suite's second pass; idempotent.
# Django 6 needs Python >= 3.12: python3.12 from PATH, else pyenv's. Exit 3 when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
python=""
for candidate in "${PYTHON312:-}" python3.12 "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/3.12*/bin/python3.12; do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] >= (3, 12)' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "setup-django61: no Python 3.12 found (python3.12 on PATH, pyenv, or PYTHON312=...); Django 6.1 needs it"
  exit 3
fi
if [ ! -x .venv-django61/bin/python ]; then
  echo "setup-django61: creating .venv-django61 with $("$python" --version)"
  "$python" -m venv .venv-django61
fi
stamp=.venv-django61/.requirements.sha
want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup-django61: installing requirements-dev.txt, then requirements-django61.txt on top"
  .venv-django61/bin/python -m pip install --quiet --upgrade pip
  .venv-django61/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv-django61/bin/python -m pip install --quiet -r requirements-django61.txt
  echo "$want" > "$stamp"
fi
