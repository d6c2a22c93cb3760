"""The changelist base of fusion-jobs' admin pages: a filter value PostgreSQL cannot take is refused.

PostgreSQL refuses a NUL in any query parameter (psycopg raises ``DataError`` when the page's
queryset is evaluated, a 500). No stored value holds one, so such a filter is invalid: Django's
``IncorrectLookupParameters`` sends the user back to the list with ``?e=1``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest


class StorableFiltersChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        if any(
            "\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()
        ):
            raise IncorrectLookupParameters("a filter value contains a NUL character")
        return super().get_queryset(request, exclude_parameters)
