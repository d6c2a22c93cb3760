"""Admin for documents (read-only, with a "reprocess" action) and their chunks (read-only, searchable).

Documents are created by the upload page only, which starts their processing; editing one by hand
would leave its chunks out of step, so every field is read-only here. Data is rendered through
``format_html`` only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .jobs import kick_processing, mark_pending
from .models import Chunk, Document, DocumentStatus
from .status import STAGE_LABELS, TIMED_STAGES, is_active, run_of

STATUS_COLOURS = {
    DocumentStatus.PENDING: "#b45309",
    DocumentStatus.PROCESSING: "#4f46e5",
    DocumentStatus.READY: "#15803d",
    DocumentStatus.FAILED: "#b91c1c",
}


def status_badge(document: Document) -> SafeString:
    return format_html(
        '<span style="display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:11px;'
        'font-weight:600;background-color:{}">{}</span>',
        STATUS_COLOURS.get(DocumentStatus(document.status), "#6c757d"),
        document.get_status_display(),
    )


_MAIN_FIELDS = ("title", "owner", "status_display", "error", "site_link")
_FILE_FIELDS = ("file", "original_name", "content_type", "size")
_PROCESSING_FIELDS = (
    "page_count",
    "chunk_count",
    "embedder_name",
    "embedder_version",
    "timings_table",
    "run_link",
    "created_at",
    "processed_at",
)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "owner",
        "status_display",
        "page_count",
        "chunk_count",
        "embedder_name",
        "created_at",
    )
    list_filter = ("status", "embedder_name", "created_at")
    search_fields = ("title", "original_name", "error")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    actions = ("reprocess",)
    fieldsets = (
        (None, {"fields": _MAIN_FIELDS}),
        ("File", {"fields": _FILE_FIELDS}),
        ("Processing", {"fields": _PROCESSING_FIELDS}),
    )
    #: Every field shown is read-only: documents change through uploads and jobs, not here.
    readonly_fields = _MAIN_FIELDS + _FILE_FIELDS + _PROCESSING_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # uploads go through /documents/, which also starts the processing

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Document) -> SafeString:
        return status_badge(obj)

    @admin.display(description="on the site")
    def site_link(self, obj: Document) -> SafeString:
        return format_html('<a href="{}">{}</a>', obj.get_absolute_url(), obj.get_absolute_url())

    @admin.display(description="timings")
    def timings_table(self, obj: Document) -> SafeString | str:
        timings = obj.timings or {}
        if not timings:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td></tr>",
            (
                (STAGE_LABELS.get(stage, stage), f"{timings[stage]:.3f} s")
                for stage in (*TIMED_STAGES, "total")
                if stage in timings
            ),
        )
        return format_html("<table><tbody>{}</tbody></table>", rows)

    @admin.display(description="last job run")
    def run_link(self, obj: Document) -> SafeString | str:
        if not obj.last_run_id:
            return "-"
        url = reverse("admin:fusion_jobs_jobrun_change", args=[str(obj.last_run_id)])
        return format_html('<a href="{}"><code>{}</code></a>', url, obj.last_run_id)

    @admin.action(description="Reprocess the selected documents", permissions=["change"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        started, skipped = 0, 0
        for document in queryset:
            if is_active(document, run_of(document)):
                skipped += 1
                continue
            mark_pending(document)
            transaction.on_commit(partial(kick_processing, document.pk))
            started += 1
        self.message_user(request, f"Reprocessing {started} document(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} already being processed, left alone.", messages.WARNING)


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("__str__", "document", "index", "pages", "embedder_name", "preview")
    list_filter = ("embedder_name", "embedder_version")
    search_fields = ("text", "document__title")
    list_select_related = ("document",)
    fields = ("document", "index", "pages", "embedder_name", "embedder_version", "dimensions", "text")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # chunks belong to their document: reprocess or delete the document instead

    @admin.display(description="pages", ordering="page_start")
    def pages(self, obj: Chunk) -> str:
        return obj.page_label

    @admin.display(description="dimensions")
    def dimensions(self, obj: Chunk) -> str:
        return str(len(obj.embedding) // 4) if obj.embedding else "-"

    @admin.display(description="text")
    def preview(self, obj: Chunk) -> str:
        return obj.text if len(obj.text) <= 120 else obj.text[:120] + "…"
