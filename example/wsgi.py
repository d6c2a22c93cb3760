"""WSGI entry (gunicorn ``example.wsgi``, and ``runserver`` through ``WSGI_APPLICATION``).

Refuses to start when DEBUG is off and no ``DJANGO_SECRET_KEY`` is set: sessions, CSRF and password
resets would otherwise be signed with a key anyone can read in this repository.
"""

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
application = get_wsgi_application()

try:
    settings.SECRET_KEY  # noqa: B018 - Django raises here when it is empty
except ImproperlyConfigured:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set and DEBUG is off: refusing to serve without a secret key "
        "(set DJANGO_SECRET_KEY, or DJANGO_DEBUG=1 for local development only)"
    ) from None
