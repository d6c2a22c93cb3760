"""docs/grafana-dashboard.json is built on the names fusion-jobs exposes, and the README documents them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fusion_jobs import metrics
from fusion_jobs.views import database_metrics

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bfusion_jobs_[a-z_]+")


@pytest.fixture
def exposed(db) -> set[str]:
    names = metrics.exposed_names()
    names |= {line.split()[2] for line in database_metrics().splitlines() if line.startswith("# TYPE ")}
    return names


def test_every_metric_the_dashboard_queries_exists(exposed):
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in NAME.findall(target["expr"])
    }
    assert queried, "the dashboard queries no fusion_jobs metric"
    assert queried <= exposed, f"unknown to fusion-jobs: {sorted(queried - exposed)}"
    assert {"fusion_jobs_run_queue_wait_seconds_bucket", "fusion_jobs_runs_waiting"} <= queried


def test_the_readme_names_every_metric(exposed):
    readme = (ROOT / "README.md").read_text()
    documented = set(NAME.findall(readme))
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exposed}
    missing = sorted(name for name in families if not any(doc.startswith(name) for doc in documented))
    assert not missing, f"README does not document {missing}"
