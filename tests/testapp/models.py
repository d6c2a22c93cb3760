from django.db import models


class Marker(models.Model):
    """A side effect a task leaves, so tests can see that (and how often) it ran."""

    label = models.CharField(max_length=200, db_index=True)
    value = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.label
