"""The admin console in headless Chromium: log in, open every page, unload and load a
model, chat, embed, watch a chart gain points, log out. Screenshots of every step are kept
in build/test-artifacts/admin/."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from llmos.web.admin.pages import PAGES, Page

from .browser import Browser, missing, open_browser
from .live import REPO, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

SHOTS = REPO / "build" / "test-artifacts" / "admin"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    why = missing()
    if why:
        pytest.skip(why)
    server = LiveServer(tmp_path_factory.mktemp("live")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(live: LiveServer) -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open_browser(live.admin_url, SHOTS) as b:
        yield b


def _login(b: Browser, password: str) -> None:
    b.find("#password").clear()
    b.find("#password").send_keys(password)
    b.find("#login").click()


def _content_ready(b: Browser) -> bool:
    return bool(b.find("#content").text.strip()) and not b.find_all("#error")


def test_login(browser: Browser, live: LiveServer) -> None:
    b = browser
    b.open("/models")
    b.wait(lambda: b.path.startswith("/login"), message="the redirect to the login page")
    b.screenshot("01-login")
    _login(b, "not the password")
    b.wait(lambda: "Wrong password" in b.find(".form-error").text, message="the error")
    assert all("401" in e for e in b.console_errors())  # the refused login, and only it
    _login(b, live.password)
    b.wait(lambda: b.path == "/models", message="landing on the page asked for")
    cookie = b.driver.get_cookie("llmos_admin")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


@pytest.mark.parametrize("page", PAGES, ids=[p.slug for p in PAGES])
def test_every_page_opens(browser: Browser, page: Page) -> None:
    b = browser
    slug, path = page.slug, page.path
    b.open(path)
    b.wait(lambda: _content_ready(b), message=f"the {slug} page's content")
    assert b.attr("body", "data-page") == slug
    assert "active" in b.attr(f'[data-nav="{slug}"]', "class")
    b.wait(lambda: b.find("#health-pill").text in ("degraded", "ready"),
           message="the health pill")
    if slug == "overview":
        b.wait(lambda: "Boot events" in b.find("#content").text, message="boot events")
        assert "TPM measurements" in b.find("#content").text
    if slug == "accelerators":
        b.wait(lambda: "0000:03:00.0" in b.find("#content").text, message="the emulated GPU")
    if slug == "memory":
        b.wait(lambda: "scaler" in b.find("#content").text, message="per-model memory")
    if slug == "models":
        b.wait(lambda: b.find('[data-model-row="foreign"] [data-state]').text == "FAILED",
               message="the failed model")
        assert "fleet key" in b.find("tr.reason").text
    if slug == "charts":
        b.wait(lambda: b.number("#chart-rps", "data-points") > 2,
               message="chart points")
    if slug == "logs":
        b.wait(lambda: b.find_all("#log-lines .line"), message="log lines")
    if slug == "update":
        b.wait(lambda: "running version" in b.find("#content").text.lower(),
               message="the versions")
    b.screenshot(f"page-{slug}")
    assert b.console_errors() == []


def test_an_os_update_request(browser: Browser, live: LiveServer) -> None:
    b = browser
    b.open("/update")
    b.wait(lambda: b.find_all("#os-source"), message="the update form")
    b.find("#os-source").send_keys("ftp://example/")
    b.find("#os-update").click()
    b.wait(lambda: b.find("#os-message").text.startswith("Refused:"), message="the refusal")
    assert "http" in b.find("#os-message").text
    b.find("#os-source").clear()
    b.find("#os-source").send_keys("http://10.0.2.2:8080/updates")
    b.find("#os-update").click()
    b.wait(lambda: "requested" in b.find("#os-message").text, message="the request")
    request = live.tmp / "os-update" / "request"
    assert json.loads(request.read_text()) == {"action": "update",
                                               "source": "http://10.0.2.2:8080/updates/"}
    b.wait(lambda: "waiting for the update agent" in b.find("#content").text,
           message="the pending request")
    b.screenshot("os-update-requested")
    assert all("400" in e for e in b.console_errors())  # the refused source, and only it


def test_unload_and_load_a_model(browser: Browser, live: LiveServer) -> None:
    b = browser
    b.open("/models")
    state = '[data-model-row="scaler"] [data-state]'
    b.wait(lambda: b.find(state).text == "READY", message="scaler READY")
    b.find('[data-action="unload"][data-model="scaler"]').click()
    b.wait(lambda: b.find(state).text == "UNLOADED", message="scaler UNLOADED")
    assert live.supervisor is not None
    assert live.supervisor.registry.status("scaler").state.value == "UNLOADED"
    b.screenshot("models-unloaded")
    b.find('[data-action="load"][data-model="scaler"]').click()
    b.wait(lambda: b.find(state).text == "READY", message="scaler READY again")
    assert live.supervisor.registry.status("scaler").state.value == "READY"


def test_chat_in_the_playground(browser: Browser, live: LiveServer) -> None:
    if live.llm is None:
        pytest.skip("no LLM in this test server: the demo packs are not built "
                    "(make demo-packs); the chat step needs the demo LLM")
    b = browser
    b.open("/playground")
    b.wait(lambda: b.find_all("#chat-input"), message="the chat box")
    b.find("#chat-input").send_keys("What is the capital of France? Answer in one word.")
    b.find("#chat-send").click()
    bubble = b.wait(lambda: [x for x in b.find_all('[data-role="assistant"]')
                             if x.get_attribute("data-done")], timeout_s=300,
                    message="the streamed answer")[-1]
    assert bubble.text.strip() and not bubble.text.startswith("Error")
    b.screenshot("playground-chat")


def test_embed_a_sentence(browser: Browser, live: LiveServer) -> None:
    assert live.embedder is not None, "the live server always has an embedding model"
    b = browser
    b.open("/playground")
    b.wait(lambda: b.find_all("#embed-input"), message="the embed box")
    b.find("#embed-input").clear()
    b.find("#embed-input").send_keys("The appliance keeps its weights sealed.")
    b.find("#embed-send").click()
    dims = b.wait(lambda: b.attr("#embed-result", "data-dims"), timeout_s=60,
                  message="the embedding")
    assert int(dims) >= 16
    b.find("#embed-input").clear()
    b.find("#embed-input").send_keys("Model weights stay encrypted on this machine.")
    b.find("#embed-send").click()
    similarity = b.wait(lambda: b.find("#embed-similarity").text, message="the similarity")
    assert -1.0 <= float(similarity) <= 1.0
    b.screenshot("playground-embed")
    assert b.console_errors() == []


def _infer(live: LiveServer, n: int) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                   "data": [1, 2, 3, 4]}]}).encode()
    for _ in range(n):
        req = urllib.request.Request(live.api_url + "/v2/models/scaler/infer", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


def test_charts_gain_points_while_watched(browser: Browser, live: LiveServer) -> None:
    b = browser
    b.open("/charts")
    def points() -> float:
        return b.number("#chart-rps", "data-points")

    before = b.wait(points, message="the first points")
    _infer(live, 150)
    b.wait(lambda: points() >= before + 2, timeout_s=15, message="new points")
    b.wait(lambda: b.number("#chart-rps", "data-peak") > 0, timeout_s=15,
           message="the traffic on the requests/s chart")
    b.wait(lambda: b.number("#chart-latency", "data-peak") > 0,
           timeout_s=15, message="latency points")
    b.screenshot("charts-live")


def test_logout(browser: Browser) -> None:
    b = browser
    b.open("/")
    b.wait(lambda: b.find_all("#logout"), message="the logout button")
    b.find("#logout").click()
    b.wait(lambda: b.path.startswith("/login"), message="back at the login page")
    b.open("/memory")
    b.wait(lambda: b.path.startswith("/login"), message="pages need a login again")


def test_screenshots_were_kept() -> None:
    shots = sorted(p.name for p in SHOTS.glob("*.png")) if SHOTS.is_dir() else []
    if not shots:
        pytest.skip("the browser tests did not run")
    assert {"01-login.png", "page-overview.png", "charts-live.png"} <= set(shots)
    assert all((SHOTS / s).stat().st_size > 5000 for s in shots)
