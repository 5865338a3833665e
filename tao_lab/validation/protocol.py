"""Training-only validation of scorer settings: leave-one-clip-out over the TRAINING split with planted anomalies.

For every planted set and every training clip v: the scorer (one per variant) is fitted on the other training
clips, clip v with one planted anomalous object is scored, and the frames holding the planted object are the
positives. The frame AUC is pooled over the held-out clips (micro, like the standard test protocol). Test clips
and test labels are never read, so the settings this chooses are not tuned on the test set.

Variants are lists of Hydra overrides of the base config (e.g. ``scorer.frame_sigma=1``); variants that change
the detector, tracker or features get their own extraction (cached as usual, by config and clip source).
"""
from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tao_lab.metrics import frame_metrics
from tao_lab.pipeline import Pipeline, instantiate, progress
from tao_lab.types import Clip, ObjectTable
from tao_lab.validation.planted import PlantedClip, PlantSpec, normal_moving_speed, plant

log = logging.getLogger(__name__)

#: The planted sets that chose the default attribute scorer (configs/scorer/attribute.yaml). Speeds are multiples of
#: the camera's normal moving speed (``speed_unit="normal"``: the median feet speed of the other training clips'
#: tracks). They were px/frame until session 47, set for UCSD-style scenes whose walkers move about 1 px/frame
#: (Ped2's training tracks: median 0.91), which kept the numbers; on the embedded synthetic camera (median about 1.5
#: px/frame) the px "slow" walker was an ordinary one (its planted object below every group's normal level in all
#: four folds).
#: Cyclists and skaters move several times the walkers' pace; carts are pushed at walking pace, so only their look is
#: abnormal.
DEFAULT_PLANTS: tuple[PlantSpec, ...] = (
    PlantSpec("walker_fast", "walker", (4.0, 8.0), speed_unit="normal"),
    PlantSpec("walker_medium", "walker", (2.5, 4.0), speed_unit="normal"),
    PlantSpec("walker_slow", "walker", (1.5, 2.5), speed_unit="normal"),
    PlantSpec("cart", "box", (1.0, 2.0), speed_unit="normal"),
)


@dataclass
class ValidationResult:
    """Frame AUC (pooled over held-out clips) per variant and planted set; ``mean`` over the sets."""

    plants: list[str]
    auc: dict[str, dict[str, float]] = field(default_factory=dict)

    def mean(self, variant: str) -> float:
        return float(np.mean([self.auc[variant][p] for p in self.plants]))

    def table(self) -> str:
        width = max([len("variant")] + [len(v) for v in self.auc])
        head = f"{'variant':<{width}} | " + " | ".join(f"{p:>13}" for p in self.plants) + " |          mean"
        rows = [head, "-" * len(head)]
        for v, by_plant in self.auc.items():
            rows.append(f"{v:<{width}} | " + " | ".join(f"{by_plant[p]:13.4f}" for p in self.plants)
                        + f" | {self.mean(v):13.4f}")
        return "\n".join(rows)


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def specs_at_working_resolution(specs: Sequence[PlantSpec], train: Sequence[Clip]) -> tuple[PlantSpec, ...]:
    """``specs`` with their px/frame speeds (of the camera's own frames) in the pixels the training clips are
    processed at (``speed_unit: normal`` specs are measured on the tracks, already in those pixels, and stay): a
    walker planted at 4 px/frame into a 160-row camera is the same walker at 6 px/frame when the run sees that camera
    at 240 rows (``working_min_height``; :class:`tao_lab.dataset.resize.ResizedClip`). Sizes need no such care:
    walkers are cut from the (resized) clips and boxes sized from their objects."""
    from tao_lab.dataset.resize import resize_factor

    factors = sorted({round(resize_factor(c), 6) for c in train})  # object scale and height bound together
    if factors == [1.0] or not factors:
        return tuple(specs)
    if len(factors) > 1:
        log.warning("training clips processed at %d different scales %s: the planted speeds use the first's",
                    len(factors), factors)
    f = factors[0]
    return tuple(dataclasses.replace(s, speed=(s.speed[0] * f, s.speed[1] * f)) if s.speed_unit == "px" else s
                 for s in specs)


def planting_pipeline(cfg: DictConfig) -> Pipeline:
    """The pipeline whose tracks the planted objects are cut from and placed by: the run's, with every background
    of its detector per clip (``background.scope: clip``), no motion split (``split_motion: 0``) and no row cut
    (``split_rows_valley: 0``). What is planted then does not change with the detector's background scope or splits,
    so variants of them are compared on the same plants and rounds stay comparable."""
    from tao_lab.detector.camera import scoped_backgrounds

    plain = OmegaConf.to_container(cfg, resolve=False)
    for owner in scoped_backgrounds(plain.get("detector")):
        owner["background"]["scope"] = "clip"
        if "split_motion" in owner:
            owner["split_motion"] = 0.0
        if "split_rows_valley" in owner:
            owner["split_rows_valley"] = 0.0
    return Pipeline(OmegaConf.create(plain))


def planted_clips(train: Sequence[Clip], pipeline: Pipeline, plants: Sequence[PlantSpec], seed: int = 0,
                  show_progress: bool = True) -> dict[str, list[PlantedClip]]:
    """{plant name: one planted copy of each training clip}; walkers are cut from the next training clip, and
    positions, sizes and the normal moving speed (``speed_unit: normal``) come from the objects of the other training
    clips (deterministic in ``seed``)."""
    if len(train) < 2:
        raise ValueError(f"leave-one-clip-out validation needs >= 2 training clips, got {len(train)}")
    tracks = [pipeline.tracks(c) for c in progress(train, "tracks (train)", show_progress)]
    normal_speed = [None] * len(train)
    if any(s.speed_unit == "normal" for s in plants):
        normal_speed = [normal_moving_speed([t for u, t in enumerate(tracks) if u != v]) for v in range(len(train))]
        if any(n is None for n in normal_speed):
            log.warning("no tracked object moves in some training clips' tracks: their planted speeds are read "
                        "as px/frame instead of multiples of the normal speed")
            normal_speed = [1.0 if n is None else n for n in normal_speed]
        log.info("normal moving speed of the other training clips, per held-out clip: %s px/frame",
                 ", ".join(f"{n:.2f}" for n in normal_speed))
    out: dict[str, list[PlantedClip]] = {}
    for spec in plants:
        clips = []
        for v, clip in enumerate(train):
            others = ObjectTable.concat([t for u, t in enumerate(tracks) if u != v])
            d = (v + 1) % len(train)
            rng = np.random.default_rng(_seed(seed, spec.name, v))
            clips.append(plant(clip, spec, others, (train[d], tracks[d]), rng, normal_speed[v]))
        out[spec.name] = clips
    return out


def validate(base_cfg: DictConfig, variants: Mapping[str, DictConfig], train: Sequence[Clip],
             plants: Sequence[PlantSpec] = DEFAULT_PLANTS, seed: int = 0,
             show_progress: bool = True) -> ValidationResult:
    """Leave-one-clip-out frame AUC of each variant on each planted set (see the module docstring).

    variants: {name: the variant's composed config}. Scorers must fit without a Lightning Trainer (attribute).
    """
    from tao_lab.scorer.base import scorer_class

    for name, cfg in variants.items():
        if scorer_class(cfg.scorer._target_).needs_trainer:
            raise ValueError(f"variant {name!r}: {cfg.scorer._target_} is trained with a Lightning Trainer; "
                             "this validation refits the scorer once per held-out clip and supports scorers "
                             "fitted without one (scorer=attribute)")
    from tao_lab.dataset.resize import working_bounds

    for name, cfg in variants.items():  # the clips were read at the base config's resolution
        if working_bounds(cfg) != working_bounds(base_cfg):
            raise ValueError(f"variant {name!r} changes working_height / working_min_height / "
                             "working_object_height, which this protocol cannot compare (its clips are read once); compare resolutions with --scenes, which "
                             "resizes per variant, or set them in the base overrides")
    plants = specs_at_working_resolution(plants, train)
    planted = planted_clips(train, planting_pipeline(base_cfg), plants, seed, show_progress)
    result = ValidationResult([p.name for p in plants])
    front_ends: dict[str, tuple[Pipeline, list]] = {}  # one extraction per distinct detector/tracker/features
    for name, cfg in variants.items():
        pipe = Pipeline(cfg)
        pipe.set_camera_clips(train)  # background.scope=camera: each clip left out of its own camera background
        key = pipe.caches["features"].key
        if key not in front_ends:
            if pipe.cache_dir is not None:  # fill the cache first, in parallel (without a cache: per use below)
                pipe.extract([*train, *(c for clips in planted.values() for c in clips)], name)
            front_ends[key] = pipe, [(pipe.tracks(c), pipe.features(c), c.num_frames) for c in train]
        pipe, items = front_ends[key]
        scores: dict[str, list[np.ndarray]] = {p: [] for p in result.plants}
        for v in progress(range(len(train)), f"{name}: folds", show_progress):
            scorer = instantiate(cfg.scorer)
            scorer.fit_clips([it for u, it in enumerate(items) if u != v])
            scorer.eval()
            for p in result.plants:
                clip = planted[p][v]
                out = scorer.score_clip(pipe.tracks(clip), pipe.features(clip), clip.num_frames)
                scores[p].append(np.asarray(out.frame_scores, np.float64))
        result.auc[name] = {p: float(frame_metrics(scores[p], [c.labels for c in planted[p]])["auc_micro"])
                            for p in result.plants}
        log.info("%s: %s", name, result.auc[name])
    return result
