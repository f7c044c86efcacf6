"""The web app keeps answering while an outcome report is being computed.

The dashboard's handlers are plain ``def`` functions, which FastAPI runs in its thread
pool; a report that takes long (a million courses) must not hold the event loop or the
other requests. The report is held mid-computation here until another request has been
answered.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from prolo.clinic.models import Clinic
from prolo.outcomes import service
from tests.outcomes.test_pages import _login, clinic  # noqa: F401  (fixture)


def test_other_requests_are_served_while_a_report_runs(
    client: TestClient,
    session: Session,
    clinic: Clinic,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _login(client, session, clinic, "clinician")
    started, release = threading.Event(), threading.Event()
    build = service.build_report

    def slow_build(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started.set()
        assert release.wait(30), "the other requests were not served in 30 s"
        return build(*args, **kwargs)

    monkeypatch.setattr(service, "build_report", slow_build)
    result: dict[str, Any] = {}
    report = threading.Thread(target=lambda: result.update(page=client.get("/outcomes")))
    report.start()
    try:
        assert started.wait(30), "the report never started"
        # The report is now in the middle of its computation, in a worker thread.
        assert client.get("/health").status_code == 200
        assert client.get("/static/app.css").status_code == 200
        assert report.is_alive()  # still held: the answers did not wait for it
    finally:
        release.set()
        report.join(30)
    assert result["page"].status_code == 200
    assert "Outcomes" in result["page"].text
