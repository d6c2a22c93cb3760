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
# Two runs, two settings: the library's tests (tests.settings, no example app loaded), then the
# example's tests on the example's settings. Arguments are pytest options for both runs.
echo "test: pytest"
.venv/bin/python -m pytest "$@"
echo "test: pytest, the example's tests"
.venv/bin/python -m pytest --ds=tests.example.settings tests/example "$@"
# Second pass: the same suite on Django 6.1 (django.tasks built in; Python 3.12). Lint and types once.
echo "test: pytest on Django 6.1"
status=0
scripts/setup-django61.sh || status=$?
if [ "$status" = 3 ] && [ "${CI:-}" != "true" ]; then
  echo "test: Django 6.1 pass skipped here (no Python 3.12); CI=true fails instead"
elif [ "$status" != 0 ]; then
  exit "$status"
else
  .venv-django61/bin/python -m pytest --ignore=tests/system/test_multi_host.py "$@"
  .venv-django61/bin/python -m pytest --ds=tests.example.settings tests/example "$@"
fi
# Third pass: the broker path once more on quorum queues, in a vhost of its own (a queue's type
# is fixed when it is created: the first pass's classic queues would be refused).
echo "test: pytest, broker path on quorum queues"
QUORUM_VHOST=fusion_jobs_quorum
rabbitmqctl -q delete_vhost "$QUORUM_VHOST" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "$QUORUM_VHOST"
rabbitmqctl -q set_permissions -p "$QUORUM_VHOST" guest ".*" ".*" ".*"
FUSION_JOBS_QUEUE_TYPE=quorum FUSION_JOBS_TEST_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/$QUORUM_VHOST" \
  .venv/bin/python -m pytest -m broker tests/integration/backends/test_broker.py tests/integration/backends/test_queues.py \
  tests/system/test_pgbouncer.py tests/system/faults tests/integration/test_relay.py \
  tests/integration/backends/test_broker_namespace.py tests/integration/middleware/test_lifecycle.py \
  tests/integration/test_admission.py --ignore=tests/system/faults/test_outages.py \
  --ignore=tests/system/faults/test_secrets.py --ignore=tests/system/faults/test_supervision.py
rabbitmqctl -q delete_vhost "$QUORUM_VHOST"
# Fourth pass: the worker, runcrons, the relay, the admin and the fault suite through PgBouncer in
# transaction pooling mode (prepared statements only when PgBouncer keeps them: 1.21+).
echo "test: pytest through PgBouncer (transaction pooling)"
PGB_DIR=$(mktemp -d)
PGB_DB=test_fusion_jobs_pgbouncer
PGB_PORT=6432
scripts/pgbouncer.sh start "$PGB_DIR" "$PGB_PORT"
trap 'scripts/pgbouncer.sh stop "$PGB_DIR"' EXIT
psql -h 127.0.0.1 -U "${PGUSER:-postgres}" -qc "DROP DATABASE IF EXISTS $PGB_DB"
prepared=$([ "$(cat "$PGB_DIR/prepared_statements")" = on ] && echo 1 || echo 0)
# --reuse-db: Django's DROP DATABASE at the end would find PgBouncer's pooled server connections.
PGPORT=$PGB_PORT FUSION_JOBS_TEST_DB=$PGB_DB FUSION_JOBS_TEST_PGBOUNCER_PORT=$PGB_PORT \
  FUSION_JOBS_PREPARED_STATEMENTS=$prepared .venv/bin/python -m pytest --reuse-db tests/system/test_pgbouncer.py \
  tests/system/faults tests/integration/test_relay.py tests/integration/admin/test_runs.py \
  tests/system/test_runcrons.py tests/integration/test_admission.py tests/integration/middleware/test_lifecycle.py \
  --ignore=tests/system/faults/test_outages.py
scripts/pgbouncer.sh stop "$PGB_DIR"
psql -h 127.0.0.1 -U "${PGUSER:-postgres}" -qc "DROP DATABASE IF EXISTS $PGB_DB"
