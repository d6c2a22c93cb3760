"""The admin's fragments, without a database: escaped, and saying what the page promises."""

from __future__ import annotations

from datetime import UTC, datetime

from fusion_jobs.admin.display import attempt_log_table, badge, fires_html, pretty_json

XSS = "<script>alert(1)</script>"


def test_a_badge_names_a_known_status_and_escapes_an_unknown_one() -> None:
    assert ">Timed out</span>" in badge("timed_out") and "fj-status-timed_out" in badge("timed_out")
    assert "<script>" not in badge(XSS) and "&lt;script&gt;" in badge(XSS)


def test_the_attempt_log_is_a_table_of_escaped_entries() -> None:
    html = attempt_log_table([{"attempt": 1, "outcome": "failed", "error": XSS, "started_at": None}, "junk"])
    assert html.startswith('<table class="fj-attempts">') and html.count("<tr>") == 2
    assert "<script>" not in html and "&lt;script&gt;" in html and "None" not in html
    assert attempt_log_table([]) == "-" and attempt_log_table(None) == "-"


def test_large_json_is_cut_and_offers_the_download() -> None:
    small, large = pretty_json({"a": XSS}), pretty_json({"a": "x" * 70_000}, "/download")
    assert "<script>" not in small and "fj-truncated" not in small
    assert 'class="fj-truncated"' in large and 'href="/download"' in large


def test_next_fires_show_the_utc_date_only_when_it_differs() -> None:
    sydney_midnight = datetime(2026, 1, 9, 13, 0, tzinfo=UTC)  # 00:00 on the 10th in Sydney
    html = fires_html([sydney_midnight], "Australia/Sydney")
    assert "Sat 2026-01-10 00:00 Australia/Sydney" in html and "(Fri 2026-01-09 13:00 UTC)" in html
    assert "(13:00 UTC)" in fires_html([sydney_midnight], "UTC")
