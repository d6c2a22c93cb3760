#!/usr/bin/env bash
# Set up and run the example project on its embedded default: SQLite, jobs inline, on loopback only.
# Local development: DJANGO_DEBUG=1 (the example's default is off, and with DEBUG off it refuses to start
# without DJANGO_SECRET_KEY). PORT picks the port (default 8000). For a deployment see README "Deploying".
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_DEBUG=${DJANGO_DEBUG:-1}
scripts/setup.sh
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py shell -c "
from django.contrib.auth import get_user_model
User = get_user_model()
if not User.objects.filter(is_superuser=True).exists():
    User.objects.create_superuser('admin', 'admin@example.com', 'admin')
    print('example: created the superuser admin (password: see README; change it outside local development)')
"
echo "example: http://127.0.0.1:${PORT:-8000}/  (admin: /admin/)"
exec .venv/bin/python manage.py runserver "127.0.0.1:${PORT:-8000}"
