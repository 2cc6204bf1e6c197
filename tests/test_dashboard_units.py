"""The dashboard's parts on a small real store: drill-down queries, charts, access, in-process HTTP.

No browser here (``test_dashboard.py`` drives Chromium); pages are fetched with
Starlette's test client from the real app that ``weightvault serve`` runs.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from helpers import make_repo, safetensors_bytes

from weightvault.api.app import create_app
from weightvault.api.cli.common import human
from weightvault.api.dashboard import charts, listing
from weightvault.api.dashboard.access import safe_next
from weightvault.api.dashboard.fmt import human_bytes
from weightvault.dedup.report_cache import report_dict
from weightvault.api.dashboard.tree import tree_prefixes
from weightvault.api.settings import ServerSettings
from weightvault.dedup.commits import delete_repo
from weightvault.dedup.ingest import ingest_folder
from weightvault.dedup.report import build_report
from weightvault.dedup.report_detail import family_detail, file_detail, footprint, repo_detail
from weightvault.dedup.tokens import create_token
from weightvault.store.models import Repo


def weights(seed: int, noise: float = 0.0) -> bytes:
    """A small F32 model; ``noise`` perturbs a fixed base the way a short fine-tune does."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((128, 256)) * 0.02).astype(np.float32)
    w += (np.random.default_rng(seed).standard_normal(w.shape) * noise).astype(np.float32)
    return safetensors_bytes({"layer.weight": ("F32", w), "layer.bias": ("F32", np.zeros(256, np.float32))})


def card(base: str | None) -> bytes:
    return (f"---\nbase_model: {base}\n---\n" if base else "# a model\n").encode()


@pytest.fixture
def store(vault, tmp_path):
    """org/base, org/ft (card names org/base) and org/ft2 (card names org/ft): a family two levels deep."""
    for name, base, seed in (("org/base", None, 0), ("org/ft", "org/base", 1), ("org/ft2", "org/ft", 2)):
        folder = make_repo(tmp_path / name, {"model.safetensors": weights(seed, 1e-4 if base else 0.0),
                                             "README.md": card(base), "config.json": b'{"model_type": "tiny"}'})
        ingest_folder(vault, folder, name)
    return vault


def client(vault, anonymous: bool = True) -> TestClient:
    return TestClient(create_app(vault, ServerSettings(anonymous_reads=anonymous)))


# -- drill-down queries ---------------------------------------------------------------------

def test_family_tree_follows_what_each_member_is_coded_against(store):
    with store.catalog.read_session() as s:
        fam = family_detail(s, "org/base")
    assert fam.base == "org/base"
    assert [(m.name, m.depth, m.coded_against) for m in fam.members] == [
        ("org/base", 0, None), ("org/ft", 1, "org/base"), ("org/ft2", 2, "org/ft")]
    assert fam.members[2].reason == "card base_model: org/ft"


def test_repo_and_file_detail_add_up(store):
    with store.catalog.read_session() as s:
        repo = repo_detail(s, "org/ft")
        detail = file_detail(s, "org/ft", "main", "model.safetensors")
    assert repo.refs == {"main": repo.commit} and len(repo.history) == repo.commits == 1
    assert [f.path for f in repo.files] == ["README.md", "config.json", "model.safetensors"]
    # The config is byte-identical in all three repos: charged to the first, file dedup for the others.
    assert [f.charged_to for f in repo.files] == ["org/ft", "org/base", "org/ft"]
    weights_row = repo.files[2]
    assert weights_row.size == len(weights(1, 1e-4)) and weights_row.tensors == 2
    assert sum(t.raw_bytes for t in detail.segments) == detail.size == weights_row.size
    assert sum(t.stored_bytes for t in detail.segments) == weights_row.stored_bytes
    weight = next(t for t in detail.segments if t.name == "layer.weight")
    assert (weight.mechanism, weight.base, weight.depth) == ("family_delta", "layer.weight", 1)
    assert weight.shape == [128, 256]
    assert detail.segments[0].kind == "inline"


def test_footprint_counts_the_packs_in_the_object_store(store):
    with store.catalog.read_session() as s:
        disk = footprint(s)
    files = [p for p in (store.settings.data_dir / "objects").rglob("*") if p.is_file()]
    assert disk.packs == len(files) > 0 and disk.pack_bytes == sum(p.stat().st_size for p in files)
    assert (disk.condemned_packs, disk.condemned_bytes) == (0, 0)


# -- formatting and charts ------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 7, 999, 1000, 123_456, 9_999_999, 413_131_760, 5 * 10**12])
def test_sizes_read_as_in_the_cli_table(n):
    assert human_bytes(n) == human(n)


def test_tree_prefixes_draw_rails_only_where_siblings_follow():
    expected = ["", "├─ ", "│  ├─ ", "│  └─ ", "└─ ", "   └─ ", ""]
    assert tree_prefixes([0, 1, 2, 2, 1, 2, 0]) == expected


@pytest.mark.parametrize("span,step", [(1, 0.2), (413_131_760, 100_000_000), (7_000, 2_000), (0, 1)])
def test_nice_step(span, step):
    assert charts.nice_step(span) == step


def test_stacked_bar_skips_a_negative_mechanism_and_fills_the_width():
    figures = {"raw_bytes": 100, "stored_bytes": 60, "file_dedup": 30, "tensor_dedup": 0, "family_delta": 12,
               "checkpoint_delta": 0, "plane_coding": -2, "files": 1}
    svg = str(charts.stacked_bar(figures))
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+%" y="0" width="([\d.]+)%"', svg)]
    assert len(widths) == 3 and abs(sum(widths) - 100) < 0.01
    assert 'data-part="plane_coding"' not in svg


def test_timeline_is_cumulative():
    events = [{"at": "2026-01-01T00:00:00", "repo": "a/b", "commit": "0" * 40, "raw_bytes": 100,
               "new_stored_bytes": 40}, {"at": "2026-01-02T00:00:00", "repo": "a/c", "commit": "1" * 40,
                                         "raw_bytes": 50, "new_stored_bytes": 5}]
    svg = str(charts.timeline_chart(events))
    assert 'data-events="2" data-raw-bytes="150" data-stored-bytes="45"' in svg
    assert "nothing ingested yet" in str(charts.timeline_chart([]))


# -- pages over HTTP ------------------------------------------------------------------------

def test_pages_render_the_report(store):
    http = client(store)
    with store.catalog.read_session() as s:
        overall = build_report(s).overall
    home = http.get("/")
    assert home.status_code == 200
    assert f'id="overall" class="panel" data-raw-bytes="{overall.raw_bytes}" ' \
           f'data-stored-bytes="{overall.stored_bytes}"' in home.text
    assert http.get("/ui/families/org/base").status_code == 200
    repo = http.get("/ui/repos/org/ft2")
    assert repo.status_code == 200 and 'snapshot_download("org/ft2"' in repo.text
    assert "HF_ENDPOINT=http://testserver" in repo.text
    assert http.get("/ui/files/org/ft2", params={"path": "model.safetensors"}).status_code == 200
    assert http.get("/ui/download/org/ft2/main/config.json").content == b'{"model_type": "tiny"}'


@pytest.mark.parametrize("url", ["/ui/families/nope/nope", "/ui/repos/org/nope", "/ui/repos/org/ft?rev=nope",
                                 "/ui/files/org/ft?path=missing.bin", "/ui/static/pages.py"])
def test_missing_things_are_a_404_page(store, url):
    got = client(store).get(url)
    assert got.status_code == 404 and "text/html" in got.headers["content-type"]


def test_without_anonymous_reads_pages_ask_for_a_token(store):
    with store.catalog.write_session() as s:
        token = create_token(s, "read")
    http = client(store, anonymous=False)
    asked = http.get("/ui/repos/org/ft")
    assert asked.status_code == 401 and 'name="token"' in asked.text and 'value="/ui/repos/org/ft"' in asked.text
    refused = http.post("/ui/login", data={"token": "wv_wrong", "next": "/"}, follow_redirects=False)
    assert refused.status_code == 401 and "not valid" in refused.text
    login = http.post("/ui/login", data={"token": token, "next": "/ui/repos/org/ft"}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/ui/repos/org/ft"
    assert http.get("/ui/repos/org/ft").status_code == 200  # the cookie now carries the token
    http.post("/ui/logout")
    assert http.get("/").status_code == 401


def test_a_token_in_the_address_moves_into_the_cookie(store):
    with store.catalog.write_session() as s:
        token = create_token(s, "read")
    http = client(store, anonymous=False)
    moved = http.get(f"/ui/files/org/ft?path=config.json&token={token}", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == "/ui/files/org/ft?path=config.json"
    assert http.get(moved.headers["location"]).status_code == 200
    # A wrong token in a link neither locks out the cookie's good one nor ends up in the login form.
    assert http.get("/?token=wv_wrong", follow_redirects=False).status_code == 200
    http.cookies.clear()
    asked = http.get("/ui/repos/org/ft?token=wv_wrong&rev=main")
    assert asked.status_code == 401 and "wv_wrong" not in asked.text
    assert 'value="/ui/repos/org/ft?rev=main"' in asked.text


def test_private_repos_are_hidden_from_anonymous_readers(store):
    with store.catalog.write_session() as s:
        s.query(Repo).filter(Repo.name == "org/ft2").update({"private": True})
        token = create_token(s, "read")
    http = client(store)
    assert "org/ft2" not in http.get("/").text  # neither a row nor a timeline event names it
    assert 'data-repo="org/ft2"' not in http.get("/ui/families/org/base").text
    assert http.get("/ui/repos/org/ft2").status_code == 404
    assert http.get("/ui/download/org/ft2/main/config.json").status_code == 404
    assert 'data-repo="org/ft2"' in http.get("/", headers={"Authorization": f"Bearer {token}"}).text


@pytest.mark.parametrize("target,expected", [("/ui/repos/a/b", "/ui/repos/a/b"), ("//evil.example/", "/"),
                                             ("https://evil.example/", "/"), ("/\\evil", "/"), (None, "/")])
def test_login_only_returns_to_this_server(target, expected):
    assert safe_next(target) == expected


# -- the overview's repo table and the cached report ---------------------------------------

def rows(*specs: tuple[str, int, int]) -> list[dict]:
    return [{"name": n, "family": "fam", "raw_bytes": raw, "stored_bytes": stored} for n, raw, stored in specs]


def test_repo_table_filters_sorts_and_pages():
    repos = rows(("a/x", 100, 10), ("b/y", 300, 200), ("c/z", 200, 20), ("c/w", 50, 50))
    first = listing.page_of(repos, per_page=2)
    assert [r["name"] for r in first.rows] == ["b/y", "c/w"]  # largest stored first
    assert (first.matching, first.pages, first.first, first.last) == (4, 2, 1, 2)
    assert first.url(page=2) == "/?page=2&per_page=2#repos"
    assert [r["name"] for r in listing.page_of(repos, per_page=2, page=9).rows] == ["c/z", "a/x"]  # clamped
    assert [r["name"] for r in listing.page_of(repos, sort="ratio").rows] == ["a/x", "c/z", "b/y", "c/w"]
    assert [r["name"] for r in listing.page_of(repos, query=" C/", sort="name").rows] == ["c/w", "c/z"]
    assert listing.page_of(repos, query="nothing").rows == []


def test_overview_pages_through_repos_over_http(store):
    http = client(store)
    page1, page2 = (http.get("/", params={"sort": "name", "per_page": 2, "page": p}).text for p in (1, 2))
    assert re.findall(r'data-repo="([^"]+)"', page1) == ["org/base", "org/ft"]
    assert re.findall(r'data-repo="([^"]+)"', page2) == ["org/ft2"]
    assert "/?sort=name&amp;page=2&amp;per_page=2#repos" in page1
    assert 'data-family="org/base"' in http.get("/ui/families").text


def test_cached_report_follows_every_change_the_report_can_see(store, tmp_path):
    def fresh() -> dict:
        with store.catalog.read_session() as s:
            return build_report(s).as_dict()

    first = report_dict(store.catalog)
    assert first == fresh() and report_dict(store.catalog) is first  # unchanged catalog: not recomputed
    folder = make_repo(tmp_path / "new", {"model.safetensors": weights(7, 1e-4), "README.md": card("org/base")})
    ingest_folder(store, folder, "org/new")
    assert report_dict(store.catalog) == fresh() != first
    ingest_folder(store, folder, "org/new", revision="dev")  # a new branch, same content
    assert report_dict(store.catalog) == fresh()
    with store.catalog.write_session() as s:
        delete_repo(s, "org/ft2")
    assert report_dict(store.catalog) == fresh()
    assert "org/ft2" not in {r["name"] for r in report_dict(store.catalog)["repos"]}
