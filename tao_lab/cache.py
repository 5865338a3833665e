"""Stage cache: every stage output is stored under a key derived from its config and everything upstream.

Layout: ``<cache_dir>/<stage>/<key>/<clip_id>-<source hash>.npz`` plus ``<key>/key.json`` with the exact
configuration that produced the key (so a person can see what a cache folder holds). Two runs that differ only
in a downstream setting (e.g. the threshold) share the upstream folders, so detections and features are decoded
and computed once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Optional

from tao_lab import artifacts
from tao_lab.renamed_modules import pre_rename_names

log = logging.getLogger(__name__)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hash of a JSON-serialisable object, independent of dict order.

    Renamed tao_lab modules are hashed under their old names (``tao_lab.detector.X`` as ``tao_lab.detect.X``), so
    the keys of caches filled before the rename stay the same (tao_lab.renamed_modules).
    """
    text = pre_rename_names(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


class StageCache:
    """Reads and writes one stage's artifacts for one configuration.

    stage: the stage name (a folder); spec: the JSON-serialisable description of the stage's config and its
    upstream keys; root: the cache directory, or None to disable caching (everything is recomputed).
    """

    def __init__(self, root: Optional[os.PathLike], stage: str, spec: Any):
        self.stage = stage
        self.spec = spec
        self.key = stable_hash(spec)
        self.enabled = root is not None
        self.dir = Path(root) / stage / self.key if root is not None else None
        self.hits = 0
        self.misses = 0
        self._swept = False

    def path(self, clip_id: str, source: str, suffix: str = ".npz") -> Optional[Path]:
        if self.dir is None:
            return None
        return self.dir / f"{clip_id}-{stable_hash(source, 10)}{suffix}"

    def get_or_compute(self, clip_id: str, source: str, compute: Callable[[], Any]) -> Any:
        """Loads the clip's artifact when it is cached, otherwise computes and stores it."""
        path = self.path(clip_id, source)
        if path is not None and not self._swept:  # once per cache object: temporary files of killed writes
            self._swept = True
            artifacts.remove_orphan_temps(self.dir)
        if path is not None and path.is_file():
            try:
                value = artifacts.load(path)
                self.hits += 1
                return value
            except Exception as exc:  # a corrupt cache file is recomputed, never trusted
                log.warning("cache file %s unreadable (%s); recomputing", path, exc)
        value = compute()
        self.misses += 1
        if path is not None:
            self._write_spec()
            artifacts.save(path, value)
        return value

    def _write_spec(self) -> None:
        spec_file = self.dir / "key.json"
        if not spec_file.is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            # a name per process and thread: parallel extraction threads may write the spec at the same time
            tmp = spec_file.with_name(f"key.json.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(self.spec, indent=2, sort_keys=True, default=str))
            os.replace(tmp, spec_file)

    def summary(self) -> str:
        return f"{self.stage}: {self.hits} cached, {self.misses} computed (key {self.key})"
