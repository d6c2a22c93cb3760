from django.db import models


class Note(models.Model):
    """What the actors write, so a test sees they ran."""

    key = models.CharField(max_length=100)
    value = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
