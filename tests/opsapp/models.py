from django.db import models


class Gadget(models.Model):
    """Its ``colour`` column arrives in migration 0002: the reload-after-migrate test applies it live."""

    name = models.CharField(max_length=100)
    colour = models.CharField(max_length=20, default="")

    def __str__(self) -> str:
        return self.name
