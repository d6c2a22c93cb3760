"""``manage.py prepare``: the compose file's one-shot migrate step, whatever admin variables it gets."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_a_username_without_a_password_migrates_and_creates_no_user(monkeypatch, capsys):
    """Compose defaults the username to "admin" and the password to empty: the step must not fail."""
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "")
    call_command("prepare", verbosity=0)
    assert "no DJANGO_SUPERUSER_PASSWORD set" in capsys.readouterr().out
    assert not get_user_model().objects.filter(username="admin").exists()


@pytest.mark.django_db
def test_a_password_without_a_username_is_refused(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-sentinel")
    with pytest.raises(CommandError) as raised:
        call_command("prepare", verbosity=0)
    assert "s3cret-sentinel" not in str(raised.value)


@pytest.mark.django_db
def test_both_create_the_admin_once(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "boss")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-sentinel")
    call_command("prepare", verbosity=0)
    call_command("prepare", verbosity=0)
    user = get_user_model().objects.get(username="boss")
    assert user.is_superuser and user.check_password("s3cret-sentinel")
