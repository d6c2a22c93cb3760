from __future__ import annotations

from datetime import timedelta

import pytest

import fusion_jobs
from fusion_jobs.exceptions import FusionJobsError, TaskDeclarationError, UnknownTaskError
from fusion_jobs.registry import get_task, unregister
from fusion_jobs.utils import parse_duration


@pytest.fixture
def cleanup():
    names: list[str] = []
    yield names
    for name in names:
        unregister(name)


def test_bare_decorator_uses_the_dotted_name(cleanup):
    @fusion_jobs.task
    def plain(x: int) -> int:
        return x * 2

    cleanup.append(plain.name)
    assert plain.name.endswith("test_bare_decorator_uses_the_dotted_name.<locals>.plain")
    assert plain(x=4) == 8  # calling the task calls the function
    assert get_task(plain.name) is plain


def test_options_are_normalised(cleanup):
    @fusion_jobs.task(name="reg-opts", execution_timeout="10m", max_retries=2, queue="reports")
    def opts() -> None: ...

    cleanup.append("reg-opts")
    assert opts.execution_timeout == 600.0
    assert opts.max_retries == 2
    assert opts.effective_queue == "reports"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("600s", 600.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("250ms", 0.25),
        (timedelta(minutes=3), 180.0),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


def test_duplicate_name_names_both_functions(cleanup):
    @fusion_jobs.task(name="reg-dup")
    def first() -> None: ...

    cleanup.append("reg-dup")
    with pytest.raises(TaskDeclarationError, match=r"task 'reg-dup': name already used by .*first"):

        @fusion_jobs.task(name="reg-dup")
        def second() -> None: ...


def test_unknown_option_names_the_task():
    with pytest.raises(TaskDeclarationError, match=r"task 'reg-bad': unknown option\(s\) retries"):

        @fusion_jobs.task(name="reg-bad", retries=3)
        def bad() -> None: ...


@pytest.mark.parametrize("queue", ["9lives", "has space", "", "x.DQ"])
def test_bad_queue_names_the_task(queue):
    with pytest.raises(TaskDeclarationError, match="task 'reg-q': bad queue name"):

        @fusion_jobs.task(name="reg-q", queue=queue)
        def q() -> None: ...


@pytest.mark.parametrize("timeout", ["ten minutes", -5, 0, "5x", True])
def test_bad_timeout_names_the_task(timeout):
    with pytest.raises(TaskDeclarationError, match="task 'reg-t': bad execution_timeout"):

        @fusion_jobs.task(name="reg-t", execution_timeout=timeout)
        def t() -> None: ...


def test_bad_max_retries():
    with pytest.raises(TaskDeclarationError, match="max_retries"):

        @fusion_jobs.task(name="reg-r", max_retries=-1)
        def r() -> None: ...


def test_declaration_errors_share_the_root():
    assert issubclass(TaskDeclarationError, FusionJobsError)
    assert issubclass(UnknownTaskError, FusionJobsError)


def test_autodiscovery_found_the_installed_apps_tasks():
    from fusion_jobs.registry import all_tasks

    assert {"t-record", "ops-hello", "ops-fail"} <= set(all_tasks())  # tests.testapp's and tests.opsapp's


def test_unknown_task_suggests_close_matches():
    with pytest.raises(UnknownTaskError, match=r"did you mean 't-record'"):
        get_task("t-recrod")
    with pytest.raises(UnknownTaskError, match=r"no task named 'zzz' is registered$"):
        get_task("zzz")
