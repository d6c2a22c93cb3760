"""Uploaded documents and their searchable chunks."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class DocumentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Document(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
    file = models.FileField(upload_to="documents/%Y/%m/")
    title = models.CharField(max_length=255)
    original_name = models.CharField(max_length=255, blank=True, default="")
    content_type = models.CharField(max_length=100, blank=True, default="")
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.PENDING)
    error = models.TextField(blank=True, default="")
    page_count = models.PositiveIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(null=True, blank=True)
    timings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Seconds per stage (load, extract, chunk, embed, store) and in total.",
    )
    embedder_name = models.CharField(max_length=50, blank=True, default="")
    embedder_version = models.CharField(max_length=50, blank=True, default="")
    last_run_id = models.UUIDField(null=True, blank=True, help_text="The JobRun that processed it last.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True, help_text="When it became ready or failed.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "processed_at"], name="doc_status_processed")]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("documents:detail", args=[self.pk])

    @property
    def in_progress(self) -> bool:
        """Pending or processing: the pages keep polling its status."""
        return self.status in (DocumentStatus.PENDING, DocumentStatus.PROCESSING)


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    page_start = models.PositiveIntegerField()
    page_end = models.PositiveIntegerField()
    text = models.TextField()
    embedding = models.BinaryField(null=True, blank=True, help_text="float32 vector, L2-normalised.")
    embedder_name = models.CharField(max_length=50, blank=True, default="")
    embedder_version = models.CharField(max_length=50, blank=True, default="")

    class Meta:
        ordering = ["document", "index"]
        constraints = [models.UniqueConstraint(fields=["document", "index"], name="chunk_unique_index")]
        indexes = [models.Index(fields=["embedder_name", "embedder_version"], name="chunk_embedder")]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index} ({self.page_label})"

    @property
    def page_label(self) -> str:
        """How a citation reads: "p. 12", or "pp. 12-13" (with an en dash) for a chunk across pages."""
        if self.page_start == self.page_end:
            return f"p. {self.page_start}"
        return f"pp. {self.page_start}\u2013{self.page_end}"
