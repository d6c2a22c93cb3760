"""Error reports that never show a password, the DEBUG page included.

Django's own filter hides settings by *name* (``...PASSWORD``, ``...SECRET_KEY``), but a password can
also sit inside a value: ``FUSION_JOBS_BROKER_URL=amqp://user:pass@host/``, ``DATABASE_URL`` in the
environment that ``runserver`` copies into ``request.META``, or a connection dict in a traceback's local
variables. This filter masks the password part of every ``scheme://user:password@`` it finds in settings,
request metadata and frame variables, and cleanses dicts in frames the way settings are cleansed.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

#: ``scheme://user:password@`` in any string; the password is group 2.
URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s]+)(@)", re.IGNORECASE)
_REPR_LIMIT = 20_000


def mask_url_passwords(text: str) -> str:
    """``amqp://u:secret@h/`` -> ``amqp://u:********@h/`` for every URL in ``text``."""
    return URL_PASSWORD.sub(r"\1********\3", text)


class PasswordMaskingFilter(SafeExceptionReporterFilter):
    """Django's filter, plus passwords inside URLs and inside dicts/objects in traceback frames."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_url_passwords(cleansed)
        return cleansed

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        if isinstance(value, str | dict | list | tuple):
            return self.cleanse_setting("", value)
        if isinstance(value, int | float | bool | type(None) | bytes | HttpRequest):
            return value
        try:
            shown = repr(value)[:_REPR_LIMIT]
        except Exception:
            return value
        # An object whose repr carries a URL with a password (a connection's parameters): show it masked.
        return mask_url_passwords(shown) if URL_PASSWORD.search(shown) else value
