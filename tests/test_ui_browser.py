"""The dashboard page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Skipped only when Chromium or Playwright is missing on a developer machine; with CI=true a
missing browser fails the run. Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.loader import load_topology_file
from topology import Bolt, Spout, TopologyBuilder
from topology.local import LocalCluster
from ui.local import serve_local
from worker.executor import BoltExecutor, SpoutExecutor

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
SECRET = "browser-test-secret"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _require_browser() -> Any:
    """Playwright's sync API, or skip (fail under CI) with the reason."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    problem = None
    if not os.path.exists(CHROMIUM):
        problem = f"{CHROMIUM} is missing (run deploy/install-chromium.sh)"
    try:
        from playwright import sync_api
    except ImportError:
        problem = problem or "the playwright package is missing (pip install -e '.[test]')"
    if problem:
        if in_ci:
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)
    return sync_api


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[str, str, LocalCluster]]:
    topology = load_topology_file(str(ROOT / "examples" / "word_count.py"))
    with LocalCluster({"cluster.secret": SECRET}) as cluster:
        tid = cluster.submit(topology)
        server, url = serve_local(cluster, sample_secs=0.5)
        try:
            cluster.wait_running("word-count")
            yield url, tid, cluster
        finally:
            server.close()


@pytest.fixture(scope="module")
def dashboard(local: tuple[str, str, LocalCluster]) -> tuple[str, str]:
    return local[0], local[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = _require_browser()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _number(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or 0)


def test_a_wrong_secret_is_refused_and_forgotten(dashboard: tuple[str, str],
                                                browser: Any) -> None:
    url, tid = dashboard
    page = browser.new_page()
    page.set_default_timeout(15000)
    page.goto(f"{url}#/topology/{tid}")
    page.wait_for_selector("#btn-deactivate:not([disabled])")
    page.click("#btn-deactivate")
    page.fill("#secret-input", "not-the-secret")
    page.click("#secret-ok")
    toast = page.wait_for_selector(".toast.bad")
    assert "wrong cluster secret" in toast.inner_text()
    assert page.evaluate("sessionStorage.getItem('squall.secret')") is None
    with urllib.request.urlopen(f"{url}api/v1/topology/{tid}") as r:
        assert json.load(r)["status"] == "ACTIVE"
    page.close()


def test_supervisors_windows_tracebacks_and_metrics_show(
        local: tuple[str, str, LocalCluster], browser: Any) -> None:
    url, tid, cluster = local
    trace = ("Traceback (most recent call last):\n  File \"count.py\", line 9, in process\n"
             "ValueError: bad word 'x'\n")
    cluster.state.report_error(tid, "count", {
        "component": "count", "task": 7, "time": time.time(), "host": "127.0.0.1",
        "port": 6700, "error": "ValueError: bad word 'x'", "traceback": trace})
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.set_default_timeout(15000)
    page.goto(url)
    page.wait_for_selector("tr[data-supervisor] .badge.alive")
    page.goto(f"{url}#/topology/{tid}")
    page.wait_for_selector('tr[data-component="split"]')
    assert [b.inner_text() for b in page.locator(".toggle button").all()] == \
        ["10 min", "3 h", "1 day", "All time"]
    page.click('.toggle button[data-window="10800"]')
    page.wait_for_selector('.toggle button.on[data-window="10800"]')
    page.wait_for_selector("details.traceback summary")  # recent errors: the line, folded
    page.goto(f"{url}#/topology/{tid}/component/count")
    page.wait_for_selector("#crumbs span:text-is('count')")  # the component's view is up
    errors = page.locator("#view")
    summary = errors.locator("details.traceback summary").first
    assert summary.inner_text().endswith("ValueError: bad word 'x'")
    assert not errors.locator("details.traceback pre").first.is_visible()
    summary.click()
    assert errors.locator("details.traceback pre").first.inner_text().rstrip("\n") == \
        trace.rstrip("\n")
    assert "registers no metrics" in page.locator("section.panel", has_text="Metrics").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-component.png"), full_page=True)
    assert not problems, problems
    page.close()


def test_dashboard_shows_live_topology_and_kill_works(dashboard: tuple[str, str],
                                                      browser: Any) -> None:
    url, tid = dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.set_default_timeout(15000)

    # the cluster page lists the topology, the supervisor and its slots
    page.goto(url)
    link = page.locator("a.topology-link", has_text="word-count")
    link.wait_for()
    assert page.locator(".slot.used").count() == 2
    page.screenshot(path=str(ARTIFACTS / "ui-cluster.png"), full_page=True)

    # the topology page: components with numbers that change, graph, chart
    link.click()
    page.wait_for_selector('tr[data-component="split"]')
    assert page.locator("h1").first.inner_text().startswith("word-count")
    for component in ("sentences", "split", "count"):
        assert page.locator(f'tr[data-component="{component}"]').count() == 1
    emitted_cell = 'tr[data-component="sentences"] td:nth-child(4)'
    page.wait_for_function(
        "sel => parseInt(document.querySelector(sel).textContent.replace(/,/g, '')) > 0",
        arg=emitted_cell)
    first = _number(page.locator(emitted_cell).inner_text())
    page.wait_for_function(
        "([sel, n]) => parseInt(document.querySelector(sel).textContent.replace(/,/g, '')) > n",
        arg=[emitted_cell, first])
    assert _number(page.locator(emitted_cell).inner_text()) > first
    assert page.locator("svg.graph rect.node").count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('svg.graph .edge-label')]"
        ".every(t => t.textContent !== '0/s')")
    page.wait_for_selector("svg.chart polyline.series.executed")
    page.screenshot(path=str(ARTIFACTS / "ui-topology.png"), full_page=True)
    assert not problems, problems

    # kill: confirm with no wait, give the secret once, the topology goes away
    page.click("#btn-kill")
    page.fill("#field-wait", "0")
    page.click("#action-ok")
    page.fill("#secret-input", SECRET)
    page.click("#secret-ok")
    page.wait_for_selector(".toast.ok")
    page.wait_for_selector(".gone")
    with urllib.request.urlopen(url + "api/v1/topology/summary") as r:
        assert json.load(r)["topologies"] == []
    page.screenshot(path=str(ARTIFACTS / "ui-killed.png"), full_page=True)
    assert not problems, problems
    page.close()


# --- what windowed, stateful and replayable components report, from real workers ---------------

CHECKPOINT = {"txid": 7, "time": 1_700_000_000.0, "duration": 0.015, "failed": 0}


class ReplayableExecutor(SpoutExecutor):
    def extra_snapshot(self) -> dict[str, Any]:
        return {"source": {"kind": "file", "name": f"/data/part-{self.task}.log",
                           "offset": 1234, "behind": 56}}


class WindowedExecutor(BoltExecutor):
    def extra_snapshot(self) -> dict[str, Any]:
        return {"windowing": {"spec": "tumbling 5 s (event time)",
                              "watermark": 1_700_000_000.0 + self.task, "late": 2},
                "checkpoint": CHECKPOINT}


class Lines(Spout):
    outputs = ["line"]
    executor_factory = "test_ui_browser:ReplayableExecutor"

    def next_tuple(self) -> None:
        self.emit(["a line"])


class Windows(Bolt):
    executor_factory = "test_ui_browser:WindowedExecutor"

    def process(self, tup: Any) -> None:
        pass


def test_windows_checkpoints_sources_and_log_levels_show(browser: Any) -> None:
    b = TopologyBuilder("progress")
    b.set_spout("lines", Lines())
    b.set_bolt("windows", Windows(), parallelism=2).shuffle_grouping("lines")
    topology = b.build(config={"topology.workers": 1, "topology.max.spout.pending": 10})
    with LocalCluster() as cluster:
        tid = cluster.submit(topology)
        server, url = serve_local(cluster, sample_secs=0.5)
        try:
            cluster.wait_running("progress")
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.set_default_timeout(15000)
            page.goto(f"{url}#/topology/{tid}")
            card = page.wait_for_selector('[data-checkpoint="7"]')
            assert "txid 7" in card.inner_text() and "took 15.0 ms" in card.inner_text()
            page.goto(f"{url}#/topology/{tid}/component/windows")
            page.wait_for_selector('tr[data-progress="Window"]')
            progress = page.locator("section.panel", has_text="Progress").inner_text()
            assert "tumbling 5 s (event time)" in progress
            with urllib.request.urlopen(f"{url}api/v1/topology/{tid}/component/windows") as r:
                tasks = [e["task"] for e in json.load(r)["executorStats"]]
            lowest = time.gmtime(1_700_000_000 + min(tasks))  # the lower of the two tasks' marks
            assert len(tasks) == 2 and time.strftime("%Y-%m-%d %H:%M:%S UTC", lowest) in progress
            assert "Late tuples\t4" in progress, progress
            page.goto(f"{url}#/topology/{tid}/component/lines")
            page.wait_for_selector('tr[data-progress="Source"]')
            progress = page.locator("section.panel", has_text="Progress").inner_text()
            own = r"Task (\d+)\t/data/part-\1.log at 1234, 56 behind"  # each task its own file
            assert re.search(own, progress), progress
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-progress.png"), full_page=True)

            # Change a log level (Storm's dialog), see it listed, clear it.
            page.goto(f"{url}#/topology/{tid}")
            page.click("#btn-log-level")
            page.fill("#field-logger", "my.bolts")
            page.select_option("#field-level", "WARN")
            page.fill("#field-timeout", "0")
            page.click("#action-ok")
            page.fill("#secret-input", server.secret)
            page.click("#secret-ok")
            row = page.wait_for_selector('tr[data-logger="my.bolts"]')
            assert "WARN" in row.inner_text() and "until cleared" in row.inner_text()
            assignment = cluster.state.assignment(tid) or {}
            assert assignment["log_levels"] == {"my.bolts": {"level": "WARN", "until": None}}
            page.screenshot(path=str(ARTIFACTS / "ui-log-levels.png"), full_page=True)
            page.click('button[data-clear="my.bolts"]')
            page.wait_for_selector('tr[data-logger="my.bolts"]', state="detached")
            assert "log_levels" not in (cluster.state.assignment(tid) or {})
            assert not problems, problems
            page.close()
        finally:
            server.close()
