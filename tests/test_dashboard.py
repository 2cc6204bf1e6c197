"""The dashboard end to end: a real server holding the six shared repos, pages loaded in headless Chromium.

Figures are compared as exact integers, read from the ``data-*`` attributes of
the DOM Chromium built, against ``/api/v1/report``. Screenshots land in
``test-output/dashboard/``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conftest import ROOT, SHARED_REPOS, free_port, listening, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(apt-get install chromium, or scripts/setup.sh as root)")

#: Savings fields as the report names them, and as the pages' data attributes spell them.
FIELDS = ("raw_bytes", "stored_bytes", "file_dedup", "tensor_dedup", "family_delta", "checkpoint_delta",
          "plane_coding", "files")


class Browser:
    """Headless Chromium on the command line: one fresh process per page, nothing fetched but our server."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def dom(self, url: str, screenshot: Path | None = None, height: int = 2000) -> str:
        """The DOM after the page loaded; with ``screenshot``, also a PNG of it (same process, same load)."""
        shot = []
        if screenshot:
            screenshot.unlink(missing_ok=True)  # a stale picture from an earlier run must not pass for this one
            shot = [f"--screenshot={screenshot}", f"--window-size=1280,{height}"]
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={self.profile}", *shot, "--dump-dom", url]
        html = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
        if screenshot:
            assert screenshot.stat().st_size > 10_000, f"screenshot of {url} looks empty"
        return html


class Elements(HTMLParser):
    """Every element's tag and attributes, plus the text of <pre> blocks (the pull snippet)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.items: list[tuple[str, dict[str, str]]] = []
        self.pre: list[str] = []
        self._in_pre = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.items.append((tag, {k: v or "" for k, v in attrs}))
        if tag == "pre":
            self._in_pre = True
            self.pre.append("")

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data):
        if self._in_pre:
            self.pre[-1] += data

    def having(self, attr: str, tag: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.items if attr in a and (tag is None or t == tag)]

    def by_id(self, id_: str) -> dict[str, str]:
        return next(a for _, a in self.items if a.get("id") == id_)


def figures(attrs: dict[str, str]) -> dict[str, int]:
    return {f: int(attrs["data-" + f.replace("_", "-")]) for f in FIELDS}


#: A tiny training run (checkpoint series) stored after the six, so every mechanism has bytes to show.
SERIES = "lab/tiny-gpt-run"
HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def store_env(shared_repos, tmp_path_factory, request) -> dict[str, str]:
    """An embedded store holding the six repos, ingested with the CLI in the order a hub would get them,
    then (where PyTorch is installed to train it) a small checkpoint series."""
    work = tmp_path_factory.mktemp("dash")
    env = {"WEIGHTVAULT_DATA_DIR": str(work / "store"), "WEIGHTVAULT_DATABASE_URL": "", "WEIGHTVAULT_S3_BUCKET": ""}
    for name in SHARED_REPOS:
        run_cli("ingest", str(shared_repos / name), "--repo", name, "--json", env=env)
    if HAS_TORCH:
        series = request.getfixturevalue("checkpoint_series")
        run_cli("ingest", str(series), "--repo", SERIES, "--keyframe-every", "3", "--json", env=env)
    return env


def stored_repos() -> list[str]:
    return sorted(SHARED_REPOS + ([SERIES] if HAS_TORCH else []))


@contextmanager
def serving(env: dict[str, str], *options: str) -> Iterator[str]:
    """``weightvault serve`` on a free port, stopped on exit; yields its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "weightvault.api.cli", "serve", "--port", str(port), *options]
    with listening(cmd, port, {**os.environ, **env}) as url:
        yield url


@pytest.fixture(scope="module")
def server(store_env) -> Iterator[str]:
    with serving(store_env, "--anonymous-reads") as url:
        yield url


@pytest.fixture(scope="module")
def report(server) -> dict:
    return httpx.get(f"{server}/api/v1/report").raise_for_status().json()


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Browser:
    return Browser(tmp_path_factory.mktemp("chromium-profile"))


@pytest.fixture(scope="module")
def screens() -> Path:
    """Screenshots go where people look for test output (ignored by git), replaced on every run."""
    out = ROOT / "test-output" / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_cli_and_api_report_agree(store_env, report):
    assert json.loads(run_cli("report", "--json", env=store_env).stdout) == report


def test_cli_report_reads_at_80_columns(store_env, report):
    text = run_cli("report", env={**store_env, "COLUMNS": "80"}).stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"{report['overall']['stored_bytes'] / report['overall']['raw_bytes']:.3f}" in text
    assert "mirror-org/all-MiniLM-L6-v2" in text  # names fold onto a second line only when longer


@needs_chromium
def test_overview_matches_json_report(server, report, browser, screens):
    page = Elements(browser.dom(server + "/", screens / "overview.png", 2000))
    assert figures(page.by_id("overall")) == {f: report["overall"][f] for f in FIELDS}
    rows = {a["data-repo"]: figures(a) for a in page.having("data-repo", "tr")}
    assert rows == {r["name"]: {f: r[f] for f in FIELDS} for r in report["repos"]}
    assert sorted(rows) == stored_repos()
    fams = {a["data-family"]: figures(a) for a in page.having("data-family", "tr")}
    assert fams == {f["name"]: {k: f[k] for k in FIELDS} for f in report["families"]}
    # The stacked bar's parts are the report's, and together they are the raw bytes.
    parts = {a["data-part"]: int(a["data-value"]) for a in page.having("data-value", "tr")}
    assert parts == {k: report["overall"][k] for k in parts} and len(parts) == 6
    assert sum(parts.values()) == report["overall"]["raw_bytes"]
    drawn = {a["data-part"] for a in page.having("data-part", "rect")}
    assert drawn == {k for k, v in parts.items() if v > 0}
    if HAS_TORCH:  # the series' checkpoints are coded against each other
        assert "checkpoint_delta" in drawn
    chart = next(a for a in page.having("data-events", "svg"))
    # one event per ingest, plus one per re-basing of earlier members on a newcomer (no raw bytes)
    assert int(chart["data-events"]) == len(report["timeline"])
    assert len([e for e in report["timeline"] if e["raw_bytes"]]) == len(stored_repos())
    assert int(chart["data-raw-bytes"]) == sum(e["raw_bytes"] for e in report["timeline"])
    assert int(chart["data-stored-bytes"]) == sum(e["new_stored_bytes"] for e in report["timeline"])


@needs_chromium
def test_family_page_tree_and_figures(server, report, browser, screens):
    fam = next(f for f in report["families"] if f["name"] == SHARED_REPOS[0])
    url = f"{server}/ui/families/{fam['name']}"
    page = Elements(browser.dom(url, screens / "family.png", 1200))
    assert figures(page.by_id("family")) == {f: fam[f] for f in FIELDS}
    members = page.having("data-depth", "tr")
    assert [m["data-repo"] for m in members][0] == fam["base"]
    assert int(members[0]["data-depth"]) == 0 and all(int(m["data-depth"]) >= 1 for m in members[1:])
    assert sorted(m["data-repo"] for m in members) == sorted(fam["members"])
    by_repo = {r["name"]: r for r in report["repos"]}
    for m in members:
        assert figures(m) == {f: by_repo[m["data-repo"]][f] for f in FIELDS}


@needs_chromium
def test_repo_page_files_download_and_snippet(server, report, browser, screens, shared_repos, tmp_path):
    name = "acme/all-MiniLM-L6-v2-bf16"  # the smallest of the six: the snippet downloads it for real
    url = f"{server}/ui/repos/{name}"
    page = Elements(browser.dom(url, screens / "repo.png", 1900))
    assert figures(page.by_id("repo")) == {f: next(r for r in report["repos"] if r["name"] == name)[f]
                                           for f in FIELDS}
    src = shared_repos / name
    on_disk = {p.relative_to(src).as_posix(): p.stat().st_size for p in src.rglob("*") if p.is_file()}
    files = page.having("data-path", "tr")
    assert {a["data-path"]: int(a["data-size"]) for a in files} == on_disk
    # Files tagged as stored for another repo are exactly what the report counts as this repo's file dedup.
    deduped = {a["data-path"]: int(a["data-size"]) for a in files if a["data-charged-to"] != name}
    assert sum(deduped.values()) == next(r for r in report["repos"] if r["name"] == name)["file_dedup"] > 0
    assert len(page.having("data-commit", "tr")) == 1

    # Every download link serves the file's exact bytes.
    links = [a["href"] for a in page.having("download", "a")]
    assert len(links) == len(on_disk)
    for href in links:
        path = re.sub(r"^/ui/download/[^/]+/[^/]+/[0-9a-f]{40}/", "", href)
        body = httpx.get(server + href).raise_for_status().content
        assert hashlib.sha256(body).digest() == hashlib.sha256((src / path).read_bytes()).digest(), href

    # The pull snippet, run as shown, fetches the repo bit-exactly through huggingface_hub.
    snippet = page.pre[0]
    assert f"export HF_ENDPOINT={server}" in snippet and "HF_TOKEN" not in snippet
    script = snippet.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0]
    env = {**os.environ, "HF_ENDPOINT": server, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = Path(out.stdout.strip().splitlines()[-1])
    assert {p.relative_to(got).as_posix(): p.stat().st_size for p in got.rglob("*") if p.is_file()} == on_disk


@needs_chromium
def test_file_page_tensor_detail(server, browser, screens, shared_repos):
    name, path = "lab/minilm-codesearch-fp32", "model-00002-of-00002.safetensors"
    url = f"{server}/ui/files/{name}?path={path}"
    rows = Elements(browser.dom(url, screens / "file.png", 1600)).having("data-tensor", "tr")
    # The segments rebuild the file: their raw sizes add up to it exactly.
    assert sum(int(r["data-raw-bytes"]) for r in rows) == (shared_repos / name / path).stat().st_size
    # A fine-tune of the stored base: most of its weight bytes are coded as deltas against the base's tensors.
    delta = sum(int(r["data-raw-bytes"]) for r in rows if r["data-base"] and r["data-mechanism"] == "family_delta")
    assert delta > 0.9 * sum(int(r["data-raw-bytes"]) for r in rows)


@needs_chromium
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is needed to train the checkpoint series")
def test_checkpoint_series_pages(server, report, browser, screens):
    page = Elements(browser.dom(f"{server}/ui/repos/{SERIES}"))
    assert figures(page.by_id("repo")) == {f: next(r for r in report["repos"] if r["name"] == SERIES)[f]
                                           for f in FIELDS}
    url = f"{server}/ui/files/{SERIES}?path=checkpoint-20/model.safetensors"
    rows = Elements(browser.dom(url, screens / "series-file.png", 1400)).having("data-tensor", "tr")
    # The second checkpoint follows the first: its tensors are credited to checkpoint delta.
    assert {r["data-mechanism"] for r in rows if r["data-base"]} == {"checkpoint_delta"}


@pytest.fixture(scope="module")
def private_server(store_env) -> Iterator[tuple[str, str]]:
    """A second server on the same store with anonymous reads off, and a read token for it."""
    token = run_cli("token", "create", "--scope", "read", env=store_env).stdout.strip()
    with serving(store_env) as url:
        yield url, token


@needs_chromium
def test_pages_ask_for_a_token_when_reads_are_private(private_server, report, browser, screens):
    url, token = private_server
    asked = Elements(browser.dom(url + "/", screens / "login.png", 700))
    assert any(a.get("name") == "token" for a in asked.having("name", "input"))
    assert not asked.having("data-raw-bytes")
    # ?token= is accepted once, moved to a cookie, and the page then shows the same figures.
    page = Elements(browser.dom(f"{url}/?token={token}"))
    assert figures(page.by_id("overall")) == {f: report["overall"][f] for f in FIELDS}
