"""The managers' page in a real headless Chromium (Debian's package, driven by Playwright; nothing
downloaded): log in, filter to negative, open a contact, the audio plays the clip, the red
press's marker sits at its offset, tick a reason and find it in the reasons report. A screenshot
of every page is saved under the test's temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.cloud_sink.api.conftest import PASSWORD, World

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: apt-get install chromium")
    with sync_playwright() as p:
        running = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield running
        running.close()


@pytest.mark.parametrize("filled", ["sqlite"], indirect=True)
def test_a_manager_hears_a_red_contact_and_ticks_a_reason(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(locale="en-US")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page.goto(f"{world.url}/contacts")
    assert "/login" in page.url
    page.fill("input[name=username]", "maria")
    page.fill("input[name=password]", PASSWORD)
    page.screenshot(path=str(shots / "login.png"))
    page.click("#login")
    page.wait_for_url("**/contacts")
    page.check("input[name=tag][value=negative]")
    page.click("#apply")
    page.wait_for_url("**tag=negative**")
    rows = page.locator("tr.contact")
    assert rows.count() > 0
    for i in range(rows.count()):
        assert "negative" in rows.nth(i).inner_text()
    page.screenshot(path=str(shots / "contacts.png"), full_page=True)
    rows.first.locator("a").click()
    page.wait_for_selector("#audio")
    device, contact_id = page.url.split("/contacts/")[1].split("?")[0].split("/")
    with world.client("admin") as api:
        detail = api.get(f"/api/v1/contacts/{device}/{contact_id}").json()
    clip = detail["clip"]
    # the audio element plays the clip: its duration is the clip's
    page.wait_for_function("document.getElementById('audio').readyState >= 1", timeout=30_000)
    duration = page.evaluate("document.getElementById('audio').duration")
    assert duration == pytest.approx(clip["duration_s"], abs=0.05)
    page.evaluate("document.getElementById('audio').play()")
    page.wait_for_function("document.getElementById('audio').currentTime > 0", timeout=30_000)
    # the red press's marker sits at the press's offset into the clip
    red = next(e for e in detail["events"] if e["kind"] == "red")
    offset = (
        datetime.fromisoformat(red["at"]) - datetime.fromisoformat(clip["start"])
    ).total_seconds()
    marker = page.locator(".marker[data-kind=red]").first
    assert float(marker.get_attribute("data-offset") or "nan") == pytest.approx(offset, abs=0.002)
    timeline = page.locator("#timeline").bounding_box()
    box = marker.bounding_box()
    assert timeline is not None
    assert box is not None
    share = (box["x"] - timeline["x"]) / timeline["width"]
    assert share == pytest.approx(offset / duration, abs=0.01)
    page.wait_for_function("document.getElementById('wave').dataset.drawn === '1'")
    page.screenshot(path=str(shots / "contact.png"), full_page=True)
    # tick a reason, save, and see it in the reasons report
    page.check("input[name=reason][value=equipment]")
    page.click("#save")
    page.wait_for_load_state()
    assert "saved=1" in page.url, page.content()[:2000]
    assert page.is_checked("input[name=reason][value=equipment]")
    page.goto(f"{world.url}/reasons")
    row = page.locator("#reasons-report tr[data-reason=equipment]")
    assert row.count() == 1
    assert int(row.locator("td.n").inner_text()) >= 1
    page.screenshot(path=str(shots / "reasons.png"), full_page=True)
    for name in ("figures", "alerts", "devices"):
        page.goto(f"{world.url}/{name}")
        assert page.locator("table.list").count() == 1
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    # Russian on demand
    page.goto(f"{world.url}/figures?lang=ru")
    assert "Показатели" in page.content()
    assert len(list(shots.glob("*.png"))) == 7
