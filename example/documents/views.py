"""Pages of the documents demo: list + upload, a document, its live status, search, reprocess.

Reading is open (it is a demo); uploading and reprocessing need a login, uploads are rate-limited per
user (``DOCUMENTS_UPLOAD_RATE_LIMIT``), and only a document's owner or staff may reprocess it. An
oversized upload is refused before its body is read (``uploads.py``). Everything that starts processing
does so through :func:`~example.documents.jobs.kick_processing` *after* the transaction that wrote
the document has committed, so a worker can always read what it is handed.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from example.core.ratelimit import Rate, hit
from example.core.runs import no_worker_notice
from fusion_jobs import get_jobs_status
from fusion_jobs.models import JobRun, RunMode, RunStatus
from fusion_jobs.tasks import sweep_stuck

from . import conf, retrieval
from . import status as doc_status
from .forms import UploadForm
from .jobs import INLINE, QUEUED, kick_processing, mark_pending
from .models import Chunk, Document, DocumentStatus
from .uploads import REFUSED

logger = logging.getLogger(__name__)

LIST_LIMIT = 100
PREVIEW_CHUNKS = 5


def _jobs_mode() -> dict[str, object]:
    """What happens to an upload, in the words the pages use."""
    jobs = get_jobs_status()
    return {
        "enabled": jobs["enabled"],
        "label": QUEUED if jobs["enabled"] else INLINE,
        "reason": jobs["reason"],
        # Queued uploads that no worker picks up would say "Waiting for a worker" forever: say why.
        "no_worker": no_worker_notice(conf.no_worker_after_seconds(), enabled=bool(jobs["enabled"])),
    }


def _kick_after_commit(request: HttpRequest, document: Document, done: str) -> None:
    """Start processing once the current transaction commits, then tell the user how it went."""

    def kick() -> None:
        try:
            mode = kick_processing(document.pk)
        except Exception:
            logger.exception("document %s: could not start processing", document.pk)
            messages.error(
                request, f"“{document.title}” was saved, but processing could not start: try Reprocess."
            )
            return
        messages.success(request, f"“{document.title}” {done}: {mode}.")

    transaction.on_commit(kick)


@require_http_methods(["GET", "POST"])
def document_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    form = UploadForm(request.POST or None, request.FILES or None)
    status, refusal = 200, ""
    if request.method == "POST":
        refused = request.META.get(REFUSED)
        wait = 0 if refused else hit("upload", str(request.user.pk), Rate.parse(conf.upload_rate_limit()))
        if refused:
            form, status, refusal = UploadForm(), 413, refused
        elif wait:
            form, status, refusal = UploadForm(), 429, f"Too many uploads: try again in {wait} s."
        elif form.is_valid():
            try:
                with transaction.atomic():
                    document = form.save(owner=request.user)
                    _kick_after_commit(request, document, "uploaded")
            except forms.ValidationError as exc:
                form.add_error("file", exc)
            else:
                return redirect(document)
    documents = list(Document.objects.select_related("owner").order_by("-created_at")[:LIST_LIMIT])
    runs = doc_status.runs_for(documents)
    rows = [_row(doc, runs.get(str(doc.last_run_id))) for doc in documents]
    return render(
        request,
        "documents/list.html",
        {
            "form": form,
            "refusal": refusal,
            "rows": rows,
            "jobs_mode": _jobs_mode(),
            "total": Document.objects.count(),
            "limit": LIST_LIMIT,
        },
        status=status,
    )


def _row(document: Document, run: JobRun | None) -> dict[str, object]:
    return {
        "doc": document,
        "active": doc_status.is_active(document, run),
        "progress": doc_status.progress(document, run),
        "stalled": doc_status.stalled(document, run),
    }


@require_GET
def document_detail(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_object_or_404(Document.objects.select_related("owner"), pk=pk)
    run = doc_status.run_of(document)
    preview = Chunk.objects.filter(document=document).only(
        "index", "page_start", "page_end", "text", "document_id"
    )[:PREVIEW_CHUNKS]
    return render(
        request,
        "documents/detail.html",
        {
            "doc": document,
            "run": run,
            "active": doc_status.is_active(document, run),
            "progress": doc_status.progress(document, run),
            "stalled": doc_status.stalled(document, run),
            "stages": doc_status.stage_rows(document),
            "total_seconds": (document.timings or {}).get("total"),
            "preview": preview,
            "jobs_mode": _jobs_mode(),
        },
    )


@require_GET
def document_status(request: HttpRequest, pk: int) -> JsonResponse:
    document = get_object_or_404(Document, pk=pk)
    response = JsonResponse(doc_status.payload(document, doc_status.run_of(document)))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def reprocess(request: HttpRequest, pk: int) -> HttpResponse:
    """Process the document again (e.g. after changing the embedder); refused while a run is on it."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    _sweep_if_held_by_an_inline_run(request, pk)
    with transaction.atomic():
        document = get_object_or_404(Document.objects.select_for_update(), pk=pk)
        if document.owner_id != request.user.pk and not request.user.is_staff:
            raise PermissionDenied("only the document's owner (or staff) may reprocess it")
        if hit("upload", str(request.user.pk), Rate.parse(conf.upload_rate_limit())):
            messages.error(request, "Too many uploads and reprocessing requests: try again later.")
            return redirect(document)
        if doc_status.is_active(document, doc_status.run_of(document)):
            messages.info(request, f"“{document.title}” is already being processed.")
            return redirect(document)
        mark_pending(document)
        _kick_after_commit(request, document, "is being reprocessed")
    return redirect(document)


def _sweep_if_held_by_an_inline_run(request: HttpRequest, pk: int) -> None:
    """Run the stuck-run sweep now when the document's run is an inline one still ``running``.

    With jobs inline (the example's default) ``runcrons`` fires nothing, so ``fusion-jobs-sweep-stuck``
    never runs by itself: a web process killed mid-processing would leave the document "processing" and
    Reprocess refusing it forever. The sweep applies its own rule (silent past the run's timeout plus
    grace), so a live run is left alone; its receiver marks the document failed, and Reprocess goes on.
    """
    if get_jobs_status()["enabled"]:
        return
    document = Document.objects.filter(pk=pk).only("last_run_id", "owner_id").first()
    if document is None or (document.owner_id != request.user.pk and not request.user.is_staff):
        return
    run = doc_status.run_of(document)
    if run is not None and run.status == RunStatus.RUNNING and run.mode == RunMode.INLINE:
        sweep_stuck()


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[: retrieval.MAX_QUERY_CHARS]
    results = retrieval.search_chunks(query) if query else None
    return render(
        request,
        "documents/search.html",
        {
            "query": query,
            "results": results,
            "ready_count": Document.objects.filter(status=DocumentStatus.READY).count(),
        },
    )
