"""Helpers shared by the dataset readers: clip selection and the 'dataset not found' message."""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

from tao_lab.dataset.errors import DataError


def check_limit(name: str, value: Optional[int]) -> Optional[int]:
    """Validates a ``max_clips``/``max_frames`` option: None (= all) or an int >= 1."""
    if value is None:
        return None
    if int(value) < 1:
        raise ValueError(f"{name} must be None (all) or >= 1, got {value!r}")
    return int(value)


def select_ids(available: Sequence[str], clip_ids: Optional[Iterable[str]], max_clips: Optional[int]) -> list[str]:
    """The clip ids to load from one split, in dataset order.

    ``clip_ids`` (any split; ids of other splits are ignored here) filters first, then the first ``max_clips``
    are kept. Unknown ids are reported by :func:`check_unknown_ids` once both splits are known.
    """
    max_clips = check_limit("max_clips", max_clips)
    ids = list(available)
    if clip_ids is not None:
        wanted = {str(c) for c in clip_ids}
        ids = [c for c in ids if c in wanted]
    return ids if max_clips is None else ids[:max_clips]


def check_unknown_ids(clip_ids: Optional[Iterable[str]], known: Iterable[str], where: str) -> None:
    if clip_ids is None:
        return
    known = set(known)
    unknown = [str(c) for c in clip_ids if str(c) not in known]
    if unknown:
        raise DataError(f"unknown clip ids {unknown} in {where}; available: {sorted(known)}")


def require_dir(path: str, what: str, how: str) -> str:
    """Absolute ``path`` if it is a directory, else DataError naming it and telling how to get the dataset."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isdir(path):
        raise DataError(f"{what} not found: {path} does not exist or is not a directory. {how}")
    return path
