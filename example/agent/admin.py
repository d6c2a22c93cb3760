"""Admin pages for the agent: read-only history, plus a retry action on the outbox."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import AgentState, AgentTick, Memory, MessageStatus, OutboundMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the agent are history: look, don't edit. Deleting stays allowed for cleanup."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AgentState)
class AgentStateAdmin(ReadOnlyAdmin):
    list_display = ("name", "watermark", "last_tick_at", "updated_at")


@admin.register(AgentTick)
class AgentTickAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "status",
        "window_start",
        "window_end",
        "ticks_caught_up",
        "documents_ready",
        "documents_failed",
        "deliveries_dead",
        "memories_created",
        "messages_queued",
    )
    list_filter = ("status",)
    date_hierarchy = "started_at"
    show_full_result_count = False


@admin.register(Memory)
class MemoryAdmin(ReadOnlyAdmin):
    list_display = ("short_text", "kind", "user", "mentions", "created_at", "state", "embedder_name")
    list_filter = ("kind", "embedder_name")
    search_fields = ("text", "source")
    date_hierarchy = "created_at"
    exclude = ("embedding",)
    raw_id_fields = ("user", "merged_into", "summarized_in")
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj: Memory) -> str:
        return obj.text if len(obj.text) <= 90 else obj.text[:89] + "…"

    @admin.display(description="state")
    def state(self, obj: Memory) -> str:
        if obj.merged_into_id:
            return f"merged into #{obj.merged_into_id}"
        if obj.summarized_in_id:
            return f"summarised in #{obj.summarized_in_id}"
        return "active"


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    list_display = ("subject", "to", "kind", "status", "attempts", "next_attempt_at", "sent_at", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("to", "subject")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)
    actions = ["retry_now"]
    show_full_result_count = False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("agent.change_outboundmessage"))

    @admin.action(description="Deliver again at the next delivery run", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        count = queryset.exclude(status=MessageStatus.SENT).update(
            status=MessageStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), dead_at=None
        )
        self.message_user(request, f"{count} message(s) will be retried.", messages.SUCCESS)
