"""Shared test policy: in CI (CI=true) a live test that skips is a failure, since CI runs where it must pass; and
property tests have no time limit per example, since a loaded machine (CI's, with lab kernels building beside it)
makes any limit a flake rather than a finding."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    needs_host = item.get_closest_marker("live") or item.get_closest_marker("lab")
    expected_failure = hasattr(report, "wasxfail")  # an xfail is reported as skipped: it is no missing host
    if report.skipped and needs_host and not expected_failure and os.environ.get("CI") == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"live test skipped in CI, where the kernel, bcc and root must be present: {reason}"
