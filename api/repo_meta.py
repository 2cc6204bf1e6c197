"""What a repo's stored files say about it, in the hub's fields: ``cardData``, ``tags``, ``library_name``,
``pipeline_tag``, ``config`` and the ``safetensors`` parameter counts.

Read from the revision itself, as the hub does: the README's YAML front matter,
``config.json`` and the safetensors headers (which the catalog keeps inline,
so counting parameters decodes no tensor). Everything here parses what users
uploaded, so every read is bounded and a file that does not parse simply
contributes nothing: metadata is a convenience, never a reason to fail a
request. A commit never changes, so results are cached per commit.
"""
from __future__ import annotations

import datetime
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import yaml
from sqlalchemy import select

from weightvault.dedup.reader import Reader
from weightvault.dedup.formats.safetensors import SafetensorsError, parse
from weightvault.errors import MetadataTooLarge
from weightvault.store.models import File, Segment

#: Bytes of README.md and config.json read for metadata. Hub front matter is a few KiB; 1 MiB leaves room
#: for long model-index blocks while bounding what one request decodes.
MAX_META_FILE = 1 << 20
#: Nodes of parsed YAML/JSON kept (after alias expansion): a billion-laughs card stops here, not in memory.
MAX_NODES = 50_000
MAX_DEPTH = 32
#: Commits whose metadata is kept in memory (a few KiB each).
CACHE_SIZE = 512

#: Architecture suffix in config.json -> the pipeline tag the hub shows for such models.
ARCHITECTURE_TASKS = {
    "ForMaskedLM": "fill-mask", "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification", "ForQuestionAnswering": "question-answering",
    "ForCausalLM": "text-generation", "ForImageClassification": "image-classification",
}
#: Files that mark a sentence-transformers repo.
SENTENCE_TRANSFORMERS_FILES = ("config_sentence_transformers.json", "modules.json")


@dataclass(frozen=True)
class RepoMeta:
    card_data: dict | None = None
    tags: list[str] = field(default_factory=list)
    library_name: str | None = None
    pipeline_tag: str | None = None
    config: dict | None = None
    safetensors: dict | None = None

    def fields(self, kind: str) -> dict:
        """The keys model_info / dataset_info carry (absent ones left out, as the hub does)."""
        out: dict = {"tags": self.tags}
        if self.card_data is not None:
            out["cardData"] = self.card_data
        if kind == "model":
            for key, value in (("library_name", self.library_name), ("pipeline_tag", self.pipeline_tag),
                               ("config", self.config), ("safetensors", self.safetensors)):
                if value is not None:
                    out[key] = value
        return out


def plain(value, budget: list[int], depth: int = 0):
    """A JSON-safe copy of parsed YAML: dates as ISO strings, other scalars as strings; bounded in size."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise MetadataTooLarge()
    if isinstance(value, dict):
        return {str(k): plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, budget, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: the answer must stay valid JSON
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def front_matter(text: str) -> dict | None:
    """The YAML between a README's leading ``---`` lines, or None when absent or not a mapping."""
    if not text.startswith("---"):
        return None
    block, sep, _ = text[3:].partition("\n---")
    if not sep:
        return None
    try:
        data = yaml.safe_load(block)
        return plain(data, [MAX_NODES]) if isinstance(data, dict) else None
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: MetadataTooLarge, a 5,000-digit int, a bad date
        return None


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _read_head(reader: Reader, file: File) -> bytes:
    return b"".join(reader.iter_file(file.id, 0, min(file.size, MAX_META_FILE)))


def json_object(raw: bytes) -> dict | None:
    """A JSON file's top-level object (bounded like the card), or None when it is not one."""
    try:
        data = json.loads(raw)
        return plain(data, [MAX_NODES]) if isinstance(data, dict) else None
    except (ValueError, RecursionError):  # ValueError: MetadataTooLarge too
        return None


def _json_file(reader: Reader, file: File | None) -> dict | None:
    if file is None or file.size > MAX_META_FILE:
        return None
    return json_object(_read_head(reader, file))


def parameter_counts(session, tree: dict[str, File]) -> dict | None:
    """``{"parameters": {dtype: n}, "total": n}`` over the revision's safetensors files, from their stored headers."""
    files = {f.id: f for p, f in tree.items() if p.endswith(".safetensors") and f.format == "safetensors"}
    if not files:
        return None
    headers = session.execute(select(Segment.file_id, Segment.inline).where(
        Segment.file_id.in_(files), Segment.seq == 0, Segment.inline.is_not(None))).all()
    counts: dict[str, int] = {}
    for file_id, inline in headers:
        try:
            layout = parse(inline, files[file_id].size)
        except SafetensorsError:
            continue
        for t in layout.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + math.prod(t.shape)
    return {"parameters": counts, "total": sum(counts.values())} if counts else None


def compute(vault, tree: dict[str, File]) -> RepoMeta:
    reader = Reader(vault)
    readme = tree.get("README.md")
    card = None
    if readme is not None:
        card = front_matter(_read_head(reader, readme).decode("utf-8", "replace"))
    config = _json_file(reader, tree.get("config.json"))
    card = card or {}
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    if library is None and any(name in tree for name in SENTENCE_TRANSFORMERS_FILES):
        library = "sentence-transformers"
    if library is None and config and ("model_type" in config or "architectures" in config):
        library = "transformers"
    pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
    if pipeline is None and library == "sentence-transformers":
        pipeline = "sentence-similarity"
    architectures = _as_list((config or {}).get("architectures"))
    if pipeline is None:
        pipeline = next((task for arch in architectures for suffix, task in ARCHITECTURE_TASKS.items()
                         if arch.endswith(suffix)), None)
    model_type = (config or {}).get("model_type") if isinstance((config or {}).get("model_type"), str) else None
    with vault.catalog.read_session() as s:
        safetensors = parameter_counts(s, tree)
    tags = [*([library] if library else []), *(["safetensors"] if safetensors else []),
            *([model_type] if model_type else []), *([pipeline] if pipeline else []),
            *_as_list(card.get("tags")), *_as_list(card.get("language")),
            *(f"dataset:{d}" for d in _as_list(card.get("datasets"))),
            *(f"base_model:{b}" for b in _as_list(card.get("base_model"))),
            *(f"license:{lic}" for lic in _as_list(card.get("license")))]
    short_config = {k: v for k, v in (("architectures", architectures or None), ("model_type", model_type)) if v}
    return RepoMeta(card_data=card or None, tags=list(dict.fromkeys(tags)), library_name=library,
                    pipeline_tag=pipeline, config=short_config or None, safetensors=safetensors)


_cache: OrderedDict[tuple[str, str], RepoMeta] = OrderedDict()
_lock = threading.Lock()


def repo_meta(vault, commit_oid: str, load_tree: Callable[[], dict[str, File]]) -> RepoMeta:
    """The metadata of the revision at ``commit_oid`` (cached per commit; ``load_tree`` is called on a miss only)."""
    key = (vault.catalog.url, commit_oid)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    meta = compute(vault, load_tree())
    with _lock:
        _cache[key] = meta
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return meta
