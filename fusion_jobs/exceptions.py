"""One exception root, so callers can catch everything fusion_jobs raises with one clause."""

from __future__ import annotations


class FusionJobsError(Exception):
    """Root of every error fusion_jobs raises."""


class TaskDeclarationError(FusionJobsError, ValueError):
    """A ``@task`` declaration is invalid (duplicate name, unknown option, bad queue or timeout)."""


class UnknownTaskError(FusionJobsError, LookupError):
    """No task is registered under the given name."""


class PayloadError(FusionJobsError, ValueError):
    """Task arguments are not JSON-serialisable, or their JSON is larger than the limit."""


class PublishError(FusionJobsError):
    """The broker did not accept a message (down, blocked, or no confirm in time)."""


class CronError(FusionJobsError, ValueError):
    """A cron declaration is invalid (bad expression, timezone or policy)."""


class TaskArgumentsError(FusionJobsError, TypeError):
    """A message's arguments do not fit the task's signature; retrying cannot help."""
