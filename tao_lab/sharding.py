"""Which clips one extraction job handles when extraction is split over several jobs (``shard`` of ``num_shards``).

``python extract.py -m shard=0,1,2,3 num_shards=4`` runs four jobs under any Hydra launcher (joblib here, a SLURM
array with ``hydra/launcher=slurm``); each fills the shared stage cache with its own clips, and a later ``eval.py``
or ``train.py`` on that cache finds every clip extracted. The split is round-robin over each split's clips sorted
by their source (a path, or a synthetic clip's description): deterministic, independent of the order a dataset
lists its clips in, every clip in exactly one shard, and the shards' sizes differ by at most one clip per split.
"""
from __future__ import annotations

from typing import Any, Sequence, TypeVar

T = TypeVar("T")


def check_shard(shard: Any, num_shards: Any) -> tuple[int, int]:
    """(shard, num_shards) as ints, or a ValueError saying what is wrong and how to fix it."""
    try:
        s, n = int(shard), int(num_shards)
    except (TypeError, ValueError):
        raise ValueError(f"shard and num_shards must be integers, got shard={shard!r} num_shards={num_shards!r}; "
                         f"e.g. `python extract.py -m shard=0,1 num_shards=2`") from None
    if str(s) != str(shard).strip() or str(n) != str(num_shards).strip():
        raise ValueError(f"shard and num_shards must be integers, got shard={shard!r} num_shards={num_shards!r}")
    if n < 1:
        raise ValueError(f"num_shards must be >= 1, got {n}; it is the number of extraction jobs "
                         f"(1 = one job extracts every clip)")
    if not 0 <= s < n:
        raise ValueError(f"shard must be in 0..num_shards-1 = 0..{n - 1}, got shard={s} (num_shards={n}); "
                         f"e.g. `python extract.py -m shard={','.join(str(i) for i in range(n))} num_shards={n}`")
    return s, n


def shard_items(items: Sequence[T], shard: int, num_shards: int,
                key=lambda clip: (clip.source, clip.clip_id)) -> list[T]:
    """The items of shard ``shard``: round-robin over ``items`` sorted by ``key`` (ties keep their order)."""
    shard, num_shards = check_shard(shard, num_shards)
    ordered = sorted(items, key=key)
    return ordered[shard::num_shards]
