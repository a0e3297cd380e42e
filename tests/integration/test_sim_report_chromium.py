"""``report.html`` rendered by a real browser: Debian's headless Chromium, with its own
profile and no network, loads the report; every plot's SVG is laid out with a real size
and its screenshot is not blank (several colours drawn, not just the background).

Chromium comes from Debian (``apt-get install chromium``); ``make test`` installs it when
it is missing under ``CI=true`` (the ``chromium`` make target). Elsewhere the test skips
with the reason when there is no ``chromium``; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from matplotlib import image
from websockets.sync.client import connect

from allotment.sim import runner
from allotment.sim.report import PLOTS
from allotment.sim.scenario import Policy, parse_scenario
from tests.functional.sim.conftest import scenario_data

pytestmark = pytest.mark.integration


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """Just enough of the DevTools protocol: one page, commands and their replies."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == mine:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("method") == event:
                return
        raise AssertionError(f"no {event} within 60 s")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = shutil.which("chromium")
    if binary is None:
        _unavailable(
            "no chromium on PATH (Debian: apt-get install chromium; "
            "make test installs it under CI=true)"
        )
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [
            str(binary),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            # No network: every host name fails to resolve, any proxy use goes nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit {process.poll()})")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with httpx.Client(trust_env=False, timeout=30) as client:
            targets = client.get(f"http://127.0.0.1:{port}/json/list").json()
        page = next(t for t in targets if t.get("type") == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024) as ws:
            yield Browser(ws)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compare report (two policies) from a run with rejections, moves and groups."""
    out = tmp_path_factory.mktemp("sim-report")
    scenario = parse_scenario(scenario_data(requests=80)).with_policies(
        [
            Policy(name="spread"),
            Policy(name="pack", filter_scheduler={"ram_weight_multiplier": -1.0}),
        ]
    )
    runner.execute([scenario], out)
    return out / "report.html"


def test_every_plot_is_drawn(browser: Browser, report: Path) -> None:
    browser.call("Page.enable")
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=1400,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.call("Page.navigate", url=report.as_uri())
    browser.wait_for("Page.loadEventFired")
    probe = """
      JSON.stringify([...document.querySelectorAll('section.plot')].map(s => {
        const svg = s.querySelector('svg');
        if (!svg) return {plot: s.dataset.plot, svg: false};
        const r = svg.getBoundingClientRect();
        return {plot: s.dataset.plot, svg: true, x: r.left + scrollX, y: r.top + scrollY,
                width: r.width, height: r.height,
                marks: svg.querySelectorAll('path, line, polyline, rect, use').length,
                text: svg.textContent};
      }))
    """
    found = json.loads(
        browser.call("Runtime.evaluate", expression=probe, returnByValue=True)["result"]["value"]
    )
    assert [f["plot"] for f in found] == [key for key, _ in PLOTS]
    for plot in found:
        assert plot["svg"], f"{plot['plot']}: no SVG"
        assert plot["width"] > 200 and plot["height"] > 120, plot
        assert plot["marks"] > 20, f"{plot['plot']}: only {plot['marks']} marks"
    assert "spread" in found[0]["text"] and "pack" in found[0]["text"]
    for plot in found:
        shot = browser.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={
                "x": plot["x"],
                "y": plot["y"],
                "width": plot["width"],
                "height": plot["height"],
                "scale": 1,
            },
        )
        pixels = image.imread(io.BytesIO(base64.b64decode(shot["data"])), format="png")
        rgb = pixels[..., :3]
        ink = (rgb < 0.95).any(axis=-1).mean()
        colours = len(np.unique((rgb * 15).round().reshape(-1, 3), axis=0))
        assert ink > 0.01, f"{plot['plot']}: blank ({ink:.3%} drawn)"
        assert colours >= 4, f"{plot['plot']}: {colours} colours, nothing plotted"
