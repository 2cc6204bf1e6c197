"""Training checkpoint series: each checkpoint coded against the one before it.

A folder holding Trainer-style ``checkpoint-<step>/`` sub-folders is a series.
Every tensor of ``checkpoint-<n>/F`` is predicted by the same tensor of the
previous checkpoint's ``F`` and coded with the checkpoint codec; every
``keyframe_every``-th checkpoint is coded alone, so a restore never follows
more than ``keyframe_every - 1`` base references.
"""
from __future__ import annotations

import mmap
import re
from pathlib import Path

from . import formats
from .choice import BaseCandidate
from .hashing import object_digest

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
DEFAULT_KEYFRAME_EVERY = 5


def checkpoint_step(rel: str) -> int | None:
    m = CHECKPOINT_DIR.match(rel.split("/", 1)[0]) if "/" in rel else None
    return int(m.group(1)) if m else None


def order_files(files: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Checkpoints in step order (a checkpoint's base must be staged before it), other files first."""
    return sorted(files, key=lambda f: (checkpoint_step(f[0]) is not None, checkpoint_step(f[0]) or 0, f[0]))


def is_series(files: list[tuple[str, Path]]) -> bool:
    return len({checkpoint_step(rel) for rel, _ in files} - {None}) >= 2


class SeriesBases:
    """The ingest's base callback for a series: (path, tensor, dtype, shape, data) -> BaseCandidate."""

    def __init__(self, root: Path, files: list[tuple[str, Path]], keyframe_every: int = DEFAULT_KEYFRAME_EVERY):
        self.root = root
        self.steps = sorted({s for s in (checkpoint_step(rel) for rel, _ in files) if s is not None})
        self.paths = dict(files)
        self.keyframe_every = max(1, keyframe_every)
        self._layouts: dict[str, dict[str, formats.Tensor]] = {}
        self._maps: dict[str, memoryview] = {}

    def __call__(self, rel: str, name: str | None, dtype: str | None, shape, data) -> BaseCandidate | None:
        step = checkpoint_step(rel)
        if step is None or name is None or dtype not in ("F32", "BF16", "F16"):
            return None
        index = self.steps.index(step)
        if index % self.keyframe_every == 0:
            return None  # a keyframe
        prev_rel = f"checkpoint-{self.steps[index - 1]}/{rel.split('/', 1)[1]}"
        span = self._tensors(prev_rel).get(name)
        if span is None or span.dtype != dtype or span.end - span.start != len(data):
            return None
        prev = self._mapped(prev_rel)[span.start:span.end]
        return BaseCandidate(object_digest(prev), dtype, index % self.keyframe_every - 1, prev,
                             "ckpt", f"{prev_rel}:{name}", "checkpoint_delta")

    def _tensors(self, rel: str) -> dict[str, formats.Tensor]:
        """Tensor name -> span in the file at ``rel`` (tensors of any container dedup/formats splits)."""
        if rel not in self._layouts:
            found = {}
            if rel in self.paths:
                try:
                    parsed = formats.parse(self._mapped(rel), rel)
                except formats.FormatError:
                    parsed = None  # stored opaque by the writer (which warns); nothing to predict from
                found = {t.name: t for t in parsed.tensors if t.dtype is not None} if parsed else {}
            self._layouts[rel] = found
        return self._layouts[rel]

    def _mapped(self, rel: str) -> memoryview:
        """The file at ``rel``, mapped once (its header, then its tensors, are read from the mapping)."""
        if rel not in self._maps:
            path = self.paths[rel]
            with open(path, "rb") as f:
                self._maps[rel] = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                                             if path.stat().st_size else b"")
        return self._maps[rel]
