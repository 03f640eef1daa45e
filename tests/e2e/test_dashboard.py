"""The dashboard in a real headless Chromium while the simulator streams through the real stack.

Broker, worker and API run as ``holmes.supervisor.Stack`` children; the simulator injects an AF episode on
bed-002 (and a lead-off on bed-003, a bed-004 that stops sending), so the page must show live tiles, an alert
a clinician acknowledges through the UI, an unscorable and a stale bed. The screenshot is kept under the test's
tmp dir and copied to ``docs/dashboard.png`` for the README.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from holmes.settings import Settings
from holmes.supervisor import Stack
from ingest.broker import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("HOLMES_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN_TOKEN = secrets.token_urlsafe(32)
NURSE, NURSE_PASSWORD = "nurse.ana", secrets.token_urlsafe(12)
SPEED = 5.0


def call(url: str, method: str = "GET", body: object | None = None, token: str | None = ADMIN_TOKEN) -> object:
    """A JSON request to the API under test (loopback only); an HTTP error raises."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path, data_dir: Path) -> Iterator[Stack]:
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, state_dir=tmp_path,
                        waveform_partitions=2, score_partitions=2)
    env = {
        "HOLMES_TOPIC_PREFIX": prefix, "HOLMES_DATABASE_URL": f"sqlite:///{tmp_path / 'holmes.db'}",
        "HOLMES_WAVEFORM_PARTITIONS": "2", "HOLMES_SCORE_PARTITIONS": "2", "HOLMES_DATA_DIR": str(data_dir),
        "HOLMES_ADMIN_TOKEN": ADMIN_TOKEN, "HOLMES_ALERT_RAISE_WINDOWS": "2", "HOLMES_ALERT_CLEAR_WINDOWS": "3",
    }
    with Stack(settings, tmp_path, api_port=free_port(), env=env) as s:
        yield s.start()


def test_live_tiles_alert_acknowledged_in_the_browser(stack: Stack, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: `make test` installs Debian's chromium")
    base = f"http://127.0.0.1:{stack.api_port}"
    try:
        call(f"{base}/api/auth/me")
    except urllib.error.HTTPError as exc:
        pytest.fail(f"`holmes api` ignored HOLMES_ADMIN_TOKEN (ApiSettings must pass admin_token to ApiConfig): {exc}")
    call(f"{base}/api/users", "POST", {"username": NURSE, "role": "clinician", "password": NURSE_PASSWORD})
    stack.spawn("simulator", [
        "simulate", "--beds", "4", "--duration", "300", "--speed", str(SPEED), "--chunk-s", "1", "--quiet",
        "--event", "af@bed-002:15+120", "--event", "lead-off@bed-003:0+300", "--event", "drop@bed-004:25+275",
    ])

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base)

            # Tiles appear and update live, without a reload.
            tile = page.locator(".tile[data-bed='bed-001']")
            tile.wait_for(timeout=60_000)
            first = tile.get_attribute("data-window-end")
            page.wait_for_function(
                "w => document.querySelector(\".tile[data-bed='bed-001']\").dataset.windowEnd !== w", arg=first,
                timeout=30_000,
            )
            assert page.locator(".tile").count() == 4
            page.wait_for_selector(".tile[data-bed='bed-003'][data-status='unscorable']", timeout=30_000)
            assert "flat-line" in page.locator(".tile[data-bed='bed-003'] .reason").inner_text()

            # The AF episode raises an alert on bed-002: banner and tile flag, pushed over the WebSocket.
            flag = page.locator(".tile[data-bed='bed-002'] .alert-flag.unacked")
            flag.wait_for(timeout=90_000)
            assert "bed-002" in page.locator("#alert-banner").inner_text()

            # A clinician signs in on the page and acknowledges it there.
            page.click("#sign-in")
            page.fill("#sign-in-dialog input[name=username]", NURSE)
            page.fill("#sign-in-dialog input[name=password]", NURSE_PASSWORD)
            page.click("#sign-in-dialog button[type=submit]")
            page.wait_for_selector(f"#user .who:text('{NURSE}')", timeout=10_000)
            flag.locator("button.ack").click()
            acked = page.locator(".tile[data-bed='bed-002'] .alert-flag.acked")
            acked.wait_for(timeout=10_000)
            assert NURSE in acked.inner_text()
            page.wait_for_selector(".tile[data-bed='bed-004'][data-status='stale']", timeout=30_000)
            page.wait_for_timeout(1_500)  # one more live update, for the picture
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot))
            assert errors == []
        finally:
            browser.close()

    # The acknowledgement is stored with who and when, and audited.
    alerts = call(f"{base}/api/alerts?bed_id=bed-002")
    assert isinstance(alerts, dict)
    (alert,) = [a for a in alerts["items"] if a["acknowledged_by"] == NURSE]
    assert alert["acknowledged_at_s"] >= alert["raised_at_s"]
    detail = call(f"{base}/api/alerts/{alert['id']}")
    assert isinstance(detail, dict)
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds[0] == "raised" and kinds.count("acknowledged") == 1
    audit = call(f"{base}/api/audit?action=alert.acknowledge")
    assert isinstance(audit, dict)
    assert [(a["actor"], a["actor_role"], a["target"]) for a in audit["items"]] == [
        (NURSE, "clinician", f"alert:{alert['id']}")
    ]
    assert shot.stat().st_size > 20_000
    (REPO / "docs").mkdir(exist_ok=True)
    shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
