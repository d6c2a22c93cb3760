"""Who started which demo run: the sandbox shows a user their own runs only."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SandboxRun(models.Model):
    """One run started from the sandbox (``fusion_jobs.models.JobRun.id``) and the user who started it."""

    run_id = models.UUIDField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_runs")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="sandbox_run_user")]

    def __str__(self) -> str:
        return str(self.run_id)
