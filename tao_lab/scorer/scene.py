"""Scene-context models for the attribute scorer: what is normal *where* in a fixed camera's image.

A fixed camera sees the same ground plane all the time, so "normal" depends on the place: people near the camera
are large and fast in pixels, far away small and slow; they walk along paths, in the directions of those paths,
and pass rather than stay. These models learn that from the training objects alone (pure numpy; every fitted
quantity is an array, which :class:`~tao_lab.scorer.attribute.AttributeScorer` keeps as a buffer).

Positions are *footprints*: the bottom centre of the box in frame-relative units (``PlaceFeature``), the point
where an object touches the ground and so the one that fixes its depth. Places are cells of a ``(rows, cols)``
grid over the frame.

- :func:`fit_expected_height` / :func:`expected_height`: a robust (L1) plane ``h = a + b x + c y`` of box height
  over the footprint; the camera's perspective in three numbers. Merged groups (too large) and fragments (too
  small) are outliers to a median fit, not to a mean.
- :func:`derived_quantities`: per-object quantities that need that model or the tracks: speed in expected body
  heights per frame (perspective-aware motion), size relative to the expected size, and dwell (frames a track
  has stayed within a radius of its current footprint).
- :func:`fit_place_norm` / :func:`apply_place_norm`: per-place normalisation of any attribute (a per-cell
  reference value shrunk towards the global one where a cell has few training objects), so one density model
  then compares each object with what is normal at its own place.
- :func:`fit_occupancy` / :func:`occupancy_score`: how often normal objects stand at a place (a smoothed 2-D
  histogram of footprints); ``-log`` density.
- :func:`fit_direction` / :func:`direction_score`: the distribution of motion directions per place (orientation
  histograms of the optical flow); cross-entropy of an object's direction against its place's.
- :func:`carry_pieces`: a piece of an object (a box far less tall than a person there) placed where its track's
  nearest whole detection says the object stands, for the footprint attributes (the scorer's ``piece_carry``).
- ``clip_prior`` (both): the scored clip's OTHER tracks join the training model, weighed against it as
  ``clip_prior`` training objects (:func:`others_by_key`): a camera's training clips rarely show every place and
  direction its normal people use, and a place or direction many people of this very clip use is normal, while a
  single track (the off-path walker, the wrong-way walker, the loiterer) never counts for itself.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from tao_lab.types import ObjectTable

#: Name of the feature holding footprints and frame size (tao_lab.features.PlaceFeature).
PLACE_FEATURE = "place"


def place_columns(features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The ``place`` feature (N, 6) float64: foot x, foot y, width, height (frame-relative), W, H (px)."""
    if PLACE_FEATURE not in features:
        raise KeyError(f"scene-context attributes need the {PLACE_FEATURE!r} feature (tao_lab.features.PlaceFeature"
                       f" in configs/features); features given: {sorted(features)}")
    p = np.asarray(features[PLACE_FEATURE], np.float64)
    p = p.reshape(n, -1) if p.ndim != 2 else p
    if len(p) != n or p.shape[1] < 6:
        raise ValueError(f"feature {PLACE_FEATURE!r} has shape {p.shape}, expected ({n}, 6) (PlaceFeature)")
    return p


def box_edges(place: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x1, x2, y1, y2), each (N,), of the boxes of the ``place`` columns (N, 6), frame-relative (x in frame widths,
    y in frame heights)."""
    p = np.asarray(place, np.float64).reshape(-1, 6)
    return p[:, 0] - p[:, 2] / 2, p[:, 0] + p[:, 2] / 2, p[:, 1] - p[:, 3], p[:, 1]


def touches_edge(place: np.ndarray, tolerance_px: float = 1.0) -> np.ndarray:
    """(N,) bool: boxes touching a frame edge (within ``tolerance_px``), from the ``place`` columns (N, 6) of
    :func:`place_columns`: cut by the frame, such an object shows only part of itself to every feature."""
    p = np.asarray(place, np.float64).reshape(-1, 6)
    width, height = p[:, 4], p[:, 5]
    x1, x2, y1, y2 = box_edges(p)
    x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    return (x1 <= tolerance_px) | (x2 >= width - tolerance_px) | (y1 <= tolerance_px) | (y2 >= height - tolerance_px)


def feet_cut_off(place: np.ndarray, edge: float) -> np.ndarray:
    """(N,) bool: boxes whose bottom lies within ``edge`` (a fraction of the frame height) of the frame's bottom edge,
    from the ``place`` columns (N, 6): the frame cuts their feet off, so their footprint is not where they stand
    (an attribute's ``footprint_edge``, the scorer's ``dwell_stay_edge``)."""
    return np.asarray(place, np.float64).reshape(-1, 6)[:, 1] >= 1.0 - float(edge)


def cut_by_side(place: np.ndarray, edge: float) -> np.ndarray:
    """(N,) bool: boxes whose left or right side lies within ``edge`` (a fraction of the frame width) of the frame's
    side edge, from the ``place`` columns (N, 6): the frame cuts off part of the object, so the box's bottom centre
    is the centre of its visible part, not where it stands, and it moves at half the object's speed while the object
    comes in or goes out (an attribute's ``footprint_side_edge``, the scorer's ``dwell_stay_side_edge``)."""
    p = np.asarray(place, np.float64).reshape(-1, 6)
    edge = float(edge)
    return (p[:, 0] - p[:, 2] / 2 <= edge) | (p[:, 0] + p[:, 2] / 2 >= 1.0 - edge)


def box_jumps(objects: ObjectTable, place: np.ndarray, factor: float) -> np.ndarray:
    """(N,) bool: detections whose box is more than ``factor`` (> 1) times wider or narrower, or taller or shorter,
    than the previous detection of their track (the scorer's ``dwell_stay_jump``). From one frame to the next a
    walker's box changes by a few percent (its width by more as its legs swing); a jump means the box now holds
    something else: it merged with a neighbour, lost one, or the track went over to another person (in a crowd the
    tracker can hand a track from a walker going one way to one coming back while their boxes are merged, and the
    footprint, turning round, reads as staying). A track's first detection and an untracked object never jump.
    ``place`` rows as :func:`place_columns` (columns 2-3: width and height as shares of the frame's)."""
    factor = float(factor)
    if not factor > 1.0:
        raise ValueError(f"a box jump factor must be > 1, got {factor!r}")
    log_size = np.log(np.maximum(np.asarray(place, np.float64).reshape(-1, 6)[:, 2:4], 1e-9))
    out = np.zeros(len(objects), bool)
    for seg in track_segments(objects):
        step = np.abs(np.diff(log_size[seg], axis=0)).max(axis=1)
        out[seg[1:]] = step > np.log(factor)
    return out


def track_gaps(objects: ObjectTable, max_gap: int) -> np.ndarray:
    """(N,) bool: detections that follow the previous detection of their track after more than ``max_gap`` frames
    (the scorer's ``dwell_stay_gap``). The tracker keeps a lost track alive for a while (ByteTrack's
    ``track_buffer``) and gives it to whatever detection comes up near where it was predicted: in a crowd, often
    another person than the one it lost. Nothing was seen of the object in between, so a stay measured across the gap
    is not a measured stay. A track's first detection and an untracked object never follow a gap. ``max_gap`` >= 1
    frames (1: every missed frame is a gap)."""
    max_gap = int(max_gap)
    if max_gap < 1:
        raise ValueError(f"a track gap must be at least 1 frame, got {max_gap!r}")
    out = np.zeros(len(objects), bool)
    for seg in track_segments(objects):
        out[seg[1:]] = np.diff(objects.frame[seg].astype(np.int64)) > max_gap
    return out


def detections_so_far(objects: ObjectTable) -> np.ndarray:
    """(N,) int64: how many detections of its track each object's track had up to and including it (1 = the track's
    first); an untracked object (track id < 0) counts 1 (an attribute's ``min_track_detections``)."""
    out = np.ones(len(objects), np.int64)
    for seg in track_segments(objects):
        out[seg] = np.arange(1, len(seg) + 1)
    return out


def fragment(place: np.ndarray, height_model: np.ndarray, min_height: float) -> np.ndarray:
    """(N,) bool: boxes less tall than ``min_height`` x the expected height at their footprint (the ``place``
    columns (N, 6); :func:`expected_height`): a piece of an object (a head, a torso, a leg), whose box does not
    end where the object stands (an attribute's ``footprint_min_height``)."""
    place = np.asarray(place, np.float64).reshape(-1, 6)
    return place[:, 3] < float(min_height) * expected_height(height_model, place[:, :2])


#: the features a piece takes from its track's reference detection by default (:func:`carry_pieces`): the look of the
#: ground below the box (tao_lab.features.GroundFeature), which below a head-and-shoulders box is the person's own body
PIECE_CARRIED_FEATURES = ("ground",)
#: What a carried piece's shape (``scene.size`` column 3) reads: ``carried`` (its reference's box, like its size and
#: footprint), ``own`` (its own box: a track that switched from a walker to a cart must not lend the cart its shape) or
#: ``wider`` (its own box when it is wider than ``piece_shape_width`` x its reference's: a head and shoulders is not
#: wider than the body it was cut from, a cart is wider than the walker whose track it took over).
PIECE_SHAPES = ("carried", "own", "wider")


def pieces(objects: ObjectTable, place: np.ndarray, height_model: np.ndarray, min_height: float,
           track_height: Optional[float] = None, segments: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """(N,) bool: the pieces of objects. :func:`fragment` at ``min_height`` (less tall than that x the expected height
    at the footprint), and with ``track_height`` also a tracked box less tall, for its place, than ``track_height`` x
    its own track's usual height (the 75th percentile over the track of its box height / expected height): a walker
    cut to 60% of its height for a while, or a cart seen whole, measured against itself rather than against a person.
    segments: the objects' :func:`track_segments`, when the caller has them already."""
    piece = fragment(place, height_model, min_height)
    if track_height is None:
        return piece
    p = np.asarray(place, np.float64).reshape(-1, 6)
    rel = p[:, 3] / expected_height(height_model, p[:, :2])
    for seg in (track_segments(objects) if segments is None else segments):
        piece[seg] |= rel[seg] < float(track_height) * np.percentile(rel[seg], 75)
    return piece


def piece_references(objects: ObjectTable, place: np.ndarray, height_model: np.ndarray,
                     min_height: float, track_height: Optional[float] = None) -> np.ndarray:
    """(N,) int64: for each piece (:func:`pieces`) the row of the nearest detection in time of its own track that is
    not a piece (on a tie the earlier one), -1 for every other row and for pieces whose track has no whole detection
    (an untracked piece, or a track that is pieces throughout: nothing to read its place from)."""
    segments = list(track_segments(objects))
    return _nearest_whole(objects, pieces(objects, place, height_model, min_height, track_height, segments), segments)


def _nearest_whole(objects: ObjectTable, piece: np.ndarray, segments: list[np.ndarray]) -> np.ndarray:
    """:func:`piece_references` for given pieces (N,) bool and the objects' :func:`track_segments`."""
    ref = np.full(len(piece), -1, np.int64)
    if not piece.any():
        return ref
    for seg in segments:
        p = piece[seg]
        if not p.any() or p.all():
            continue
        whole = seg[~p]
        whole_frames = objects.frame[whole]
        frames = objects.frame[seg[p]]
        after = np.clip(np.searchsorted(whole_frames, frames), 0, len(whole) - 1)
        before = np.clip(after - 1, 0, len(whole) - 1)
        earlier = np.abs(frames - whole_frames[before]) <= np.abs(whole_frames[after] - frames)
        ref[seg[p]] = whole[np.where(earlier, before, after)]
    return ref


def stacked_partners(objects: ObjectTable, place: np.ndarray, height_model: np.ndarray, rows: np.ndarray,
                     max_gap: float = 0.5, max_height: float = 1.5) -> np.ndarray:
    """(len(rows),) int64: for each row of ``rows`` (pieces, :func:`fragment`) the row of the box stacked right above
    or below it in the same frame that makes one object with it, -1 where there is none: a box that overlaps it
    horizontally by at least half the narrower width, with a vertical gap under ``max_gap`` x the expected height at
    the piece's footprint, whose union with it is at most ``max_height`` x the expected height at the union's
    footprint (two people at different depths, one's feet above the other's head, are taller than one person
    there); the one with the smallest gap. Boxes from the ``place`` columns (N, 6), frame-relative."""
    p = np.asarray(place, np.float64).reshape(-1, 6)
    rows = np.asarray(rows, np.int64)
    out = np.full(len(rows), -1, np.int64)
    x1, x2, y1, y2 = box_edges(p)
    expected = expected_height(height_model, p[:, :2])
    for k, i in enumerate(rows):
        same = np.flatnonzero(objects.frame == objects.frame[i])
        same = same[same != i]
        if not len(same):
            continue
        overlap = np.minimum(x2[i], x2[same]) - np.maximum(x1[i], x1[same])
        narrow = np.minimum(x2[i] - x1[i], x2[same] - x1[same])
        gap = np.maximum(y1[same] - y2[i], y1[i] - y2[same])  # < 0: the boxes overlap vertically
        top, bottom = np.minimum(y1[i], y1[same]), np.maximum(y2[i], y2[same])
        centre = (np.minimum(x1[i], x1[same]) + np.maximum(x2[i], x2[same])) / 2
        union_expected = expected_height(height_model, np.column_stack([centre, bottom]))
        ok = (overlap >= 0.5 * narrow) & (gap < max_gap * expected[i]) & (bottom - top <= max_height * union_expected)
        if ok.any():
            out[k] = same[ok][np.argmin(gap[ok])]
    return out


def carry_pieces(objects: ObjectTable, features: Mapping[str, np.ndarray], height_model: np.ndarray,
                 min_height: float, carried: Sequence[str] = PIECE_CARRIED_FEATURES,
                 join: bool = False, track_height: Optional[float] = None) -> Mapping[str, np.ndarray]:
    """The features with every piece of a tracked object placed where its track's nearest whole detection says the
    object stands (the scorer's ``piece_carry``).

    A piece (:func:`pieces`; ``track_height`` adds the boxes short for their own track) is a box less tall than
    ``min_height`` x the expected height at its footprint (:func:`fragment`): a head
    and shoulders whose legs the detector lost, or legs whose upper body it lost. Its box bottom is not where the
    object stands, so every footprint attribute reads the wrong place: the ground below a head-and-shoulders box is
    the person's own body, its place cell lies a body height too high, it is as wide as high. When its track has a
    whole detection (:func:`piece_references`), the piece's ``place`` row takes that detection's width and height and
    a footprint on its own box: its top plus the reference's height when its top is the edge closer to the
    reference's top (the upper part kept), else its own bottom (the lower part kept); its x stays its own. The
    ``carried`` features present (default :data:`PIECE_CARRIED_FEATURES`) take the reference's row. Rows are taken
    from the nearest detection in time, before or after; on a stream (the current frame is the buffer's last) that is
    the latest whole one before. Other features (motion, appearance unless carried) are the piece's own.

    With ``join``, a piece its track cannot place that has a box stacked right above or below it in the same frame
    (:func:`stacked_partners`: the detector split one object in two, e.g. a coat the colour of the background between
    head and legs) is placed as their union: footprint at the union's bottom (its x its own), the union's width and
    height, and the carried features of the lower of the two boxes, whose strip below is the ground. Returns
    ``features`` itself when nothing changes."""
    if PLACE_FEATURE in carried:
        raise ValueError(f"{PLACE_FEATURE!r} is placed from the reference, not copied: leave it out of the carried "
                         f"features")
    n = len(objects)
    if n == 0:
        return features
    place = place_columns(features, n)
    segments = list(track_segments(objects))
    piece = pieces(objects, place, height_model, min_height, track_height, segments)
    ref = _nearest_whole(objects, piece, segments)
    rows = np.flatnonzero(ref >= 0)
    src = ref[rows]
    top, ref_top = place[rows, 1] - place[rows, 3], place[src, 1] - place[src, 3]
    upper_kept = np.abs(top - ref_top) <= np.abs(place[rows, 1] - place[src, 1])
    new_place = place.copy()
    new_place[rows, 1] = np.where(upper_kept, top + place[src, 3], place[rows, 1])
    new_place[rows, 2:4] = place[src, 2:4]
    if join:
        loose = np.flatnonzero(piece & (ref < 0))
        partner = stacked_partners(objects, place, height_model, loose)
        joined, partner = loose[partner >= 0], partner[partner >= 0]
        if len(joined):
            x1, x2, y1, y2 = box_edges(place)
            left, right = np.minimum(x1[joined], x1[partner]), np.maximum(x2[joined], x2[partner])
            top, bottom = np.minimum(y1[joined], y1[partner]), np.maximum(y2[joined], y2[partner])
            new_place[joined, 1], new_place[joined, 2], new_place[joined, 3] = bottom, right - left, bottom - top
            lower = np.where(place[partner, 1] > place[joined, 1], partner, joined)
            rows, src = np.concatenate([rows, joined]), np.concatenate([src, lower])
    if not len(rows):
        return features
    out = dict(features)
    out[PLACE_FEATURE] = new_place.astype(np.asarray(features[PLACE_FEATURE]).dtype)
    for name in carried:
        if name in features:
            x = np.array(features[name], copy=True)
            if len(x) != n:
                raise ValueError(f"feature {name!r} has {len(x)} rows but there are {n} objects")
            x[rows] = x[src]
            out[name] = x
    return out


def cell_index(xy: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """(N,) int64 cell of each footprint (N, 2) in [0, 1]^2 on a (rows, cols) grid, row-major."""
    rows, cols = int(grid[0]), int(grid[1])
    xy = np.nan_to_num(np.asarray(xy, np.float64).reshape(-1, 2), nan=0.5)
    cx = np.clip((xy[:, 0] * cols).astype(np.int64), 0, cols - 1)
    cy = np.clip((xy[:, 1] * rows).astype(np.int64), 0, rows - 1)
    return cy * cols + cx


# ---------------------------------------------------------------------------------------------- perspective
def _plane_inputs(xy: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite boxes with a positive height: footprints (N, 2) and heights (N,), float64."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    h = np.asarray(height, np.float64).reshape(-1)
    ok = np.isfinite(xy).all(1) & np.isfinite(h) & (h > 0)
    return xy[ok], h[ok]


def _reweighted_plane(a: np.ndarray, h: np.ndarray, coef: np.ndarray,
                      weights: Callable[[np.ndarray], Optional[np.ndarray]], iterations: int,
                      rtol: float, atol: float) -> Optional[np.ndarray]:
    """Iteratively reweighted least squares of h on the design a (N, 3) from coef: each step weighs the boxes by
    ``weights(coef)`` (None: stop and return None). Returns the plane's coefficients (3,)."""
    for _ in range(int(iterations)):
        w = weights(coef)
        if w is None:
            return None
        sw = np.sqrt(w)
        new = np.linalg.lstsq(a * sw[:, None], h * sw, rcond=None)[0]
        if np.allclose(new, coef, rtol=rtol, atol=atol):
            return new
        coef = new
    return coef


def fit_expected_height(xy: np.ndarray, height: np.ndarray, iterations: int = 30,
                        quantile: float = 0.5) -> np.ndarray:
    """Robust plane of box height over the footprint: returns [a, b, c, floor] (float64).

    Expected height (frame-relative) = a + b * foot_x + c * foot_y, at least ``floor`` (the 5th percentile of the
    training heights). Fitted by iteratively reweighted least squares for the quantile (pinball) loss at
    ``quantile``: 0.5 is a median regression, so merged groups and fragments, which are many but not the majority,
    do not drag it. Where merged groups ARE the majority (the crowded near part of a walkway), the median follows
    them; a lower quantile follows the single objects, which are the smallest whole boxes there.
    """
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    q = float(quantile)
    xy, h = _plane_inputs(xy, height)
    if len(h) == 0:
        raise ValueError("no training boxes to fit the expected-height (perspective) model on")
    floor = float(np.percentile(h, 5))
    if len(h) < 3:
        return np.array([float(np.quantile(h, q)), 0.0, 0.0, floor])
    a = np.column_stack([np.ones(len(h)), xy])
    eps = 1e-3 * max(float(np.median(h)), 1e-6)

    def pinball(coef: np.ndarray) -> np.ndarray:
        # a residual above the plane weighs q, one below 1 - q (both 1/2 for the median)
        r = h - a @ coef
        return np.where(r >= 0, q, 1.0 - q) / np.maximum(np.abs(r), eps)

    coef = _reweighted_plane(a, h, np.linalg.lstsq(a, h, rcond=None)[0], pinball, iterations, 1e-6, 1e-9)
    return np.array([coef[0], coef[1], coef[2], floor])


#: ``height_fit`` of :func:`fit_height_model`: median = the median plane (:func:`fit_expected_height`); mode = the
#: plane through the most common height of a single whole object (:func:`fit_modal_height`)
HEIGHT_FITS = ("median", "mode")
#: mode: the quantile plane the mode regression starts from, and its kernel's width in log height. On Ped2's 16
#: training clips (session 46) every start from the 10th to the 35th percentile and every width from 0.08 to 0.12
#: ends within 2 px of the same plane; from the median it ends on the merged pairs'.
MODE_START_QUANTILE = 0.25
MODE_SIGMA = 0.1


def fit_modal_height(xy: np.ndarray, height: np.ndarray, start_quantile: float = MODE_START_QUANTILE,
                     sigma: float = MODE_SIGMA, iterations: int = 100) -> np.ndarray:
    """Plane of box height over the footprint through the most common height of a single whole object: returns
    [a, b, c, floor] as :func:`fit_expected_height`.

    Near the camera of a crowded walkway the most common box is two people one behind the other (the farther one's
    head above the nearer one's, one blob), and a median plane follows those boxes: on Ped2's training clips it
    expects 82 px at the foot row where a person is about 43 px tall. A mode regression (iteratively reweighted least
    squares with Gaussian weights on the log ratio of height to the plane, width ``sigma``) climbs to the nearest
    ridge of the height density from its start, the ``start_quantile`` plane, which lies below the merged boxes: the
    ridge of single whole objects. Pieces of objects (a head, the legs) lie further below and are fewer.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    start = fit_expected_height(xy, height, quantile=start_quantile)
    xy, h = _plane_inputs(xy, height)
    if len(h) < 3:
        return start
    a = np.column_stack([np.ones(len(h)), xy])
    floor_h = max(float(start[3]), 1e-4)

    def kernel(coef: np.ndarray) -> Optional[np.ndarray]:
        w = np.exp(-0.5 * (np.log(h / np.maximum(a @ coef, floor_h)) / sigma) ** 2)
        return None if w.sum() <= 1e-9 * len(h) else w  # no box near the plane: keep the start

    coef = _reweighted_plane(a, h, start[:3].copy(), kernel, iterations, 1e-7, 1e-10)
    return start if coef is None else np.array([coef[0], coef[1], coef[2], start[3]])


def fit_height_model(xy: np.ndarray, height: np.ndarray, height_fit: str = "median") -> np.ndarray:
    """The scorer's expected-height plane by ``height_fit`` (:data:`HEIGHT_FITS`)."""
    if height_fit == "median":
        return fit_expected_height(xy, height)
    if height_fit == "mode":
        return fit_modal_height(xy, height)
    raise ValueError(f"height_fit must be one of {HEIGHT_FITS}, got {height_fit!r}")


def expected_height(model: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N,) expected frame-relative box height at footprints xy (N, 2), from :func:`fit_expected_height`."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    a, b, c, floor = (float(v) for v in np.asarray(model, np.float64)[:4])
    return np.maximum(a + b * xy[:, 0] + c * xy[:, 1], max(floor, 1e-4))


def track_segments(objects: ObjectTable) -> Iterator[np.ndarray]:
    """The row indices of each track's detections in frame order, for every track with at least two detections
    (an untracked object, track id < 0, has no track)."""
    tid = objects.track_id
    order = np.lexsort((objects.frame, tid))
    for seg in np.split(order, np.flatnonzero(np.diff(tid[order])) + 1):
        if len(seg) >= 2 and tid[seg[0]] >= 0:
            yield seg


#: the body height dwell's radius is measured in: "expected" = the expected height at the footprint (the scene's
#: plane); "own" = the object's own box height; "smaller" = the smaller of the two (a merged blob is not one body,
#: and a plane pulled up by merged blobs is not one body's height either)
DWELL_HEIGHTS = ("expected", "own", "smaller")
#: scene.dwell per detection: "past" = the stay up to it; "stay" = its whole stay, later frames included
DWELL_SPANS = ("past", "stay")


def dwell_frames(objects: ObjectTable, foot_px: np.ndarray, radius_px: np.ndarray,
                 still: Optional[np.ndarray] = None, breaks: Optional[np.ndarray] = None,
                 both_ways: bool = False, starts: Optional[np.ndarray] = None,
                 chain_gap: Optional[int] = None, chain_jump: Optional[float] = None,
                 log_size: Optional[np.ndarray] = None) -> np.ndarray:
    """(N,) frames each object's track has stayed within ``radius_px`` (N,) of its current footprint (N, 2) px.

    For detection i of a track: the frames since the track's last detection farther than the radius from where i
    stands (or since the track started). A walker passing by keeps it near the time to cross a radius; someone who
    stays accumulates it. Untracked objects (track_id < 0) get 0.
    ``still`` (N,) bool: instead, the frames of the stay that ended at a detection where the object was still (the
    frames from each detection of the stay to the next one count when the later one is still), so an object still at
    every detection counts exactly its stay and any other object less. A walker going into the depth of the picture
    stays within the radius for long but is not still at any of them.
    ``breaks`` (N,) bool: detections whose footprint is not where the object stands (the frame cuts its feet off);
    a stay starts after the track's last such detection, and such a detection has stayed 0 frames. A walker coming
    in through the bottom edge shows more of itself frame by frame while its box's bottom stays on the edge: without
    it, the frames it took to come in count as a stay.
    ``starts`` (N,) bool: detections where the track begins to hold another object (:func:`box_jumps`,
    :func:`track_gaps`); a stay never
    reaches back over one, but, unlike a break, begins at it (its footprint is where the new object stands).
    ``both_ways``: the whole stay around detection i, the frames before it (as above) AND after it up to the track's
    next detection farther than the radius (or a break), so a loiterer reads its whole stay from the moment it stops
    (offline: the clip's later frames are known; on a stream the current frame is the last, so it reads the stay so
    far). A passer-by's stay is then its whole crossing time, wherever in the crossing it is.
    ``chain_gap`` (frames; None = off): a stay goes on across a track break. A track whose first detection stands
    within its radius of where another track was last seen at most ``chain_gap`` frames before (that track not seen
    in the new one's first frame; with ``chain_jump``, a factor > 1, and ``log_size`` (N, 2) log box width and
    height, neither more than ``chain_jump`` times larger or smaller) takes over that track's stay there plus the
    frames between: its detections whose stay reaches back to its first one count from the earlier stay's start
    (:class:`_StayChain`). The tracker loses a standing person when someone passes in front or the
    background absorbs them, and starts a new track when they come back: without it, the stay starts again. Only
    with the stay so far (not ``still``, not ``both_ways``); it reads frames at or before the new track's first.
    """
    n = len(objects)
    out = np.zeros(n, np.float64)
    if n == 0:
        return out
    breaks = None if breaks is None else np.asarray(breaks, bool)
    starts = None if starts is None else np.asarray(starts, bool)
    chain = None
    if chain_gap is not None:
        if still is not None or both_ways:
            raise ValueError("a stay chained across track breaks (dwell_stay_chain) counts the stay so far: it works "
                             "with dwell_span past and without dwell_still_speed")
        chain = _StayChain(objects, foot_px, radius_px, int(chain_gap), chain_jump, log_size, breaks)
    for seg in track_segments(objects):
        p = foot_px[seg]
        f = objects.frame[seg].astype(np.float64)
        r = radius_px[seg]
        length = len(seg)
        # frames so far that ended at a still detection (the interval into it)
        counted = None if still is None else np.cumsum(np.where(still[seg], np.diff(f, prepend=f[0]), 0.0))
        reach = np.zeros(length, bool)  # detections whose stay reaches back to the track's first (chain_gap)
        for s in range(0, length, 1024):  # row chunks keep the distance matrix small on very long tracks
            rows = np.arange(s, min(s + 1024, length))
            d = np.hypot(p[rows, None, 0] - p[None, :, 0], p[rows, None, 1] - p[None, :, 1])
            far = (d > r[rows, None]) & (np.arange(length)[None, :] < rows[:, None])
            if breaks is not None:  # a cut-off detection ends every stay that would reach back over it
                far |= breaks[seg][None, :] & (np.arange(length)[None, :] <= rows[:, None])
            if starts is not None:  # the detection before a start ends every stay from the start on
                far |= np.append(starts[seg][1:], False)[None, :] & (np.arange(length)[None, :] < rows[:, None])
            any_far = far.any(1)
            last_far = np.where(any_far, length - 1 - np.argmax(far[:, ::-1], axis=1), -1)
            first = np.minimum(last_far + 1, rows)
            last = rows
            if both_ways:  # up to the detection before the next one farther than the radius (or cut off)
                later = np.arange(length)[None, :] > rows[:, None]
                ahead = (d > r[rows, None]) & later
                if breaks is not None:
                    ahead |= breaks[seg][None, :] & later
                if starts is not None:
                    ahead |= starts[seg][None, :] & later
                last = np.maximum(np.where(ahead.any(1), np.argmax(ahead, axis=1) - 1, length - 1), rows)
            if still is None:
                out[seg[rows]] = f[last] - f[first]
            else:  # frames of the stay (from detection ``first`` to ``last``) that ended at a still detection
                out[seg[rows]] = counted[last] - counted[first]
            if chain is not None:
                reach[rows] = first == 0
        if chain is not None:
            chain.add(seg, reach if breaks is None else reach & ~breaks[seg])
    if chain is not None:
        chain.carry(out)
    if breaks is not None:
        out[breaks] = 0.0
    return out


class _StayChain:
    """The stays new tracks take over from tracks lost where they begin (``chain_gap`` of :func:`dwell_frames`).
    :meth:`add` each track (rows in frame order, and which of them have stayed since its first detection), then
    :meth:`carry` once, after every track's own stays are counted."""

    def __init__(self, objects: ObjectTable, foot_px: np.ndarray, radius_px: np.ndarray, max_gap: int,
                 jump: Optional[float], log_size: Optional[np.ndarray], breaks: Optional[np.ndarray]):
        if max_gap < 1:
            raise ValueError(f"a chained stay's gap must be at least 1 frame, got {max_gap!r}")
        if jump is not None and (not float(jump) > 1.0 or log_size is None):
            raise ValueError(f"a chained stay's jump factor must be > 1 with the boxes' log sizes, got {jump!r}")
        self.frame = objects.frame.astype(np.int64)
        self.foot, self.radius, self.max_gap, self.breaks = foot_px, radius_px, max_gap, breaks
        self.log_jump = None if jump is None else np.log(float(jump))
        self.log_size = None if log_size is None else np.asarray(log_size, np.float64).reshape(-1, 2)
        self.tracks: list[np.ndarray] = []
        self.reach: list[np.ndarray] = []

    def add(self, seg: np.ndarray, reach: np.ndarray) -> None:
        self.tracks.append(seg)
        self.reach.append(reach)

    def _candidates(self, t: int, first: np.ndarray, last: np.ndarray) -> list[tuple[float, int]]:
        """(distance, row) of each earlier track's last detection before track ``t`` begins that it may take over."""
        i = self.tracks[t][0]
        f0 = self.frame[i]
        if self.breaks is not None and self.breaks[i]:
            return []
        out = []
        for u in np.flatnonzero((first < f0) & (last >= f0 - self.max_gap)):
            rows = self.tracks[u]
            frames = self.frame[rows]
            k = int(np.searchsorted(frames, f0)) - 1
            if f0 - frames[k] > self.max_gap or (k + 1 < len(rows) and frames[k + 1] == f0):
                continue  # lost too long ago, or still seen when the new track begins: not the same object
            j = rows[k]
            if self.breaks is not None and self.breaks[j]:
                continue
            d = float(np.hypot(*(self.foot[j] - self.foot[i])))
            if d > self.radius[i]:
                continue
            if self.log_jump is not None and np.abs(self.log_size[j] - self.log_size[i]).max() > self.log_jump:
                continue
            out.append((d, j))
        return out

    def carry(self, dwell: np.ndarray) -> None:
        """Adds to ``dwell`` (N,) each new track's carried stay, on its detections that have stayed since its first:
        its predecessor's stay at its last detection plus the frames between. Tracks are taken in the order they
        begin (a predecessor's own carried stay is counted before a later track takes it over); the tracks that
        begin in one frame share out the lost ones nearest first, one new track per lost track."""
        if not self.tracks:
            return
        first = np.array([self.frame[seg[0]] for seg in self.tracks])
        last = np.array([self.frame[seg[-1]] for seg in self.tracks])
        taken: set[int] = set()
        for f0 in np.unique(first):
            pairs = sorted((d, j, t) for t in np.flatnonzero(first == f0) for d, j in self._candidates(t, first, last))
            given: set[int] = set()
            for _, j, t in pairs:
                if j in taken or t in given:
                    continue
                taken.add(j)
                given.add(t)
                seg = self.tracks[t]
                dwell[seg[self.reach[t]]] += dwell[j] + (f0 - self.frame[j])


def heading_histogram(objects: ObjectTable, foot_px: np.ndarray, window: int, bins: int,
                      breaks: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, bins) each detection's heading: where its track's footprint went over the last ``window`` frames, as an
    orientation histogram like the velocity feature's (the speed in px/frame, foot displacement over the frames it
    took, all in the sector of its angle atan2(dy, dx), 0 = right, pi/2 = down). Zeros (no heading) for the first
    detection of a track, an untracked object, or a detection with no earlier one of its track within the window.
    ``breaks`` (N,) bool: detections whose footprint is not where the object stands; the displacement never reaches
    back over one, and such a detection has no heading. Unlike the flow in the box, which mixes the swinging limbs and
    whatever else the box holds, this is where the object as a whole is going."""
    n = len(objects)
    out = np.zeros((n, int(bins)), np.float64)
    if n == 0:
        return out
    breaks = np.zeros(n, bool) if breaks is None else np.asarray(breaks, bool)
    for seg in track_segments(objects):
        f = objects.frame[seg].astype(np.float64)
        p = foot_px[seg]
        # the earliest detection within the window, not before the track's last break up to i
        j = np.searchsorted(f, f - int(window), side="left")
        last_break = np.maximum.accumulate(np.where(breaks[seg], np.arange(len(seg)), -1))
        j = np.maximum(j, last_break + 1)
        dt = f - f[np.minimum(j, len(seg) - 1)]
        ok = (j < np.arange(len(seg))) & (dt > 0) & ~breaks[seg]
        d = p - p[np.minimum(j, len(seg) - 1)]
        speed = np.where(ok, np.hypot(d[:, 0], d[:, 1]) / np.maximum(dt, 1.0), 0.0)
        ang = np.arctan2(d[:, 1], d[:, 0]) % (2 * np.pi)
        idx = np.minimum((ang * (bins / (2 * np.pi))).astype(np.int64), bins - 1)
        out[seg, idx] = speed
    return out


def log_box_shape(place: np.ndarray) -> np.ndarray:
    """(N,) float64 log of each box's width over its height in pixels (``place`` rows: its w, h are shares of the
    frame's width and height, columns 4-5 the frame's size)."""
    p = np.asarray(place, np.float64).reshape(-1, 6)
    return np.log((np.maximum(p[:, 2], 1e-6) * p[:, 4]) / (np.maximum(p[:, 3], 1e-6) * p[:, 5]))


def derived_quantities(objects: ObjectTable, features: Mapping[str, np.ndarray], height_model: np.ndarray,
                       dwell_radius: float = 0.5, dwell_still_speed: Optional[float] = None,
                       dwell_stay_edge: Optional[float] = None,
                       dwell_stay_side_edge: Optional[float] = None,
                       dwell_span: str = "past", heading_window: Optional[int] = None,
                       dwell_height: str = "expected", dwell_stay_jump: Optional[float] = None,
                       dwell_stay_gap: Optional[int] = None, dwell_stay_chain: bool = False
                       ) -> dict[str, np.ndarray]:
    """Per-object quantities the scene attributes read, keyed ``scene.<name>`` (rows aligned with objects).

    - ``scene.speed_rel`` (N, 3): the velocity feature's columns 0-2 (mean moving-pixel speed, box 90th percentile,
      fastest cell; px/frame) divided by the expected box height at the object's footprint in px: speed in body
      heights per frame, comparable across depths. NaN columns when there is no ``velocity`` feature.
    - ``scene.size`` (N, 4): log of width, height and area relative to the expected height (1 = a normal person's
      height at that place): a cart or a car is larger and wider than what normally stands there; and log of the
      box's width over its height (its shape, whatever the expected height: a cart or a bike seen from the side is
      about as wide as high, a walker about 2.5x taller than wide).
    - ``scene.dwell`` (N, 1): :func:`dwell_frames` with a radius of ``dwell_radius`` expected heights; with
      ``dwell_still_speed`` (px/frame) only the stay's detections whose box's 90th-percentile flow (the velocity
      feature's ``speed_p90``) is below it count: frames the object stayed AND was still; with ``dwell_stay_edge``
      (a fraction of the frame height) a detection whose box bottom lies within it of the bottom edge ends the stay
      (``breaks`` of :func:`dwell_frames`); with ``dwell_stay_side_edge`` (a fraction of the frame width) so does
      a detection whose box reaches within it of the left or right edge (:func:`cut_by_side`); with
      ``dwell_stay_jump`` (a factor > 1) so does a detection whose box width or height jumps by more than that factor
      from its track's previous detection (:func:`box_jumps`: a merge, a split or a track handed to another object;
      the stay begins again at that detection, ``starts`` of :func:`dwell_frames`); with ``dwell_stay_gap`` (frames)
      so does a detection that follows its track's previous one after more than that many frames (:func:`track_gaps`:
      the track was lost and may have been given to another object); with ``dwell_stay_chain`` a new track that
      begins where another was lost at most ``dwell_stay_gap`` frames before (and, with ``dwell_stay_jump``, with a
      box of about its size) goes on with that track's stay (``chain_gap`` of :func:`dwell_frames`: the same object,
      tracked again after the tracker lost it); with ``dwell_span`` "stay" each
      detection reads its whole stay, the frames after it too (``both_ways`` of :func:`dwell_frames`),
      with "past" (the default) the frames up to it; with ``dwell_height`` "own" the radius is ``dwell_radius`` x the
      object's own box height (a piece's, after :func:`carry_pieces`, its track's whole detection's) instead of the
      expected height at its footprint, with "smaller" x the smaller of the two.
    - ``scene.heading`` (N, bins), only with ``heading_window`` (frames; None = not computed, as a stream need not pay
      for it when no attribute reads it): :func:`heading_histogram` over that window (bins: the velocity feature's
      orientation bins, 8 without it), its breaks those of the stay.
    """
    n = len(objects)
    p = place_columns(features, n)
    xy = p[:, :2]
    eh = expected_height(height_model, xy)  # frame-relative
    eh_px = eh * p[:, 5]
    out: dict[str, np.ndarray] = {}
    if "velocity" in features and n:
        v = np.asarray(features["velocity"], np.float64).reshape(n, -1)[:, :3]
        out["scene.speed_rel"] = (v / eh_px[:, None]).astype(np.float32)
    else:
        out["scene.speed_rel"] = np.full((n, 3), np.nan, np.float32)
    w, h = np.maximum(p[:, 2], 1e-6), np.maximum(p[:, 3], 1e-6)
    out["scene.size"] = np.stack([np.log(w / eh), np.log(h / eh), np.log(w * h / eh ** 2), log_box_shape(p)],
                                 1).astype(np.float32)
    foot_px = np.stack([xy[:, 0] * p[:, 4], xy[:, 1] * p[:, 5]], 1)
    still = None
    if dwell_still_speed is not None:
        if "velocity" not in features:
            raise ValueError("dwell_still_speed needs the velocity feature (its speed_p90 column) to tell a still "
                             "object from a moving one: add features.extractors.velocity or set dwell_still_speed null")
        speed_p90 = np.asarray(features["velocity"], np.float64).reshape(n, -1)[:, 1] if n else np.zeros(0)
        still = speed_p90 < float(dwell_still_speed)
    breaks = None if dwell_stay_edge is None else feet_cut_off(p, dwell_stay_edge)
    if dwell_stay_side_edge is not None:
        side = cut_by_side(p, dwell_stay_side_edge)
        breaks = side if breaks is None else breaks | side
    starts = None if dwell_stay_jump is None else box_jumps(objects, p, dwell_stay_jump)
    if dwell_stay_gap is not None:
        gaps = track_gaps(objects, dwell_stay_gap)
        starts = gaps if starts is None else starts | gaps
    if dwell_span not in DWELL_SPANS:
        raise ValueError(f"dwell_span must be one of {DWELL_SPANS}, got {dwell_span!r}")
    if dwell_height not in DWELL_HEIGHTS:
        raise ValueError(f"dwell_height must be one of {DWELL_HEIGHTS}, got {dwell_height!r}")
    own_px = p[:, 3] * p[:, 5]
    body_px = {"expected": eh_px, "own": own_px, "smaller": np.minimum(eh_px, own_px)}[dwell_height]
    if dwell_stay_chain and dwell_stay_gap is None:
        raise ValueError("dwell_stay_chain needs dwell_stay_gap: the frames a lost track's stay may be taken over "
                         "after, as within a track")
    out["scene.dwell"] = dwell_frames(
        objects, foot_px, float(dwell_radius) * body_px, still, breaks, both_ways=dwell_span == "stay", starts=starts,
        chain_gap=dwell_stay_gap if dwell_stay_chain else None, chain_jump=dwell_stay_jump,
        log_size=np.log(np.maximum(p[:, 2:4], 1e-9)))[:, None].astype(np.float32)
    if heading_window is not None:
        bins = int(np.asarray(features["velocity"]).reshape(n, -1).shape[1] - 3) if "velocity" in features and n else 8
        out["scene.heading"] = heading_histogram(objects, foot_px, int(heading_window), max(bins, 1),
                                                 breaks).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------- per-place norm
def _shrunk(cell_stat: np.ndarray, counts: np.ndarray, target: np.ndarray, prior: float) -> np.ndarray:
    """Cell statistics (C, D) shrunk towards ``target`` ((D,) for all cells, or (C, D) one per cell) by
    counts / (counts + prior)."""
    w = (counts / (counts + float(prior)))[:, None]
    return w * np.nan_to_num(cell_stat) + (1 - w) * np.asarray(target)


def fit_place_norm(xy: np.ndarray, x: np.ndarray, grid: Sequence[int], mode: str, prior: float = 50.0,
                   quantile: float = 90.0, shrink_to: str = "scene") -> dict[str, np.ndarray]:
    """Per-cell reference values of each column of x (N, D) at footprints xy (N, 2).

    mode "ratio" (non-negative quantities that scale with depth, e.g. speed, dwell): u = x / ref, ref = the
    ``quantile`` of the cell's values; "standardize" (e.g. log sizes): u = (x - median) / spread, spread = the
    cell's (p90 - p10) / 2.563 (a normal's standard deviation). Cell values are shrunk towards the global ones by
    counts / (counts + prior), and every scale is at least 10% of the global one, so a sparse or static cell
    cannot blow up its objects' scores. ``shrink_to="row"``: a cell is shrunk towards its grid row's values instead
    (the row's own values shrunk towards the global ones the same way): what changes with depth in a camera's image
    changes mostly from row to row, so a sparse cell far away borrows from the far row, not from the whole scene's
    near objects. Returns {"place_loc": (C, D), "place_scale": (C, D)} float64.
    """
    if mode not in ("ratio", "standardize"):
        raise ValueError(f"by_place must be 'ratio' or 'standardize', got {mode!r}")
    if shrink_to not in ("scene", "row"):
        raise ValueError(f"place_shrink must be 'scene' or 'row', got {shrink_to!r}")
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    cells = int(grid[0]) * int(grid[1])
    idx = cell_index(xy, grid)
    ok = np.isfinite(x).all(1)
    x, idx = x[ok], idx[ok]
    d = x.shape[1]
    loc_c = np.full((cells, d), np.nan)
    scale_c = np.full((cells, d), np.nan)
    counts = np.bincount(idx, minlength=cells).astype(np.float64)

    def stats(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if mode == "ratio":
            return np.zeros(d), np.percentile(v, quantile, axis=0)
        q10, q50, q90 = np.percentile(v, [10, 50, 90], axis=0)
        return q50, (q90 - q10) / 2.563

    if len(x) == 0:
        raise ValueError("no finite training values for a per-place model")
    g_loc, g_scale = stats(x)
    g_scale = np.where(g_scale > 0, g_scale, np.maximum(np.abs(x).max(0), 1e-6))
    for c in np.flatnonzero(counts):
        loc_c[c], scale_c[c] = stats(x[idx == c])
    if shrink_to == "row":
        rows, cols = int(grid[0]), int(grid[1])
        row_of = idx // cols
        row_counts = np.bincount(row_of, minlength=rows).astype(np.float64)
        loc_r, scale_r = np.full((rows, d), np.nan), np.full((rows, d), np.nan)
        for r in np.flatnonzero(row_counts):
            loc_r[r], scale_r[r] = stats(x[row_of == r])
        cell_row = np.arange(cells) // cols
        loc_target = _shrunk(loc_r, row_counts, g_loc, prior)[cell_row]
        scale_target = _shrunk(scale_r, row_counts, g_scale, prior)[cell_row]
    else:
        loc_target, scale_target = g_loc, g_scale
    loc = _shrunk(loc_c, counts, loc_target, prior)
    scale = np.maximum(_shrunk(scale_c, counts, scale_target, prior), 0.1 * g_scale[None, :])
    return {"place_loc": loc, "place_scale": scale}


def apply_place_norm(xy: np.ndarray, x: np.ndarray, model: Mapping[str, np.ndarray],
                     grid: Sequence[int]) -> np.ndarray:
    """x (N, D) normalised by the reference values of each row's cell (see :func:`fit_place_norm`)."""
    idx = cell_index(xy, grid)
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return (x - model["place_loc"][idx]) / model["place_scale"][idx]


# ---------------------------------------------------------------------------------------------- occupancy
def fit_occupancy(xy: np.ndarray, grid: Sequence[int], sigma: float = 1.0) -> np.ndarray:
    """(rows, cols) log-probability of a footprint falling in each cell: a histogram of the training footprints,
    Gaussian-blurred by ``sigma`` cells (paths are continuous; a cell beside a path is not as odd as a far one),
    with half a pseudo-count spread over the frame so no place is impossible."""
    from scipy.ndimage import gaussian_filter

    rows, cols = int(grid[0]), int(grid[1])
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(1)]
    hist = np.bincount(cell_index(xy, grid), minlength=rows * cols).astype(np.float64).reshape(rows, cols)
    if sigma > 0:
        hist = gaussian_filter(hist, float(sigma), mode="nearest")
    hist += 0.5 / (rows * cols)
    return np.log(hist / hist.sum())


def fit_occupancy_perspective(xy: np.ndarray, grid: Sequence[int], height_model: np.ndarray, sigma_heights: float,
                              aspect: float, max_points: int = 5000, seed: int = 0) -> np.ndarray:
    """(rows, cols) log-probability of a footprint falling in each cell, like :func:`fit_occupancy`, but every
    training footprint spreads as a Gaussian of ``sigma_heights`` expected body heights AT THAT FOOTPRINT
    (:func:`expected_height`) instead of a fixed number of cells: a step of one body height beside a path is as odd
    near the camera, where it is many pixels, as far away, where it is few. Each footprint's mass (1) is spread over
    the cells by its kernel evaluated at the cell centres; half a pseudo-count is spread over the frame.
    xy: frame-relative footprints (N, 2); aspect: frame width / height (distances are measured in frame heights);
    at most ``max_points`` footprints are used (a seeded random subset)."""
    rows, cols = int(grid[0]), int(grid[1])
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(1)]
    if len(xy) > max_points:
        xy = xy[np.random.default_rng(seed).choice(len(xy), max_points, replace=False)]
    cy, cx = np.meshgrid((np.arange(rows) + 0.5) / rows, (np.arange(cols) + 0.5) / cols, indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel()], 1)
    hist = np.zeros(rows * cols)
    sigma = np.maximum(float(sigma_heights) * expected_height(height_model, xy), 1e-4)  # in frame heights
    for start in range(0, len(xy), 1024):
        p, s = xy[start:start + 1024], sigma[start:start + 1024]
        d2 = ((centres[None, :, 0] - p[:, None, 0]) * aspect) ** 2 + (centres[None, :, 1] - p[:, None, 1]) ** 2
        k = np.exp(-0.5 * d2 / (s[:, None] ** 2))
        nearest = np.argmin(d2, axis=1)  # a kernel narrower than a cell keeps its mass in the nearest cell
        k[np.arange(len(p)), nearest] += 1e-12
        hist += (k / k.sum(axis=1, keepdims=True)).sum(axis=0)
    hist = hist.reshape(rows, cols) + 0.5 / (rows * cols)
    return np.log(hist / hist.sum())


def occupancy_score(xy: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """(N,) -log probability of each footprint's cell (higher = where normal objects rarely are)."""
    rows, cols = logp.shape
    return -logp.reshape(-1)[cell_index(xy, (rows, cols))]


# ---------------------------------------------------------------------------------------------- direction
def _direction_weights(hist: np.ndarray, min_speed: float) -> tuple[np.ndarray, np.ndarray]:
    """Each object's direction distribution (rows of the orientation histogram, normalised) and whether it moves
    enough (summed histogram, i.e. mean moving speed, >= min_speed px/frame) for a direction to mean anything."""
    hist = np.nan_to_num(np.asarray(hist, np.float64).reshape(len(hist), -1))
    total = hist.sum(1)
    moving = total >= float(min_speed)
    q = hist / np.maximum(total, 1e-12)[:, None]
    return q, moving


def fit_direction(xy: np.ndarray, hist: np.ndarray, grid: Sequence[int], prior: float = 20.0,
                  min_speed: float = 0.5) -> np.ndarray:
    """(cells, bins) log-probability of each motion direction per place.

    Per cell: the summed direction distributions of its moving training objects, plus ``prior`` pseudo-objects
    distributed like the whole scene (a sparse cell falls back to the scene's directions), plus 2% uniform (no
    direction is impossible). hist: the velocity feature's orientation histogram (N, bins).
    """
    q, moving = _direction_weights(hist, min_speed)
    bins = q.shape[1]
    cells = int(grid[0]) * int(grid[1])
    idx = cell_index(xy, grid)[moving]
    q = q[moving]
    glob = q.sum(0) + 1.0
    glob /= glob.sum()
    counts = np.zeros((cells, bins))
    np.add.at(counts, idx, q)
    n = counts.sum(1, keepdims=True)
    p = (counts + float(prior) * glob[None, :]) / (n + float(prior))
    p = 0.98 * p + 0.02 / bins
    return np.log(p)


def coherent_directions(q: np.ndarray, place_p: np.ndarray) -> np.ndarray:
    """(N, bins) each object's direction distribution q (rows sum to 1; bin j = angles [j, j + 1) * 2 pi / bins) read
    by its coherence: R * (its mean direction, split between the two nearest bin centres) + (1 - R) * place_p (N, bins),
    R = the length of the mean of the bins' unit vectors weighted by q (1: every moving pixel goes one way; near 0:
    they go every way, as when an object grows or shrinks in the picture walking towards or away from the camera).
    An object whose pixels agree on no direction reads as its place's usual mix: it has no direction to be wrong
    about."""
    q = np.asarray(q, np.float64)
    bins = q.shape[1]
    centres = (np.arange(bins) + 0.5) * 2 * np.pi / bins
    r = q @ np.stack([np.cos(centres), np.sin(centres)], 1)
    length = np.clip(np.hypot(r[:, 0], r[:, 1]), 0.0, 1.0)
    pos = (np.arctan2(r[:, 1], r[:, 0]) % (2 * np.pi)) * bins / (2 * np.pi) - 0.5  # in bin-centre units
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    mean_dir = np.zeros_like(q)
    rows = np.arange(len(q))
    np.add.at(mean_dir, (rows, lo % bins), 1.0 - frac)
    np.add.at(mean_dir, (rows, (lo + 1) % bins), frac)
    return length[:, None] * mean_dir + (1.0 - length[:, None]) * np.asarray(place_p, np.float64)


def direction_score(xy: np.ndarray, hist: np.ndarray, logp: np.ndarray, grid: Sequence[int],
                    min_speed: float = 0.5, coherence: bool = False) -> np.ndarray:
    """(N,) cross-entropy of each object's direction distribution against its place's (NaN when it hardly
    moves: a standing object has no direction to be wrong about). ``coherence``: the object's distribution read by
    :func:`coherent_directions` first."""
    q, moving = _direction_weights(hist, min_speed)
    if q.shape[1] != logp.shape[1]:
        raise ValueError(f"direction model has {logp.shape[1]} orientation bins, the feature has {q.shape[1]}")
    idx = cell_index(xy, grid)
    if coherence and len(q):
        q = coherent_directions(q, np.exp(logp[idx]))
    out = -(q * logp[idx]).sum(1)
    out[~moving] = np.nan
    return out


# ---------------------------------------------------------------------------------------------- the clip's others
def track_keys(track: np.ndarray) -> np.ndarray:
    """(N,) int64 key of each object's track; an untracked object (track id < 0) is a track of its own."""
    track = np.asarray(track, np.int64)
    return np.where(track >= 0, track, -(np.arange(len(track), dtype=np.int64) + 2))


def others_by_key(cells: np.ndarray, values: np.ndarray, keys: np.ndarray, num_cells: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The summed ``values`` (N, D) per cell of every object but those of each object's own track.

    Returns (others (K, num_cells, D) summed values of every object NOT of track key k, inverse (N,) row of each
    object's key). cells: (N,) cell of each object; keys: (N,) track key (:func:`track_keys`)."""
    values = np.asarray(values, np.float64).reshape(len(cells), -1)
    uniq, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    own = np.zeros((len(uniq), num_cells, values.shape[1]))
    np.add.at(own, (inverse, cells), values)
    return own.sum(0, keepdims=True) - own, inverse


def occupancy_score_with_clip(xy: np.ndarray, logp: np.ndarray, sigma: float, clip_prior: float,
                              track: np.ndarray) -> np.ndarray:
    """(N,) -log probability of each footprint's cell under the training occupancy mixed with the footprints of
    the clip's other tracks: ``p = (clip_prior * p_train + h_others) / (clip_prior + n_others)``, ``h_others`` the
    others' histogram blurred like the training one (``sigma`` cells). One clip's objects; track: (N,) ids."""
    from scipy.ndimage import gaussian_filter

    rows, cols = logp.shape
    n = len(xy)
    if n == 0:
        return np.zeros(0)
    cells = cell_index(xy, (rows, cols))
    others, inverse = others_by_key(cells, np.ones(n), track_keys(track), rows * cols)
    hist = others[:, :, 0].reshape(-1, rows, cols)
    if sigma > 0:
        hist = gaussian_filter(hist, (0.0, float(sigma), float(sigma)), mode="nearest")
    hist = hist.reshape(len(hist), -1)
    mass = hist.sum(1)  # = n_others (the blur keeps the mass up to its edge handling)
    p_train = np.exp(logp.reshape(-1))[cells]
    h = hist[inverse, cells]
    prior = float(clip_prior)
    return -np.log((prior * p_train + h) / (prior + mass[inverse]))


def direction_score_with_clip(xy: np.ndarray, hist: np.ndarray, logp: np.ndarray, grid: Sequence[int],
                              min_speed: float, clip_prior: float, track: np.ndarray) -> np.ndarray:
    """(N,) :func:`direction_score` against each place's training directions mixed with the directions of the
    clip's other moving tracks there: per cell ``p = (w * p_train + c_others) / (w + n_others)``, ``w =
    clip_prior / cells`` (the training model counts as ``clip_prior`` objects spread over the cells). One clip."""
    q, moving = _direction_weights(hist, min_speed)
    if q.shape[1] != logp.shape[1]:
        raise ValueError(f"direction model has {logp.shape[1]} orientation bins, the feature has {q.shape[1]}")
    n = len(q)
    out = np.full(n, np.nan)
    if n == 0 or not moving.any():
        return out
    cells = cell_index(xy, grid)
    num_cells = int(grid[0]) * int(grid[1])
    counted = np.where(moving[:, None], q, 0.0)  # objects that hardly move add no direction
    others, inverse = others_by_key(cells, np.concatenate([counted, moving[:, None].astype(np.float64)], 1),
                                    track_keys(track), num_cells)
    rows = others[inverse, cells]  # (N, bins + 1): the others' directions in each object's cell, and their count
    w = float(clip_prior) / num_cells
    p = (w * np.exp(logp[cells]) + rows[:, :-1]) / (w + rows[:, -1:])
    out[moving] = -(q[moving] * np.log(p[moving])).sum(1)
    return out
