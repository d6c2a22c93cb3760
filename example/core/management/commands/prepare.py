"""``manage.py prepare``: the one-shot step a deployment runs before web, worker and crons start.

Applies the migrations, then creates the admin user from ``DJANGO_SUPERUSER_USERNAME`` and
``DJANGO_SUPERUSER_PASSWORD`` (and ``DJANGO_SUPERUSER_EMAIL``) when they are set and that user does not
exist yet. An existing user is left as it is (its password may have been changed since); the password
is never printed. docker-compose.yml runs it as the ``migrate`` service, which the others wait for.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Migrate, then create the admin user from DJANGO_SUPERUSER_* if it does not exist."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=options["verbosity"])
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            # Compose passes a default username with an empty password: migrating must still succeed.
            self.stdout.write("prepare: no DJANGO_SUPERUSER_PASSWORD set; no admin user created")
            return
        if not username:
            raise CommandError(
                "prepare: DJANGO_SUPERUSER_PASSWORD is set but DJANGO_SUPERUSER_USERNAME is empty"
            )
        users = get_user_model()
        if users._default_manager.filter(**{users.USERNAME_FIELD: username}).exists():
            self.stdout.write(f"prepare: admin user {username!r} exists; left unchanged")
            return
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        users._default_manager.db_manager().create_superuser(
            username=username, email=email, password=password
        )
        self.stdout.write(f"prepare: created admin user {username!r}")
