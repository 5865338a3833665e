"""Attribute-based object scorer (after AIVAD, Reiss & Hoshen): one density model per attribute, fitted once.

For every attribute (a feature, optionally a subset of its columns) a density model is fitted on the training
objects, and an object's raw attribute score is
- ``gmm``: Gaussian-mixture negative log-likelihood (``tail="density"``), or, for a 1-D attribute,
  ``tail="upper"``: -log P(X >= x) under the mixture, which is ~0 for anything at or below the bulk of the
  training values and grows only for values above it (e.g. "faster than normal", not "slower than normal");
- ``knn``: mean distance to the k nearest training vectors (exact, squared L2 by default as in AIVAD);
- ``class``: rarity of the object's detected class among the training objects (``tao_lab.scorer.class_rarity``;
  reads the objects' ``cls`` column, not a feature; needs a detector with classes, e.g. ``detector=hybrid``);
- ``occupancy`` / ``direction``: scene-context models of where objects stand and which way they go per place
  (``tao_lab.scorer.scene``).

Raw scores may be smoothed along each track (running median over ``track_window`` detections), then calibrated
on the training objects: ``(s - min) / (upper - min)`` with ``upper`` the ``upper_percentile`` of the training
scores. ``calibration="loo"`` computes the training scores leave-one-video-out (each training clip scored by
a model fitted without it: required for k-NN, whose in-sample 1-NN distance is 0); ``"in_sample"`` scores the
training objects with the model fitted on all of them (AIVAD's choice for velocity; for k-NN each training vector
then skips its own copy in the bank). So training objects score about [0, 1] per attribute. The object score
combines the weighted calibrated scores: max within a fusion group, then across groups a sum (``fusion="sum"``),
max, max_excess, or the sum of each group's excess over its training baseline (``"sum_excess"``).

Frame score (per clip): max over the frame's objects of the object score (``frame_reduce="max"``), or AIVAD's sum
over attributes of the weighted per-attribute max (``"sum_of_max"``); a frame with no object gets 0, the
calibrated training minimum. With ``frame_crowd_baseline`` (max only) the frame score is measured against normal
frames as crowded: minus the level (that percentile) of the held-out training frame scores of frames with as many
objects (:func:`crowd_levels`), because the max over more objects, and a crowd's walkers pushed to unusual places,
reach higher on normal frames. Then Gaussian smoothing along time with ``frame_sigma`` frames.

Every fitted quantity (mixture parameters, memory banks, calibration, the calibrated training object scores) is a
registered buffer: ``save_checkpoint`` / ``load_from_checkpoint`` restore the scorer exactly.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from scipy.special import log_ndtr, logsumexp

from tao_lab.config import to_plain
from tao_lab.scorer import scene
from tao_lab.scorer.base import FitItem, ObjectScorer
from tao_lab.scorer.calibration import calibrate, percentile_range
from tao_lab.scene_check import SCENE_CHECK_EXCESS
from tao_lab.scorer.common import frame_scores_from_objects, smooth_along_tracks, smooth_frame_scores
from tao_lab.types import ObjectScores, ObjectTable

log = logging.getLogger(__name__)

#: The default attributes (configs/scorer/attribute.yaml documents how they were chosen): velocity = the fastest
#: 8x8 px window of each object's flow (VelocityFeature column 2), a 2-component mixture scored by its upper tail,
#: in-sample calibration (AIVAD's choice for velocity), running median over 3 detections of the track;
#: velocity_mean = the same model over the mean speed of the object's moving pixels (column 0); and
#: appearance = exact 1-NN squared L2 over 16x16 grey thumbnails with leave-one-video-out calibration.
DEFAULT_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "velocity": {"feature": "velocity", "columns": [2], "model": "gmm", "components": 2, "tail": "upper",
                 "calibration": "in_sample", "weight": 1.0, "track_window": 3},
    "velocity_mean": {"feature": "velocity", "columns": [0], "model": "gmm", "components": 2, "tail": "upper",
                      "calibration": "in_sample", "weight": 1.0, "track_window": 3},
    "appearance": {"feature": "appearance", "model": "knn", "k": 1, "calibration": "loo", "weight": 1.0,
                   "track_window": 1},
}

_ATTR_DEFAULTS: dict[str, Any] = {
    "feature": None,            # key of the feature dict (default: the attribute's name)
    "columns": None,            # feature columns used (None = all)
    "model": "knn",             # "gmm" | "knn" | "class" | "occupancy" | "direction"
    "components": 2,            # gmm: mixture components
    "covariance": "full",       # gmm: covariance type ("full" | "diag")
    "tail": "density",          # gmm: "density" (NLL) | "upper" (1-D only: -log P(X >= x))
    "k": 1,                     # knn: neighbours averaged
    "metric": "sqeuclidean",    # knn: "sqeuclidean" | "euclidean"
    "max_bank": None,           # knn: keep at most this many training vectors (random subset, seeded)
    "calibration": "loo",       # "loo" (leave-one-video-out) | "in_sample"
    "upper_percentile": 99.9,   # calibration upper point (percentile of training scores; 100 = max)
    "weight": 1.0,              # weight in the object score
    "track_window": 1,          # running median of the raw score along the track (detections; 1 = off)
    # scene context (tao_lab.scorer.scene); positions are box footprints from the `place` feature
    "by_place": None,           # None | "ratio" | "standardize": normalise the attribute per place before the model
    "grid": [4, 4],             # place cells (rows, cols) of by_place, occupancy and direction
    "place_prior": 50.0,        # by_place: a cell's statistics are shrunk to the global ones by n / (n + prior)
    "place_quantile": 90.0,     # by_place="ratio": the reference value is this percentile of the cell's values
    "place_shrink": "scene",    # by_place: a sparse cell borrows from the whole scene ("scene") or from its grid row
                                # ("row": the objects at the same depth, which shrinks to the scene in turn)
    "occupancy_sigma": 1.0,     # occupancy: Gaussian blur of the footprint histogram (cells)
    "occupancy_height_sigma": None,  # occupancy: None = occupancy_sigma; else every footprint spreads by this many
                                # expected body heights at its place (perspective), on the grid's cells
    "min_speed": 0.5,           # direction: px/frame below which an object has no direction (scores 0)
    "direction_prior": 20.0,    # direction: pseudo-objects with the scene's directions added to every cell
    "direction_coherence": False,  # direction: read each object's directions by how much its moving pixels agree
                                # on one (scene.coherent_directions): an object growing in the picture (walking
                                # towards the camera) has no one direction to be wrong about
    "clip_prior": None,         # occupancy, direction: None = off; else the scored clip's other tracks join the
                                # training model, which counts as this many objects (tao_lab.scorer.scene)
    "footprint_edge": None,     # None = off; else objects whose box bottom lies within this fraction of the frame
                                # height of its bottom edge have no value for the attribute (not fitted, score 0):
                                # the frame cuts off their feet, so the footprint is not where they stand
    "footprint_side_edge": None,  # None = off; else objects whose box reaches within this fraction of the frame
                                # width of its left or right edge have no value (not fitted, score 0): the frame
                                # cuts off part of them, so the box's bottom centre is not where they stand
    "min_track_detections": None,  # None = off; else an object whose track has had fewer detections than this up to
                                # it (causal; an untracked object has had 1) has no value (not fitted, score 0): a
                                # blob seen for a frame or two is more often a fragment, a shadow or a split than a
                                # person, and its box's shape and footprint are not yet to be trusted
    "footprint_min_height": None,  # None = off; else objects whose box is less tall than this fraction of the
                                # expected height at their footprint have no value (not fitted, score 0): a
                                # fragment (a head, a torso, a leg) does not stand where its box ends
    "edge_calibration": False,  # calibrate objects touching a frame edge (cut boxes: partial crops, flow at the
                                # border) against the training objects that touch an edge (needs the place feature)
    "group": None,              # fusion group (default: the attribute's name): max within a group, sum across
}

#: scene.heading: frames of footprint displacement (a stride or two of a walker; heading round 1, not searched)
HEADING_WINDOW = 8

#: edge_calibration: fewer training objects at an edge than this keep the common calibration
MIN_EDGE_OBJECTS = 50

#: Model kinds and the fitted arrays each keeps (buffer ``<attribute>__<key>``).
_MODEL_KEYS = {"gmm": ("gmm_w", "gmm_mu", "gmm_cov"), "knn": ("bank",), "occupancy": ("occ_logp",),
               "direction": ("dir_logp",), "class": ("class_classes", "class_nll")}
_PLACE_KEYS = ("place_loc", "place_scale")


#: Ways attribute groups combine into the object score (see ``AttributeScorer``'s ``fusion``).
FUSIONS = ("sum", "max", "max_excess", "sum_excess")


def _one_of(key: str, value: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of ``choices``; else a ValueError naming the scorer key and its choices."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {tuple(choices)}, got {value!r}")
    return value


def _sum_excess_option(name: str, value: str, choices: tuple[str, ...], fusion: str, what: str) -> str:
    """``value`` of an option of the groups' excesses, checked: one of ``choices``, whose first is "off"; any other
    needs ``fusion="sum_excess"`` (``what``: what that choice does, for the message)."""
    _one_of(name, value, choices)
    if value != choices[0] and fusion != "sum_excess":
        raise ValueError(f"{name}={value!r} {what}: it needs fusion='sum_excess', got fusion={fusion!r}")
    return value


class AttributeScorer(ObjectScorer):
    """Density models over per-object attributes with training-only calibration (see the module docstring).

    Args:
        attributes: {name: spec}; spec keys (all optional, see ``_ATTR_DEFAULTS``): feature, columns, model
            (gmm|knn|class|occupancy|direction), components, covariance, tail (density|upper), k, metric
            (sqeuclidean|euclidean), max_bank, calibration (loo|in_sample), upper_percentile, weight, track_window,
            by_place, grid, place_prior, place_quantile, place_shrink, occupancy_sigma, min_speed, direction_prior,
            direction_coherence, clip_prior, footprint_edge, footprint_side_edge, footprint_min_height,
            min_track_detections, edge_calibration, group.
            None = :data:`DEFAULT_ATTRIBUTES` (the speed + appearance set of ``configs/scorer/attribute_speed.yaml``;
            the configured default, ``attribute.yaml``, adds the scene attributes, which need the place feature).
        frame_sigma: Gaussian smoothing of the frame scores along time (frames; 0 = none).
        frame_reduce: "max" (max over objects of the object score) | "sum_of_max" (AIVAD).
        seed: seeds the mixtures and the memory-bank subsampling.
        fusion: how attribute groups combine into the object score: "sum" (AIVAD: every attribute adds evidence),
            "max" (the most anomalous group decides; with many attributes a sum also adds up their noise) or
            "max_excess" (the most anomalous group plus every other group's excess over its calibration point 1)
            or "sum_excess" (every group's excess over its own normal baseline, the ``fusion_baseline`` percentile
            of its training object scores, summed: the normal range of a group adds nothing).
        fusion_baseline: percentile of a group's training object scores that ``fusion="sum_excess"`` subtracts; or
            one per group, {group: percentile}, naming every group.
            Within a group (spec key ``group``) attributes always combine by max.
        fusion_baseline_level: what that percentile is taken over: "object" (every training object's group score)
            or "frame" (every training frame's highest group score among its objects: the level the most unusual
            normal object of a frame reaches, so a group that is noisy in a crowd gets a higher bar in a crowded
            camera, where the frame score, a max over many objects, would otherwise pick up its noise).
        fusion_group_cap: None (off) or a calibrated score: every fusion group's score is at most this before the
            groups combine. Calibrated 1 is the training objects' ``upper_percentile`` point; far above it a mixture's
            upper tail grows without bound (about quadratically in the raw value), so one group's measurement error
            (a flow glitch at the frame edge, a blob merged for a frame) can outweigh what every other group says.
        fusion_track_window: running median of the fused object score along each track, over this many detections
            (1 = off): an anomaly that lasts keeps its score, a one-off excess of a normal walker is removed.
        fusion_track_quantile: the percentile of that window the object takes (50 = its median): at 75 an excess
            lasting a quarter of the window's detections survives, at 50 one lasting half of them.
        fusion_track_level: what that window smooths: "object" (the fused object score) or "group"
            (``fusion="sum_excess"`` only: each group's excess over its baseline along the track first, then their
            sum), so short excesses of different groups at different detections (a merge read as wide, then a turn
            read as wrong way) no longer add up to one lasting score, while an excess that lasts in one group does.
        fusion_weights: ``fusion="sum_excess"`` only: "equal" (every group's excess counts once) or "reliability"
            (each group's excess divided by its noise on the camera's own held-out training clips; see
            :meth:`_reliability_weights`).
        fusion_reliability_percentile: "reliability": a group's noise is this percentile, over the held-out
            training frames, of the frame's highest excess of that group.
        dwell_radius: the ``scene.dwell`` quantity counts the frames a track stays within this many expected body
            heights of its current footprint.
        dwell_still_speed: None (off) or px/frame: ``scene.dwell`` counts only the stay's detections whose box's
            90th-percentile flow is below this (the object was still there; :func:`tao_lab.scorer.scene.dwell_frames`).
        dwell_still_fit: with ``dwell_still_speed``, what the dwell model is fitted on: "still" (the training
            objects' still frames too, as the scored objects') or "stay" (their whole stays: how long normal objects
            stay at a place at all; only a scored object's count is restricted to its still frames, so an object is
            a loiterer when it has been still for longer than normal objects stay there, and a walker going slowly
            into the depth of the picture, within the radius but moving, no longer counts as staying). "stay" also
            avoids a model fitted on near-constant zeros where normal objects never stand still (any still frame then
            reads far above the calibrated tail). The calibration, the group baseline and the training scores come
            from the fit, so with "stay" they are those of whole stays.
        dwell_stay_edge: None (off) or a fraction of the frame height: a detection whose box bottom lies within it of
            the bottom edge (its feet cut off) ends a ``scene.dwell`` stay (``breaks`` of
            :func:`tao_lab.scorer.scene.dwell_frames`).
        dwell_stay_side_edge: None (off) or a fraction of the frame width: a detection whose box reaches within it of
            the left or right edge (part of the object outside the picture) ends a ``scene.dwell`` stay.
        dwell_stay_jump: None (off) or a factor > 1: a detection whose box is more than that many times wider or
            narrower, or taller or shorter, than its track's previous detection starts a new ``scene.dwell`` stay, of
            which it is the first frame (:func:`tao_lab.scorer.scene.box_jumps`: a merge, a split, or the track handed
            to another object; in a crowd a track handed between people going opposite ways turns round where it is
            and reads as staying).
        dwell_stay_gap: None (off) or frames >= 1: a detection that follows its track's previous detection after more
            than that many frames starts a new ``scene.dwell`` stay (:func:`tao_lab.scorer.scene.track_gaps`: the
            tracker lost the object and gave the track to whatever came up near it, in a crowd often another person).
        dwell_stay_chain: a new track that begins within the dwell radius of where another track was last seen, at
            most ``dwell_stay_gap`` frames before (and with ``dwell_stay_jump``, a box of about its size), goes on with
            that track's ``scene.dwell`` stay (``chain_gap`` of :func:`tao_lab.scorer.scene.dwell_frames`): a
            standing person the tracker lost (someone passed in front, the background absorbed them) and found
            again keeps the stay. Needs ``dwell_stay_gap``; only with ``dwell_span`` "past" and no
            ``dwell_still_speed``.
        dwell_span: "past" (the stay up to each detection: what a stream can know) or "stay" (the whole stay around it,
            later frames included: a loiterer reads its whole stay from the moment it stops, not only once it has
            stood for longer than normal; on a stream, whose current frame is the buffer's last, it reads the stay so
            far). The model is fitted on the same measure.
        frame_crowd_baseline: None (off) or a percentile: ``frame_reduce="max"`` only, the frame score minus that
            percentile of the training frame scores among frames with as many objects (held out: every training
            clip scored by models fitted on the others; see :func:`crowd_levels`).
        piece_carry: None (off) or a fraction of the expected height: a tracked box less tall than that is a piece of
            its object, and every attribute reads its footprint, box size and ground from its track's nearest whole
            detection (:func:`scene.carry_pieces`); its motion and appearance stay its own.
        piece_carry_features: the features such a piece takes from that detection besides its place (default
            ``("ground",)``: below a head-and-shoulders box lies the person's body, not the ground).
        piece_join: with ``piece_carry``, a piece its track cannot place and a box stacked right above or below it in
            the same frame are read as one object (:func:`scene.stacked_partners`): the detector split a person.
        piece_track_height: None (off) or a fraction: with ``piece_carry``, a tracked box less tall, for its place,
            than that x its own track's usual height is a piece too (:func:`scene.pieces`); no effect without it.
        piece_shape: with ``piece_carry``, the shape (``scene.size`` column 3, log width / height) a carried piece
            reads: ``carried`` (its reference's, like its box size), ``own`` (its own box's) or ``wider`` (its own
            box's when it is wider than ``piece_shape_width`` x its reference's, else its reference's).
        piece_shape_width: the width ratio (piece / reference, > 0) over which ``piece_shape="wider"`` keeps a
            piece's own shape.
        dwell_height: the body height ``dwell_radius`` is counted in: ``expected`` (the expected height at the
            footprint), ``own`` (the object's own box height; a piece's that of its track's whole detection) or
            ``smaller`` (the smaller of the two).
        height_fit: how the expected box height over the footprint (the scene's perspective) is fitted on the
            training boxes (:func:`scene.fit_height_model`): ``median`` (a median plane) or ``mode`` (the plane through
            the most common height of a single whole object, :func:`scene.fit_modal_height`).
    """

    #: 2: fits record the fit clip of every k-NN memory-bank row (held-out scoring of the fit clips)
    #: 3: sum_excess fits record the scene check's training shares (fusion__check_train)
    cache_version = 3

    def __init__(self, attributes: Optional[Mapping[str, Mapping[str, Any]]] = None, frame_sigma: float = 3.0,
                 frame_reduce: str = "max", seed: int = 0, dwell_radius: float = 0.5, fusion: str = "sum",
                 fusion_baseline: float | Mapping[str, float] = 90.0, fusion_baseline_level: str = "object",
                 fusion_track_window: int = 1, fusion_track_quantile: float = 50.0,
                 fusion_track_level: str = "object", fusion_group_cap: Optional[float] = None,
                 fusion_weights: str = "equal", fusion_reliability_percentile: float = 99.0,
                 frame_crowd_baseline: Optional[float] = None, dwell_still_speed: Optional[float] = None,
                 dwell_still_fit: str = "still", dwell_stay_edge: Optional[float] = None,
                 dwell_stay_side_edge: Optional[float] = None, dwell_span: str = "past",
                 dwell_stay_jump: Optional[float] = None, dwell_stay_gap: Optional[int] = None,
                 dwell_stay_chain: bool = False, piece_carry: Optional[float] = None,
                 piece_carry_features: Sequence[str] = scene.PIECE_CARRIED_FEATURES, piece_join: bool = False,
                 piece_track_height: Optional[float] = None, height_fit: str = "median",
                 dwell_height: str = "expected", piece_shape: str = "carried", piece_shape_width: float = 1.5):
        super().__init__()
        attributes = copy.deepcopy(DEFAULT_ATTRIBUTES) if attributes is None else to_plain(attributes)
        if not attributes:
            raise ValueError("AttributeScorer needs at least one attribute")
        if frame_reduce not in ("max", "sum_of_max"):
            raise ValueError(f"frame_reduce must be 'max' or 'sum_of_max', got {frame_reduce!r}")
        self.specs: dict[str, dict[str, Any]] = {}
        for name, spec in attributes.items():
            unknown = set(spec) - set(_ATTR_DEFAULTS)
            if unknown:
                raise ValueError(f"attribute {name!r}: unknown keys {sorted(unknown)}; known: {sorted(_ATTR_DEFAULTS)}")
            s = {**_ATTR_DEFAULTS, **spec}
            s["feature"] = s["feature"] or name
            if s["model"] not in _MODEL_KEYS:
                raise ValueError(f"attribute {name!r}: model must be one of {sorted(_MODEL_KEYS)}, got {s['model']!r}")
            if s["model"] == "occupancy" and spec.get("feature") is None:
                s["feature"], s["columns"] = scene.PLACE_FEATURE, [0, 1]
            if s["by_place"] not in (None, "ratio", "standardize"):
                raise ValueError(f"attribute {name!r}: by_place must be null, 'ratio' or 'standardize'")
            if s["place_shrink"] not in ("scene", "row"):
                raise ValueError(f"attribute {name!r}: place_shrink must be 'scene' or 'row', "
                                 f"got {s['place_shrink']!r}")
            grid = s["grid"]
            if not isinstance(grid, (list, tuple)) or len(grid) != 2 or min(int(g) for g in grid) < 1:
                raise ValueError(f"attribute {name!r}: grid must be [rows, cols], each >= 1, got {grid!r}")
            s["grid"] = [int(g) for g in s["grid"]]
            s["group"] = s["group"] or name
            if s["calibration"] not in ("loo", "in_sample"):
                raise ValueError(f"attribute {name!r}: calibration must be 'loo' or 'in_sample'")
            if s["tail"] not in ("density", "upper"):
                raise ValueError(f"attribute {name!r}: tail must be 'density' or 'upper'")
            if s["direction_coherence"] and (s["model"] != "direction" or s["clip_prior"] is not None):
                raise ValueError(f"attribute {name!r}: direction_coherence applies to model direction without "
                                 f"clip_prior")
            if s["clip_prior"] is not None:
                if s["model"] not in ("occupancy", "direction"):
                    raise ValueError(f"attribute {name!r}: clip_prior applies to the occupancy and direction models, "
                                     f"not to model {s['model']!r}")
                if not float(s["clip_prior"]) > 0:
                    raise ValueError(f"attribute {name!r}: clip_prior must be > 0 (a number of objects) or null "
                                     f"(off), got {s['clip_prior']!r}")
            if s["occupancy_height_sigma"] is not None and (s["model"] != "occupancy"
                                                           or not float(s["occupancy_height_sigma"]) > 0):
                raise ValueError(f"attribute {name!r}: occupancy_height_sigma is a number of body heights > 0 for "
                                 f"model occupancy (or null), got {s['occupancy_height_sigma']!r} for model "
                                 f"{s['model']!r}")
            if s["footprint_edge"] is not None and not 0.0 <= float(s["footprint_edge"]) < 0.5:
                raise ValueError(f"attribute {name!r}: footprint_edge must be a fraction of the frame height in "
                                 f"[0, 0.5) or null (off), got {s['footprint_edge']!r}")
            if s["footprint_side_edge"] is not None and not 0.0 <= float(s["footprint_side_edge"]) < 0.5:
                raise ValueError(f"attribute {name!r}: footprint_side_edge must be a fraction of the frame width in "
                                 f"[0, 0.5) or null (off), got {s['footprint_side_edge']!r}")
            if s["min_track_detections"] is not None and not (float(s["min_track_detections"]).is_integer()
                                                              and int(s["min_track_detections"]) >= 1):
                raise ValueError(f"attribute {name!r}: min_track_detections must be an integer >= 1 or null (off), "
                                 f"got {s['min_track_detections']!r}")
            if s["footprint_min_height"] is not None and not 0.0 < float(s["footprint_min_height"]) < 1.0:
                raise ValueError(f"attribute {name!r}: footprint_min_height must be a fraction of the expected "
                                 f"height in (0, 1) or null (off), got {s['footprint_min_height']!r}")
            self.specs[name] = s
        self.frame_sigma = float(frame_sigma)
        self.frame_reduce = frame_reduce
        self.seed = int(seed)
        self.dwell_radius = float(dwell_radius)
        if dwell_still_speed is not None and not float(dwell_still_speed) > 0:
            raise ValueError(f"dwell_still_speed must be a speed in px/frame > 0 or null (off), got "
                             f"{dwell_still_speed!r}")
        self.dwell_still_speed = None if dwell_still_speed is None else float(dwell_still_speed)
        if dwell_still_fit not in ("still", "stay"):
            raise ValueError(f"dwell_still_fit must be 'still' or 'stay', got {dwell_still_fit!r}")
        self.dwell_still_fit = dwell_still_fit
        if dwell_stay_edge is not None and not 0.0 <= float(dwell_stay_edge) < 0.5:
            raise ValueError(f"dwell_stay_edge must be a fraction of the frame height in [0, 0.5) or null (off), got "
                             f"{dwell_stay_edge!r}")
        self.dwell_stay_edge = None if dwell_stay_edge is None else float(dwell_stay_edge)
        if dwell_stay_side_edge is not None and not 0.0 <= float(dwell_stay_side_edge) < 0.5:
            raise ValueError(f"dwell_stay_side_edge must be a fraction of the frame width in [0, 0.5) or null (off), "
                             f"got {dwell_stay_side_edge!r}")
        self.dwell_stay_side_edge = None if dwell_stay_side_edge is None else float(dwell_stay_side_edge)
        if dwell_stay_jump is not None and not float(dwell_stay_jump) > 1.0:
            raise ValueError(f"dwell_stay_jump must be a box size factor > 1 or null (off), got {dwell_stay_jump!r}")
        self.dwell_stay_jump = None if dwell_stay_jump is None else float(dwell_stay_jump)
        whole_frames = isinstance(dwell_stay_gap, (int, np.integer)) and not isinstance(dwell_stay_gap, bool)
        if dwell_stay_gap is not None and not (whole_frames and dwell_stay_gap >= 1):
            raise ValueError(f"dwell_stay_gap must be a whole number of frames >= 1 or null (off), got "
                             f"{dwell_stay_gap!r}")
        self.dwell_stay_gap = None if dwell_stay_gap is None else int(dwell_stay_gap)
        if not isinstance(dwell_stay_chain, (bool, np.bool_)):
            raise ValueError(f"dwell_stay_chain must be true or false, got {dwell_stay_chain!r}")
        if dwell_stay_chain and (self.dwell_stay_gap is None or dwell_span != "past" or dwell_still_speed is not None):
            raise ValueError("dwell_stay_chain needs dwell_stay_gap (the frames after which a lost track's stay may "
                             "be taken over), dwell_span past and no dwell_still_speed")
        self.dwell_stay_chain = bool(dwell_stay_chain)
        self.dwell_span = _one_of("dwell_span", dwell_span, scene.DWELL_SPANS)
        self.dwell_height = _one_of("dwell_height", dwell_height, scene.DWELL_HEIGHTS)
        if piece_carry is not None and not 0.0 < float(piece_carry) < 1.0:
            raise ValueError(f"piece_carry must be a fraction of the expected height in (0, 1) or null (off), got "
                             f"{piece_carry!r}")
        self.piece_carry = None if piece_carry is None else float(piece_carry)
        piece_carry_features = to_plain(piece_carry_features)
        if isinstance(piece_carry_features, str) or scene.PLACE_FEATURE in piece_carry_features:
            raise ValueError(f"piece_carry_features is a list of feature names without {scene.PLACE_FEATURE!r} (a "
                             f"piece's place is set from its reference, not copied), got {piece_carry_features!r}")
        self.piece_carry_features = tuple(str(f) for f in piece_carry_features)
        if piece_join and piece_carry is None:
            raise ValueError("piece_join places the pieces piece_carry finds: it needs piece_carry (a fraction of the "
                             "expected height)")
        self.piece_join = bool(piece_join)
        # without piece_carry it has no effect: scorer.piece_carry=null turns the handling of pieces off as a whole
        if piece_track_height is not None and not 0.0 < float(piece_track_height) < 1.0:
            raise ValueError(f"piece_track_height is a fraction in (0, 1) of a track's usual height (or null), got "
                             f"{piece_track_height!r}")
        self.piece_track_height = None if piece_track_height is None else float(piece_track_height)
        self.height_fit = _one_of("height_fit", height_fit, scene.HEIGHT_FITS)
        self.piece_shape = _one_of("piece_shape", piece_shape, scene.PIECE_SHAPES)
        if not float(piece_shape_width) > 0:
            raise ValueError(f"piece_shape_width is a width ratio > 0, got {piece_shape_width!r}")
        self.piece_shape_width = float(piece_shape_width)
        self.fusion = _one_of("fusion", fusion, FUSIONS)
        fusion_baseline = to_plain(fusion_baseline)
        for value in (fusion_baseline.values() if isinstance(fusion_baseline, dict) else [fusion_baseline]):
            if not 0.0 <= float(value) <= 100.0:
                raise ValueError(f"fusion_baseline must be a percentile in [0, 100] (or one per group), got "
                                 f"{fusion_baseline!r}")
        self.fusion_baseline = ({str(k): float(v) for k, v in fusion_baseline.items()}
                                if isinstance(fusion_baseline, dict) else float(fusion_baseline))
        if fusion_baseline_level not in ("object", "frame"):
            raise ValueError(f"fusion_baseline_level must be 'object' or 'frame', got {fusion_baseline_level!r}")
        self.fusion_baseline_level = fusion_baseline_level
        if int(fusion_track_window) < 1:
            raise ValueError(f"fusion_track_window must be >= 1 (1 = off), got {fusion_track_window!r}")
        self.fusion_track_window = int(fusion_track_window)
        if not 0.0 <= float(fusion_track_quantile) <= 100.0:
            raise ValueError(f"fusion_track_quantile must be a percentile in [0, 100], got {fusion_track_quantile!r}")
        self.fusion_track_quantile = float(fusion_track_quantile)
        self.fusion_track_level = _sum_excess_option("fusion_track_level", fusion_track_level, ("object", "group"),
                                                     fusion, "smooths each group's excess over its baseline")
        if fusion_group_cap is not None and not float(fusion_group_cap) > 0:
            raise ValueError(f"fusion_group_cap must be a calibrated score > 0 or null (off), got {fusion_group_cap!r}")
        self.fusion_group_cap = None if fusion_group_cap is None else float(fusion_group_cap)
        self.fusion_weights = _sum_excess_option("fusion_weights", fusion_weights, ("equal", "reliability"), fusion,
                                                 "weighs the groups' excesses")
        if not 0.0 < float(fusion_reliability_percentile) <= 100.0:
            raise ValueError(f"fusion_reliability_percentile must be in (0, 100], got "
                             f"{fusion_reliability_percentile!r}")
        self.fusion_reliability_percentile = float(fusion_reliability_percentile)
        if frame_crowd_baseline is not None:
            if not 0.0 < float(frame_crowd_baseline) <= 100.0:
                raise ValueError(f"frame_crowd_baseline must be a percentile in (0, 100] or null (off), got "
                                 f"{frame_crowd_baseline!r}")
            if frame_reduce != "max":
                raise ValueError(f"frame_crowd_baseline measures the max over a frame's objects against crowds "
                                 f"as large: it needs frame_reduce='max', got {frame_reduce!r}")
            frame_crowd_baseline = float(frame_crowd_baseline)
        self.frame_crowd_baseline = frame_crowd_baseline
        self.save_hyperparameters({"attributes": {k: dict(v) for k, v in attributes.items()},
                                   "frame_sigma": self.frame_sigma, "frame_reduce": frame_reduce, "seed": self.seed,
                                   "dwell_radius": self.dwell_radius, "fusion": fusion,
                                   "fusion_baseline": self.fusion_baseline,
                                   "fusion_baseline_level": fusion_baseline_level,
                                   "fusion_track_window": self.fusion_track_window,
                                   "fusion_track_quantile": self.fusion_track_quantile,
                                   "fusion_track_level": self.fusion_track_level,
                                   "fusion_group_cap": self.fusion_group_cap,
                                   "fusion_weights": fusion_weights,
                                   "fusion_reliability_percentile": self.fusion_reliability_percentile,
                                   "frame_crowd_baseline": self.frame_crowd_baseline,
                                   "dwell_still_speed": self.dwell_still_speed,
                                   "dwell_still_fit": self.dwell_still_fit,
                                   "dwell_stay_edge": self.dwell_stay_edge,
                                   "dwell_stay_side_edge": self.dwell_stay_side_edge,
                                   "dwell_stay_jump": self.dwell_stay_jump,
                                   "dwell_stay_gap": self.dwell_stay_gap,
                                   "dwell_stay_chain": self.dwell_stay_chain,
                                   "dwell_span": self.dwell_span, "piece_carry": self.piece_carry,
                                   "piece_carry_features": list(self.piece_carry_features),
                                   "piece_join": self.piece_join,
                                   "piece_track_height": self.piece_track_height,
                                   "height_fit": self.height_fit, "dwell_height": self.dwell_height,
                                   "piece_shape": self.piece_shape, "piece_shape_width": self.piece_shape_width})
        self.groups = list(dict.fromkeys(s["group"] for s in self.specs.values()))
        if isinstance(self.fusion_baseline, dict) and set(self.fusion_baseline) != set(self.groups):
            raise ValueError(f"fusion_baseline per group must name every fusion group exactly: groups {self.groups}, "
                             f"got {sorted(self.fusion_baseline)}")
        if fusion == "sum_excess":  # only then: checkpoints of the other fusions keep their keys
            self.register_buffer("fusion__baseline", torch.zeros(len(self.groups), dtype=torch.float64))
            self.register_buffer("fusion__weight", torch.ones(len(self.groups), dtype=torch.float64))
            # the scene check's reference: the shares on the training objects (see excess_counts)
            self.register_buffer("fusion__check_train", torch.full((len(self.groups),), float("nan"),
                                                                  dtype=torch.float64))
        for name, s in self.specs.items():
            for key in self._model_keys(name):
                dtype = {"bank": torch.float32, "class_classes": torch.int64}.get(key, torch.float64)
                self.register_buffer(f"{name}__{key}", torch.zeros(0, dtype=dtype))
            self.register_buffer(f"{name}__calib", torch.tensor([0.0, 1.0], dtype=torch.float64))
            if s["edge_calibration"]:  # only then: checkpoints without it keep their keys
                self.register_buffer(f"{name}__calib_edge", torch.tensor([0.0, 1.0], dtype=torch.float64))
            if s["model"] == "knn":  # the fit clip of every memory-bank row (held-out scoring, see score_clip)
                self.register_buffer(f"{name}__bank_clip", torch.zeros(0, dtype=torch.int64))
        # the scene's perspective (expected box height over the footprint), only when an attribute reads scene.*
        # or spreads its occupancy by body heights
        self.uses_scene = any(str(s["feature"]).startswith("scene.") for s in self.specs.values())
        # scene.heading is computed only when an attribute reads it (the derived quantities run on every stream frame)
        self.heading_window = HEADING_WINDOW if any(s["feature"] == "scene.heading" for s in self.specs.values()) \
            else None
        self.uses_height = self.uses_scene or self.piece_carry is not None or any(s["occupancy_height_sigma"] is not None
                                                  or s["footprint_min_height"] is not None
                                                  for s in self.specs.values())
        if self.uses_height:
            self.register_buffer("scene__height", torch.zeros(4, dtype=torch.float64))
        self.register_buffer("train_scores", torch.zeros(0))
        if self.frame_crowd_baseline is not None:  # only then: other checkpoints keep their keys
            # level of normal frames per object count (index = count; the last entry serves larger crowds)
            self.register_buffer("frame__crowd_level", torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # fits written before bank_clip existed load with an empty one (held-out scoring then asks for a refit)
        for name in self.specs:
            key = f"{prefix}{name}__bank_clip"
            if f"{name}__bank_clip" in self._buffers and key not in state_dict:
                state_dict[key] = torch.zeros(0, dtype=torch.int64)
        # sum_excess fits written before the group weights existed weighed every group 1
        if "fusion__weight" in self._buffers and f"{prefix}fusion__weight" not in state_dict:
            state_dict[f"{prefix}fusion__weight"] = torch.ones(len(self.groups), dtype=torch.float64)
        # ... and before the scene check: its training reference is unknown
        if "fusion__check_train" in self._buffers and f"{prefix}fusion__check_train" not in state_dict:
            state_dict[f"{prefix}fusion__check_train"] = torch.full((len(self.groups),), float("nan"),
                                                                   dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # ------------------------------------------------------------------ helpers
    def _model_keys(self, name: str) -> tuple[str, ...]:
        s = self.specs[name]
        return _MODEL_KEYS[s["model"]] + (_PLACE_KEYS if s["by_place"] else ())

    def _uses_place(self, name: str) -> bool:
        s = self.specs[name]
        return bool(s["by_place"]) or s["model"] in ("occupancy", "direction")

    def _features(self, objects: ObjectTable, features: Mapping[str, np.ndarray],
                  fitting: bool = False) -> Mapping[str, np.ndarray]:
        """The extracted features plus, when an attribute reads them, the derived ``scene.*`` quantities.
        ``fitting``: for the fit; with ``dwell_still_fit="stay"`` the training objects' dwell is their whole stay.
        With ``piece_carry`` the pieces of tracked objects first take their place from their track
        (:func:`scene.carry_pieces`), in the fit and in scoring alike."""
        own_place = features.get(scene.PLACE_FEATURE)
        if self.piece_carry is not None:
            features = scene.carry_pieces(objects, features, self.scene__height.cpu().numpy(), self.piece_carry,
                                          self.piece_carry_features, self.piece_join, self.piece_track_height)
        if not self.uses_scene:
            return features
        still_speed = None if fitting and self.dwell_still_fit == "stay" else self.dwell_still_speed
        derived = scene.derived_quantities(objects, features, self.scene__height.cpu().numpy(), self.dwell_radius,
                                           still_speed, self.dwell_stay_edge, self.dwell_stay_side_edge,
                                           self.dwell_span, self.heading_window, self.dwell_height,
                                           self.dwell_stay_jump, self.dwell_stay_gap, self.dwell_stay_chain)
        if self.piece_shape != "carried" and features.get(scene.PLACE_FEATURE) is not own_place and len(objects):
            # a whole box's place was not changed, so its shape is its own either way; place column 2 is the width
            own_p = scene.place_columns({scene.PLACE_FEATURE: own_place}, len(objects))
            keep = own_p[:, 2] > self.piece_shape_width * scene.place_columns(features, len(objects))[:, 2] \
                if self.piece_shape == "wider" else True
            size = derived["scene.size"].copy()
            size[:, 3] = np.where(keep, scene.log_box_shape(own_p), size[:, 3])
            derived["scene.size"] = size
        return {**features, **derived}

    def _inputs(self, name: str, objects: ObjectTable, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The attribute's (N, D) input: the objects' class column for ``model: class``, else its feature; NaN rows
        (no value: not fitted, scored 0) for the objects the spec's ``footprint_edge``, ``footprint_side_edge`` or
        ``footprint_min_height`` leaves out, and the young detections ``min_track_detections`` leaves out."""
        s = self.specs[name]
        if s["model"] == "class":
            return objects.cls.astype(np.float64)[:, None]
        x = self._matrix(name, features, len(objects))
        if not len(x):
            return x
        cut = np.zeros(len(x), bool)
        if s["min_track_detections"] is not None:
            cut |= scene.detections_so_far(objects) < int(s["min_track_detections"])
        if any(s[k] is not None for k in ("footprint_edge", "footprint_side_edge", "footprint_min_height")):
            place = scene.place_columns(features, len(objects))
            if s["footprint_edge"] is not None:
                cut |= scene.feet_cut_off(place, s["footprint_edge"])
            if s["footprint_side_edge"] is not None:
                cut |= scene.cut_by_side(place, s["footprint_side_edge"])
            if s["footprint_min_height"] is not None:
                cut |= scene.fragment(place, self.scene__height.cpu().numpy(), s["footprint_min_height"])
        return np.where(cut[:, None], np.nan, x.astype(np.float64)) if cut.any() else x

    def _matrix(self, name: str, features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        s = self.specs[name]
        if s["feature"] not in features:
            hint = (" (tao_lab.features.PlaceFeature under features.extractors.place)"
                    if s["feature"] == scene.PLACE_FEATURE else "")
            raise KeyError(f"attribute {name!r} needs feature {s['feature']!r}{hint}; features given: "
                           f"{sorted(features)}")
        x = np.asarray(features[s["feature"]], np.float32)
        x = x.reshape(len(x), int(np.prod(x.shape[1:])))  # not -1: a clip without objects has (0, D) rows
        if len(x) != n:
            raise ValueError(f"feature {s['feature']!r} has {len(x)} rows but there are {n} objects")
        if s["columns"] is not None:
            x = x[:, list(s["columns"])]
        return x

    def _footprints(self, name: str, features: Mapping[str, np.ndarray], n: int) -> Optional[np.ndarray]:
        return scene.place_columns(features, n)[:, :2] if self._uses_place(name) else None

    def _fit_model(self, name: str, x: np.ndarray,
                   xy: Optional[np.ndarray] = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Fits one attribute's model on the finite rows of x (footprints xy for place-aware models); returns
        (model arrays keyed like the buffers, indices of the rows used (the memory bank's rows for k-NN))."""
        s = self.specs[name]
        kept = np.flatnonzero(np.isfinite(x).all(axis=1))
        if len(kept) == 0:
            raise ValueError(f"attribute {name!r}: no finite training vectors to fit on")
        if s["model"] == "class":
            from tao_lab.scorer.class_rarity import fit_class_table

            table = fit_class_table(x[kept, 0])
            return {"class_classes": table["classes"], "class_nll": table["nll"]}, kept
        if s["model"] == "occupancy":
            if s["occupancy_height_sigma"] is not None:
                return {"occ_logp": scene.fit_occupancy_perspective(
                    x[kept], s["grid"], self.scene__height.cpu().numpy(), float(s["occupancy_height_sigma"]),
                    self._fit_aspect, seed=self.seed)}, kept
            return {"occ_logp": scene.fit_occupancy(x[kept], s["grid"], s["occupancy_sigma"])}, kept
        if s["model"] == "direction":
            return {"dir_logp": scene.fit_direction(xy[kept], x[kept], s["grid"], s["direction_prior"],
                                                    s["min_speed"])}, kept
        model: dict[str, np.ndarray] = {}
        xk = x[kept]
        if s["by_place"]:
            model.update(scene.fit_place_norm(xy[kept], xk, s["grid"], s["by_place"], s["place_prior"],
                                              s["place_quantile"], s["place_shrink"]))
            xk = scene.apply_place_norm(xy[kept], xk, model, s["grid"]).astype(np.float32)
        if s["model"] == "knn":
            if s["max_bank"] and len(kept) > int(s["max_bank"]):
                rng = np.random.default_rng(self.seed)
                sub = np.sort(rng.choice(len(kept), int(s["max_bank"]), replace=False))
                kept, xk = kept[sub], xk[sub]
            model["bank"] = xk.astype(np.float32)
            return model, kept
        from sklearn.mixture import GaussianMixture

        if s["tail"] == "upper" and xk.shape[1] != 1:
            raise ValueError(f"attribute {name!r}: tail='upper' needs a 1-D attribute, got {xk.shape[1]} columns")
        c = max(1, min(int(s["components"]), len(np.unique(xk, axis=0))))
        from threadpoolctl import threadpool_limits

        # one thread: these fits are small, and k-means' OpenMP threads spin against each other on a busy machine
        # (much slower when other jobs share the cores; docs/MEASUREMENTS.md); results are identical
        with threadpool_limits(1):
            gm = GaussianMixture(c, covariance_type=s["covariance"], random_state=self.seed,
                                 reg_covar=1e-4).fit(xk)
        cov = gm.covariances_ if s["covariance"] == "full" else np.stack([np.diag(v) for v in gm.covariances_])
        model.update({"gmm_w": gm.weights_.astype(np.float64), "gmm_mu": gm.means_.astype(np.float64),
                      "gmm_cov": cov.astype(np.float64)})
        return model, kept

    def _raw(self, name: str, model: dict[str, np.ndarray], x: np.ndarray, xy: Optional[np.ndarray] = None,
             exclude: Optional[tuple[np.ndarray, np.ndarray]] = None,
             context: Optional[tuple[np.ndarray, np.ndarray]] = None) -> np.ndarray:
        """Raw scores (N,) float64; NaN for rows with non-finite features. context: (clip, track id) of every row,
        for the models that mix in the scored clip's other tracks (spec key ``clip_prior``)."""
        s = self.specs[name]
        out = np.full(len(x), np.nan)
        ok = np.isfinite(x).all(axis=1)
        if not ok.any():
            return out
        xv = x[ok].astype(np.float64)
        if s["model"] == "class":
            from tao_lab.scorer.class_rarity import class_rarity

            out[ok] = class_rarity(xv[:, 0], model["class_classes"], model["class_nll"])
            return out
        if s["model"] in ("occupancy", "direction") and s["clip_prior"] and context is not None:
            clips, tracks = np.asarray(context[0])[ok], np.asarray(context[1])[ok]
            raw = np.full(len(xv), np.nan)
            for c in np.unique(clips):
                sel = clips == c
                if s["model"] == "occupancy":
                    raw[sel] = scene.occupancy_score_with_clip(xv[sel], model["occ_logp"], s["occupancy_sigma"],
                                                               s["clip_prior"], tracks[sel])
                else:
                    raw[sel] = scene.direction_score_with_clip(xy[ok][sel], xv[sel], model["dir_logp"], s["grid"],
                                                               s["min_speed"], s["clip_prior"], tracks[sel])
            out[ok] = raw
            return out
        if s["model"] == "occupancy":
            out[ok] = scene.occupancy_score(xv, model["occ_logp"])
            return out
        if s["model"] == "direction":
            out[ok] = scene.direction_score(xy[ok], xv, model["dir_logp"], s["grid"], s["min_speed"],
                                            bool(s["direction_coherence"]))
            return out
        if s["by_place"]:
            xv = scene.apply_place_norm(xy[ok], xv, model, s["grid"])
        if s["model"] == "gmm":
            out[ok] = _gmm_score(xv, model["gmm_w"], model["gmm_mu"], model["gmm_cov"], s["tail"])
        else:
            ex = None if exclude is None else (exclude[0][ok], exclude[1])
            out[ok] = _knn_score(xv.astype(np.float32), model["bank"], int(s["k"]), s["metric"], ex)
        return out

    def _model_from_buffers(self, name: str) -> dict[str, np.ndarray]:
        return {k: getattr(self, f"{name}__{k}").cpu().numpy() for k in self._model_keys(name)}

    def _store(self, name: str, model: dict[str, np.ndarray]):
        for k, v in model.items():
            key = f"{name}__{k}"
            setattr(self, key, torch.as_tensor(v, dtype=getattr(self, key).dtype))

    def _group_scores(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(groups, N): per fusion group (``self.groups`` order) the max of its weighted calibrated parts, at most
        ``fusion_group_cap``."""
        groups: dict[str, np.ndarray] = {}
        for name, s in self.specs.items():
            v = float(s["weight"]) * np.asarray(parts[name], np.float64)
            g = s["group"]
            groups[g] = v if g not in groups else np.maximum(groups[g], v)
        stacked = np.stack([groups[g] for g in self.groups])
        return stacked if self.fusion_group_cap is None else np.minimum(stacked, self.fusion_group_cap)

    def _fuse(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Object score: weighted calibrated parts, max within a fusion group (correlated attributes such as two
        speed statistics count once), then across groups: summed (``fusion="sum"``), maxed (``"max"``), the strongest
        plus the others' excess over 1 (``"max_excess"``) or each group's excess over its training baseline summed
        (``"sum_excess"``)."""
        stacked = self._group_scores(parts)
        if self.fusion == "sum":
            return stacked.sum(0)
        if self.fusion == "sum_excess":
            return self._weighted_excess(stacked).sum(0)
        top = stacked.max(0)
        if self.fusion == "max":
            return top
        # max_excess: the strongest group, plus what every other group says beyond its normal range (a calibrated
        # score above 1 is above the calibration point of the training objects); below it they add nothing, so the
        # normal-range noise of many weak attributes does not pile up on every walker as it does in a sum.
        excess = np.clip(stacked - 1.0, 0.0, None)
        return top + excess.sum(0) - excess.max(0)

    def _weighted_excess(self, stacked: np.ndarray) -> np.ndarray:
        """(groups, N) float64: each group's score (``stacked``, :meth:`_group_scores`) above its training baseline,
        times its weight (``fusion="sum_excess"``); 0 at or below the baseline."""
        baseline = self.fusion__baseline.cpu().numpy()[:, None]
        weight = self.fusion__weight.cpu().numpy()[:, None]
        return weight * np.clip(stacked - baseline, 0.0, None)

    def excess_counts(self, parts: Mapping[str, np.ndarray]) -> Optional[tuple[int, np.ndarray]]:
        """The scene check (``fusion="sum_excess"`` only, else None): (objects, over (G,) int64), the number of
        objects and, per fusion group, how many of them exceed the group's baseline by more than
        :data:`SCENE_CHECK_EXCESS`. over / objects on new video against the same share on the training objects
        (``fusion__check_train``, computed as the calibration was: held out for ``calibration: loo``) is a label-free
        sign of how well a group's model fits that video: where anomalies are rare, a share many times the training
        one means the group fires on ordinary objects there (a place or direction the training clips never showed,
        a wrong measurement). A benchmark's test set is full of anomalies, so the groups that catch them show high
        shares there too."""
        if self.fusion != "sum_excess":
            return None
        excess = self.group_excess(parts)
        return excess.shape[1], (excess > SCENE_CHECK_EXCESS).sum(axis=1).astype(np.int64)

    def group_excess(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(groups, N) float64: each fusion group's score (``self.groups`` order) minus its training baseline, signed
        (``fusion="sum_excess"`` only: the other fusions have no baselines)."""
        if self.fusion != "sum_excess":
            raise ValueError(f"group excesses need fusion='sum_excess' (group baselines), got fusion={self.fusion!r}")
        return self._group_scores(parts) - self.fusion__baseline.cpu().numpy()[:, None]

    def _object_scores(self, objects: ObjectTable, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) float32 object scores: the fused parts, then (``fusion_track_window`` > 1) their running median
        (``fusion_track_quantile``) along each track; with ``fusion_track_level="group"`` each group's excess is
        smoothed so before the excesses are summed."""
        if self.fusion_track_window > 1 and self.fusion_track_level == "group":
            excess = self._weighted_excess(self._group_scores(parts)).astype(np.float32)
            return np.sum([smooth_along_tracks(objects, row, self.fusion_track_window, self.fusion_track_quantile)
                           for row in excess], axis=0, dtype=np.float64).astype(np.float32)
        fused = self._fuse(parts).astype(np.float32)
        if self.fusion_track_window <= 1:
            return fused
        return smooth_along_tracks(objects, fused, self.fusion_track_window, self.fusion_track_quantile)

    # ------------------------------------------------------------------ fitting
    def fit_clips(self, items: list[FitItem]) -> "AttributeScorer":
        """Fits every attribute's density model and calibration on training clips (normal only).

        items: [(objects, features, num_frames)] per training clip; features as from ``extract_features``.
        """
        if not items:
            raise ValueError("fit_clips needs at least one training clip")
        objects = ObjectTable.concat([it[0] for it in items])
        video = np.concatenate([np.full(len(it[0]), v) for v, it in enumerate(items)])
        if len(objects) == 0:
            raise ValueError("the training clips contain no objects: nothing to fit the scorer on")
        # keep tracks of different clips apart when smoothing along tracks
        track_key = np.where(objects.track_id >= 0, objects.track_id + video * (1 << 32), -1)
        keyed = ObjectTable(objects.frame, objects.xyxy, objects.score, track_key, objects.cls)
        n_videos = len(items)
        if self.uses_height:
            place = np.concatenate([scene.place_columns(it[1], len(it[0])) for it in items])
            self.scene__height = torch.as_tensor(scene.fit_height_model(place[:, :2], place[:, 3], self.height_fit),
                                                 dtype=torch.float64)
            # frame width / height (occupancy_height_sigma measures distances in frame heights); fitting only
            self._fit_aspect = float(np.median(place[:, 4] / np.maximum(place[:, 5], 1e-9)))
        feats = [self._features(it[0], it[1], fitting=True) for it in items]
        parts = {}
        reliability = self.fusion == "sum_excess" and self.fusion_weights == "reliability"
        if reliability and n_videos < 2:
            log.warning("fusion_weights='reliability' needs >= 2 training clips (it scores each clip with models "
                        "fitted on the others); every group weighs 1")
            reliability = False
        crowd = self.frame_crowd_baseline is not None
        if crowd and n_videos < 2:
            log.warning("frame_crowd_baseline: one training clip, so the crowd levels come from scores of the clip "
                        "the models were fitted on (held out needs >= 2 clips)")
        need_held_out = reliability or (crowd and n_videos >= 2)
        held_out: dict[str, np.ndarray] = {}
        context = (video, keyed.track_id)  # clip and track of every training row (clip_prior models, held-out fits)
        for name, s in self.specs.items():
            x = np.concatenate([self._inputs(name, it[0], f) for f, it in zip(feats, items)])
            xy = (np.concatenate([self._footprints(name, f, len(it[0])) for f, it in zip(feats, items)])
                  if self._uses_place(name) else None)
            model, kept = self._fit_model(name, x, xy)
            self._store(name, model)
            if s["model"] == "knn":
                setattr(self, f"{name}__bank_clip", torch.as_tensor(video[kept], dtype=torch.int64))
            loo = s["calibration"] == "loo"
            if loo and n_videos < 2:
                log.warning("attribute %r: leave-one-video-out calibration needs >= 2 training clips; "
                            "falling back to in-sample calibration", name)
                loo = False
            if loo:
                raw = self._held_out_raw(name, model, kept, x, xy, context)
            elif s["model"] == "knn" and not s["by_place"]:
                # a vector is not its own neighbour: skip the query's own bank row
                rows = np.arange(len(x))
                raw = self._raw(name, model, x, xy, exclude=(rows, rows[kept]))
            else:
                raw = self._raw(name, model, x, xy, context=context)
            raw = self._smooth(keyed, raw, s)
            lo, hi = percentile_range(raw, float(s["upper_percentile"]), f"attribute {name!r}")
            setattr(self, f"{name}__calib", torch.tensor([lo, hi], dtype=torch.float64))
            edge = (np.concatenate([self._at_edge(name, f, len(it[0])) for f, it in zip(feats, items)])
                    if s["edge_calibration"] else None)
            if edge is not None:
                at = edge & np.isfinite(raw)
                lo_e, hi_e = (percentile_range(raw[at], float(s["upper_percentile"]), f"attribute {name!r} at edges")
                              if at.sum() >= MIN_EDGE_OBJECTS else (lo, hi))
                setattr(self, f"{name}__calib_edge", torch.tensor([lo_e, hi_e], dtype=torch.float64))
            parts[name] = self._calibrate(name, raw, edge)
            if need_held_out:  # the same attribute on clips its model never saw
                held_out[name] = parts[name] if loo else self._calibrate(
                    name, self._smooth(keyed, self._held_out_raw(name, model, kept, x, xy, context), s), edge)
        if self.fusion == "sum_excess":  # each group's normal baseline, on the same training scores as calibration
            groups = self._group_scores(parts)
            if self.fusion_baseline_level == "frame":
                groups = _frame_maxima(groups, video, objects.frame)
            percentile = [self.fusion_baseline[g] if isinstance(self.fusion_baseline, dict) else self.fusion_baseline
                          for g in self.groups]
            self.fusion__baseline = torch.as_tensor([np.percentile(row, p) for row, p in zip(groups, percentile)],
                                                    dtype=torch.float64)
            self.fusion__weight = torch.as_tensor(
                self._reliability_weights(held_out, video, objects.frame) if reliability
                else np.ones(len(self.groups)), dtype=torch.float64)
            n, over = self.excess_counts(self._parts_as_scored(items, keyed, parts))
            self.fusion__check_train = torch.as_tensor(over / max(n, 1), dtype=torch.float64)
        if crowd:  # fused last: the held-out object scores need the baselines and weights above
            held_scores = self._object_scores(keyed, held_out if need_held_out else parts)
            self.frame__crowd_level = torch.as_tensor(
                crowd_levels(held_scores, video, objects.frame, self.frame_crowd_baseline), dtype=torch.float64)
        self.train_scores = torch.as_tensor(self._object_scores(keyed, parts), dtype=torch.float32)
        self.fitted.fill_(True)
        return self

    def _parts_as_scored(self, items: list[FitItem], keyed: ObjectTable,
                         parts: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """The training objects' calibrated parts as new objects are scored, for the scene check's training share.
        They are ``parts`` themselves unless the fit saw other quantities than scoring does (``dwell_still_fit="stay"``:
        fitted on whole stays, scored on still frames); then the ``scene.dwell`` attributes are scored again (in
        sample) with the scoring quantities, so the check compares like with like."""
        if self.dwell_still_speed is None or self.dwell_still_fit != "stay":
            return parts
        names = [name for name, s in self.specs.items() if s["feature"] == "scene.dwell"]
        if not names:
            return parts
        feats = [self._features(it[0], it[1]) for it in items]
        out = dict(parts)
        for name in names:
            x = np.concatenate([self._inputs(name, it[0], f) for f, it in zip(feats, items)])
            xy = (np.concatenate([self._footprints(name, f, len(it[0])) for f, it in zip(feats, items)])
                  if self._uses_place(name) else None)
            edge = (np.concatenate([self._at_edge(name, f, len(it[0])) for f, it in zip(feats, items)])
                    if self.specs[name]["edge_calibration"] else None)
            raw = self._raw(name, self._model_from_buffers(name), x, xy)
            out[name] = self._calibrate(name, self._smooth(keyed, raw, self.specs[name]), edge)
        return out

    def _held_out_raw(self, name: str, model: dict[str, np.ndarray], kept: np.ndarray, x: np.ndarray,
                      xy: Optional[np.ndarray], context: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Raw scores (N,) of the training rows, each clip's rows scored by the model fitted on the other clips
        (k-NN: one distance pass over the full bank, skipping the query's own clip's rows). context: (clip, track id)
        of every row."""
        s = self.specs[name]
        video, track = context
        if s["model"] == "knn" and not s["by_place"]:
            return self._raw(name, model, x, xy, exclude=(video, video[kept]))
        raw = np.full(len(x), np.nan)
        for v in np.unique(video):
            held = video == v
            if held.all():
                continue
            rest = ~held
            sub = self._fit_model(name, x[rest], None if xy is None else xy[rest])[0]
            raw[held] = self._raw(name, sub, x[held], None if xy is None else xy[held],
                                  context=(video[held], track[held]))
        return raw

    def _reliability_weights(self, held_out: Mapping[str, np.ndarray], video: np.ndarray,
                             frame: np.ndarray) -> np.ndarray:
        """(groups,) weights of the groups' excesses (``fusion_weights="reliability"``), from training clips only.

        A group's noise is the ``fusion_reliability_percentile`` over the training frames of the frame's highest
        held-out excess of the group over its baseline (the level the frame score, a max over objects, picks up on
        normal clips the models never saw), floored at the distance from the baseline to the calibration point 1
        (a group quieter than its calibration promises earns no extra weight; 1e-3 guards a baseline at or above 1).
        Weight = 1 / noise, scaled so the weights average 1: the object scores keep their scale.
        """
        baseline = self.fusion__baseline.cpu().numpy()
        excess = np.clip(self._group_scores(held_out) - baseline[:, None], 0.0, None)
        noise = np.percentile(_frame_maxima(excess, video, frame), self.fusion_reliability_percentile, axis=1)
        noise = np.maximum(noise, np.maximum(1.0 - baseline, 1e-3))
        weight = 1.0 / noise
        weight = weight / weight.mean()
        log.info("reliability weights of the fusion groups: %s",
                 ", ".join(f"{g} {w:.2f} (noise {n:.2f})" for g, w, n in zip(self.groups, weight, noise)))
        return weight

    def _smooth(self, objects: ObjectTable, raw: np.ndarray, s: dict) -> np.ndarray:
        w = int(s["track_window"])
        if w <= 1:
            return raw
        filled = np.where(np.isfinite(raw), raw, np.nan)
        return smooth_along_tracks(objects, filled, w).astype(np.float64)

    def _calibrate(self, name: str, raw: np.ndarray, edge: Optional[np.ndarray] = None) -> np.ndarray:
        """Calibrated scores; with ``edge`` (N,) bool (``edge_calibration``), those rows on the edge objects' scale."""
        lo, hi = getattr(self, f"{name}__calib").cpu().numpy()
        cal = calibrate(raw, lo, hi)
        if edge is not None and edge.any():
            lo_e, hi_e = getattr(self, f"{name}__calib_edge").cpu().numpy()
            cal = np.where(edge, calibrate(raw, lo_e, hi_e), cal)
        return np.where(np.isfinite(cal), cal, 0.0)  # objects without this attribute (NaN features) score 0

    def _at_edge(self, name: str, features: Mapping[str, np.ndarray], n: int) -> Optional[np.ndarray]:
        """(n,) bool: the objects whose box touches a frame edge (within 1 px), for an attribute with
        ``edge_calibration``; None otherwise."""
        if not self.specs[name]["edge_calibration"]:
            return None
        return scene.touches_edge(scene.place_columns(features, n))

    # ------------------------------------------------------------------ scoring
    def object_parts(self, objects: ObjectTable, features: Mapping[str, np.ndarray],
                     held_out: Optional[int] = None) -> dict[str, np.ndarray]:
        """Calibrated per-attribute scores {name: (N,) float32} (about [0, 1] on training objects); ``held_out``:
        see :meth:`score_clip`."""
        self._require_fitted()
        n = len(objects)
        if n == 0:
            return {name: np.zeros(0, np.float32) for name in self.specs}
        feats = self._features(objects, features)
        parts = {}
        for name, s in self.specs.items():
            exclude = None
            if held_out is not None and s["model"] == "knn":
                bank_clips = self._bank_clips(name)
                if not np.any(bank_clips != int(held_out)):
                    log.warning("attribute %r: every memory-bank row comes from the clip being scored (one fit "
                                "clip): held out, nothing is left to compare with, so it scores 0 here; fit on "
                                "more clips for this attribute to count", name)
                exclude = (np.full(n, int(held_out)), bank_clips)
            raw = self._raw(name, self._model_from_buffers(name), self._inputs(name, objects, feats),
                            self._footprints(name, feats, n), exclude=exclude,
                            context=(np.zeros(n, np.int64), objects.track_id))
            parts[name] = self._calibrate(name, self._smooth(objects, raw, s),
                                          self._at_edge(name, feats, n)).astype(np.float32)
        return parts

    def _bank_clips(self, name: str) -> np.ndarray:
        clips = getattr(self, f"{name}__bank_clip").cpu().numpy()
        if len(clips) != len(getattr(self, f"{name}__bank")):
            raise ValueError(f"attribute {name!r}: this fit does not record which clip each memory-bank row came from "
                             f"(a checkpoint written before held-out scoring existed): refit the scorer to score its "
                             f"own fit clips held out")
        return clips

    def score_clip(self, objects: ObjectTable, features: Mapping[str, np.ndarray], num_frames: int,
                   held_out: Optional[int] = None) -> ObjectScores:
        """Scores one clip: calibrated object scores, per-attribute parts and smoothed (T,) frame scores.

        ``held_out``: the index (in ``fit_clips``' items) of the fit clip being scored, when the scorer scores the
        very clips it was fitted on (``training.mode=unsupervised``). Its own objects are then left out of every
        k-NN memory bank, as in the leave-one-video-out calibration; otherwise each object would find itself at
        distance 0 and every k-NN attribute (appearance, deep, pose) would score 0. The histogram and mixture
        models keep the clip's own objects (one clip among the fit clips shifts them only slightly).
        A clip without objects scores 0 everywhere (the calibrated training minimum)."""
        parts = self.object_parts(objects, features, held_out)
        score = self._object_scores(objects, parts) if len(objects) else np.zeros(0, np.float32)
        if self.frame_reduce == "max":
            frame = frame_scores_from_objects(objects.frame, score, num_frames)
            if self.frame_crowd_baseline is not None:
                level = self.frame__crowd_level.cpu().numpy()
                count = np.bincount(np.asarray(objects.frame, np.int64), minlength=int(num_frames))
                frame = (frame - level[np.minimum(count, len(level) - 1)]).astype(np.float32)
        else:
            per_frame = {name: frame_scores_from_objects(objects.frame, parts[name], num_frames)
                         for name in self.specs}
            frame = self._fuse(per_frame).astype(np.float32)
        return ObjectScores(objects.with_score(score), smooth_frame_scores(frame, self.frame_sigma), parts)

    def train_object_scores(self) -> np.ndarray:
        """Calibrated scores (N,) float32 of the training objects, computed as the calibration was (per attribute:
        leave-one-video-out for ``calibration: loo``, in-sample for ``in_sample``); fit thresholds on these."""
        self._require_fitted()
        return self.train_scores.cpu().numpy().copy()


#: crowd_levels: a count's level is a percentile over at least this many frames (consecutive counts pool until
#: they hold as many): a 90th percentile of fewer frames would rest on a handful of frames above it.
CROWD_MIN_FRAMES = 50


def crowd_levels(scores: np.ndarray, video: np.ndarray, frame: np.ndarray, percentile: float,
                 min_frames: int = CROWD_MIN_FRAMES) -> np.ndarray:
    """(max count + 1,) level of normal frame scores per object count, from object ``scores`` (N,) of normal clips
    (``video``, ``frame`` of every object).

    Every (video, frame) with objects gives its count and its frame score (the max over its objects). Consecutive
    counts pool into bins of at least ``min_frames`` frames (a short last bin joins the one before); a bin's level is
    the ``percentile`` of its frame scores; the levels are made non-decreasing in the count (weighted isotonic
    regression: a larger crowd is not expected to score lower), and each count takes its bin's level; counts below
    the smallest seen (0 included) take the first level.
    """
    scores = np.asarray(scores, np.float64)
    if len(scores) == 0:
        raise ValueError("crowd_levels needs at least one object")
    _, index, count = np.unique(np.stack([np.asarray(video), np.asarray(frame)]), axis=1, return_inverse=True,
                                return_counts=True)
    index = np.asarray(index).reshape(-1)
    frame_max = np.full(len(count), -np.inf)
    np.maximum.at(frame_max, index, scores)
    bins, lo, held = [], 0, 0  # (first count, last count) of each bin
    values, frames_per = np.unique(count, return_counts=True)
    for v, m in zip(values, frames_per):
        held += int(m)
        if held >= min_frames:
            bins.append((lo, int(v)))
            lo, held = int(v) + 1, 0
    if held:  # the short rest joins the last bin (or is the only one)
        bins = bins[:-1] + [(bins[-1][0] if bins else 0, int(values[-1]))]
    from sklearn.isotonic import isotonic_regression

    members = [(count >= a) & (count <= b) for a, b in bins]
    level = isotonic_regression([np.percentile(frame_max[m], percentile) for m in members],
                                sample_weight=[float(m.sum()) for m in members])
    out = np.empty(int(values[-1]) + 1)
    for (a, b), v in zip(bins, level):
        out[a:b + 1] = v
    return out


def _frame_maxima(values: np.ndarray, video: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(rows, frames): per row of values (rows, N) the max over the objects of each (video, frame) that has any."""
    _, index = np.unique(np.stack([video, frame]), axis=1, return_inverse=True)
    index = np.asarray(index).reshape(-1)
    out = np.full((len(values), int(index.max()) + 1), -np.inf)
    for r in range(len(values)):
        np.maximum.at(out[r], index, values[r])
    return out


def _gmm_score(x: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, tail: str) -> np.ndarray:
    """Mixture NLL (tail='density') or -log P(X >= x) (tail='upper', 1-D) of rows x (N, D)."""
    if tail == "upper":
        sd = np.sqrt(cov[:, 0, 0])
        z = (x[:, :1] - mu[None, :, 0]) / sd[None, :]  # (N, C)
        return -logsumexp(np.log(w)[None, :] + log_ndtr(-z), axis=1)
    n, d = x.shape
    logp = np.empty((n, len(w)))
    for c in range(len(w)):
        chol = np.linalg.cholesky(cov[c])
        sol = np.linalg.solve(chol, (x - mu[c]).T)  # (D, N)
        logdet = 2 * np.log(np.diag(chol)).sum()
        logp[:, c] = np.log(w[c]) - 0.5 * (d * np.log(2 * np.pi) + logdet + (sol ** 2).sum(axis=0))
    return -logsumexp(logp, axis=1)


def _knn_score(x: np.ndarray, bank: np.ndarray, k: int, metric: str,
               exclude: Optional[tuple[np.ndarray, np.ndarray]] = None, chunk: int = 2048) -> np.ndarray:
    """Mean distance of each row of x (N, D) to its k nearest rows of bank (M, D), exact, chunked (torch matmul).

    exclude=(query_group (N,), bank_group (M,)): bank rows of the query's own group are skipped (leave-one-out).
    """
    if len(bank) == 0:
        raise ValueError("empty k-NN memory bank")
    b = torch.from_numpy(np.ascontiguousarray(bank, np.float32))
    bn = (b * b).sum(1)
    out = np.empty(len(x))
    kk = min(k, len(bank))
    for s in range(0, len(x), chunk):
        q = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], np.float32))
        # |q|^2 + |b|^2 - 2 q.b, in that order (the same bits as written out), with one (chunk, M) temporary less
        d = torch.add((q * q).sum(1, keepdim=True), bn[None, :])
        d.sub_(q @ b.T, alpha=2)
        if exclude is not None:
            qg = torch.from_numpy(np.asarray(exclude[0][s:s + chunk]))
            bg = torch.from_numpy(np.asarray(exclude[1]))
            d.masked_fill_(qg[:, None] == bg[None, :], float("inf"))
        # the nearest first, then clamped at 0 (rounding can make a distance slightly negative): clamping is
        # monotone, so the k nearest of the clamped distances are the clamped k nearest
        v = d.min(1, keepdim=True).values if kk == 1 else torch.topk(d, kk, dim=1, largest=False).values
        v.clamp_(min=0)
        if metric == "euclidean":
            v = v.sqrt()
        elif metric != "sqeuclidean":
            raise ValueError(f"unknown k-NN metric {metric!r}: expected 'sqeuclidean' or 'euclidean'")
        out[s:s + len(q)] = v.double().mean(1).numpy()
    return out
