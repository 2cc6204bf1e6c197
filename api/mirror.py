"""Pull-through mirror: a repo or revision missing here is fetched once from an upstream hub.

The upstream is any hub huggingface_hub can download from (huggingface.co,
another weightvault). The snapshot lands in a temp folder, is ingested like any
other folder (deduplicated, delta- and plane-coded) under the same name and
revision, and is served from the store from then on: later requests never go
upstream, even when the upstream branch moves.

A fetch runs while the client waits: the client's HEAD timeout
(``HF_HUB_ETAG_TIMEOUT``, 10 s) may be too short for a large first fetch, so
warm big repos with ``weightvault mirror`` or raise that timeout.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

from weightvault.dedup.commits import resolve
from weightvault.errors import RepoNotFound, RevisionNotFound, UpstreamMissing
from weightvault.dedup.ingest import IngestResult, ingest_folder
from weightvault.store import Vault, leftovers

from .spool import tmp_dir

log = logging.getLogger(__name__)


class Mirror:
    """Fetches repos from ``upstream`` into ``vault``; one fetch per repo and revision at a time per process."""

    def __init__(self, vault: Vault, upstream: str, token: str | None = None) -> None:
        self.vault, self.upstream, self.token = vault, upstream.rstrip("/"), token
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def fetch(self, kind: str, name: str, revision: str) -> bool:
        """Make ``name@revision`` present locally; False if the upstream does not have it either."""
        try:
            self.pull(kind, name, revision)
        except UpstreamMissing as exc:
            log.info("mirror miss: %s", exc)
            return False
        return True

    def pull(self, kind: str, name: str, revision: str) -> IngestResult | None:
        """Fetch and ingest ``name@revision`` unless already stored; None when nothing had to be fetched."""
        key = (kind, name, revision)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # concurrent misses on one repo wait for the first fetch instead of repeating it
            if self._present(kind, name, revision):
                return None
            return self._download_and_ingest(kind, name, revision)

    def _present(self, kind: str, name: str, revision: str) -> bool:
        with self.vault.catalog.read_session() as s:
            try:
                resolve(s, name, revision, kind)
            except (RepoNotFound, RevisionNotFound):
                return False
        return True

    def _download_and_ingest(self, kind: str, name: str, revision: str) -> IngestResult:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        with tempfile.TemporaryDirectory(dir=tmp_dir(self.vault), prefix=leftovers.prefix("mirror")) as tmp:
            try:
                snapshot_download(name, repo_type=kind, revision=revision, local_dir=tmp, endpoint=self.upstream,
                                  token=self.token or False, cache_dir=Path(tmp) / ".cache" / "hub")
            except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
                raise UpstreamMissing(f"{kind} {name}@{revision} not found at {self.upstream}") from exc
            log.info("mirror: fetched %s %s@%s from %s", kind, name, revision, self.upstream)
            return ingest_folder(self.vault, Path(tmp), name, revision, kind=kind,
                                 message=f"Mirror of {self.upstream}/{name}@{revision}")
