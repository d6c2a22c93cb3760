#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, start the services, lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=requirements-dev.txt scripts/setup.sh
scripts/services.sh
scripts/browser.sh
echo "test: ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "test: mypy"
.venv/bin/mypy fusion_jobs example
echo "test: migrations"
.venv/bin/python manage.py makemigrations --check --dry-run
echo "test: pytest"
.venv/bin/python -m pytest "$@"
# Second pass: the same suite on Django 6.1 (django.tasks built in; Python 3.12). Lint and types once.
echo "test: pytest on Django 6.1"
status=0
scripts/setup-django61.sh || status=$?
if [ "$status" = 3 ] && [ "${CI:-}" != "true" ]; then
  echo "test: Django 6.1 pass skipped here (no Python 3.12); CI=true fails instead"
elif [ "$status" != 0 ]; then
  exit "$status"
else
  .venv-django61/bin/python -m pytest "$@"
fi
