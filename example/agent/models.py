"""What the proactive agent keeps: its watermark, one row per tick, memories, and the mail it queues."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AgentState(models.Model):
    """One row per agent: the watermark up to which events have been looked at.

    The tick locks this row for its whole transaction, so two ticks never run at once and a tick that
    crashes leaves the watermark where it was (its window is covered again by the next tick).
    """

    name = models.CharField(max_length=50, primary_key=True)
    watermark = models.DateTimeField(help_text="Events up to this time have been looked at.")
    last_tick_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.watermark:%Y-%m-%d %H:%M:%S}"


class TickStatus(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class AgentTick(models.Model):
    """One proactive tick: the window it covered, how many missed ticks it caught up, what it found."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=TickStatus.choices, default=TickStatus.RUNNING)
    skip_reason = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    ticks_caught_up = models.PositiveIntegerField(
        default=0, help_text="Missed ticks this one covered (downtime catch-up)."
    )
    documents_ready = models.PositiveIntegerField(default=0)
    documents_failed = models.PositiveIntegerField(default=0)
    deliveries_dead = models.PositiveIntegerField(default=0)
    memories_created = models.PositiveIntegerField(default=0)
    messages_queued = models.PositiveIntegerField(default=0)
    run_id = models.CharField(
        max_length=36, blank=True, default="", help_text="The JobRun, when run as a job."
    )

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["started_at"], name="agent_tick_started")]

    def __str__(self) -> str:
        return f"tick {self.started_at:%Y-%m-%d %H:%M:%S} [{self.status}]"


class MemoryKind(models.TextChoices):
    OBSERVATION = "observation", "Observation"
    DELIVERY = "delivery", "Delivery"
    SUMMARY = "summary", "Summary"
    NOTE = "note", "Note"


class MemoryQuerySet(models.QuerySet["Memory"]):
    def active(self) -> MemoryQuerySet:
        """Memories not merged into another one and not rolled up into a summary."""
        return self.filter(merged_into__isnull=True, summarized_in__isnull=True)


class Memory(models.Model):
    """Something the agent noticed, embedded so near-duplicates can be merged and old ones summarised."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="agent_memories",
    )
    kind = models.CharField(max_length=12, choices=MemoryKind.choices, default=MemoryKind.OBSERVATION)
    text = models.TextField()
    source = models.CharField(
        max_length=100, blank=True, default="", help_text="What it is about, e.g. document:12."
    )
    event_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        unique=True,
        help_text="The event it records; unique, so one event is never remembered twice.",
    )
    embedding = models.BinaryField(null=True, blank=True, help_text="float32 vector, L2-normalised.")
    embedder_name = models.CharField(max_length=50, blank=True, default="")
    embedder_version = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, help_text="Latest duplicate merged into it.")
    mentions = models.PositiveIntegerField(default=1, help_text="1 + the memories merged into it.")
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="merged",
        help_text="The near-duplicate that absorbed this one (deleting it makes this one active again).",
    )
    summarized_in = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="summarized",
        help_text="The summary memory this one was rolled up into.",
    )

    objects = MemoryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "memories"
        indexes = [
            models.Index(fields=["user", "created_at"], name="agent_memory_user_created"),
            models.Index(fields=["embedder_name", "embedder_version"], name="agent_memory_embedder"),
        ]

    def __str__(self) -> str:
        return self.text[:80]

    @property
    def is_active(self) -> bool:
        return self.merged_into_id is None and self.summarized_in_id is None


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    HELD = "held", "Held (no mailer)"
    SENT = "sent", "Sent"
    DEAD = "dead", "Dead"


class MessageKind(models.TextChoices):
    NOTIFICATION = "notification", "Notification"
    DIGEST = "digest", "Daily briefing"


class OutboundMessage(models.Model):
    """An email the agent wants sent: an outbox row, so no message is lost while the mailer is down."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agent_messages",
    )
    to = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    kind = models.CharField(max_length=12, choices=MessageKind.choices, default=MessageKind.NOTIFICATION)
    status = models.CharField(max_length=8, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)
    dedupe_key = models.CharField(
        max_length=200, null=True, blank=True, unique=True, help_text="Queued at most once per key."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="agent_msg_due"),
            models.Index(fields=["status", "dead_at"], name="agent_msg_dead"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} -> {self.to} [{self.status}]"
