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
