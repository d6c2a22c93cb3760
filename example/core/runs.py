"""How the example's pages show a job run and the jobs mode, in one place so every page says the same.

A ``process-chat-document`` run *succeeds* when the job body handled the document, even if the document
itself failed (a bad file is not retried: see ``example/documents/processing.py``). Shown as "Succeeded"
next to a document marked "Failed", that reads as a contradiction; so wherever the example shows such a
run it says what happened to the document: **Document failed**, in the warning colour. The admin keeps
the run's own status (the result holds the document's).
"""

from __future__ import annotations

from typing import Any

from fusion_jobs.models import GATE_BROKER, GATE_EAGER, JobRun, RunStatus
from fusion_jobs.workers import unconsumed_warnings

#: The one word for each jobs mode on the pages (``get_jobs_status()["mode"]`` stays "broker"/"eager").
MODE_WORDS = {GATE_BROKER: "broker", GATE_EAGER: "inline"}


def mode_word(status: dict[str, Any]) -> str:
    mode = GATE_BROKER if status.get("enabled") else str(status.get("mode"))
    return MODE_WORDS.get(mode, MODE_WORDS[GATE_EAGER])


def document_failed(run: JobRun) -> bool:
    """A succeeded run whose result says the document it processed failed."""
    # Lists load runs with .only(...): a run whose result was left out is shown by its own status.
    result = None if "result" in run.get_deferred_fields() else run.result
    return run.status == RunStatus.SUCCEEDED and isinstance(result, dict) and result.get("status") == "failed"


def run_state(run: JobRun) -> tuple[str, str]:
    """``(css key, label)`` for a run's status badge."""
    if document_failed(run):
        return "warning", "Document failed"
    return run.status, run.get_status_display()


def no_worker_notice(threshold_seconds: int, *, enabled: bool) -> str:
    """Say so when runs wait on a queue no live worker consumes (the workers registry), once they have
    waited ``threshold_seconds``. Empty when jobs run inline (no worker is needed) or all is well."""
    if not enabled:
        return ""
    return " ".join(unconsumed_warnings(min_wait=threshold_seconds))
