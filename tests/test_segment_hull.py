"""Convex-hull masks of the classical segmenter (``segmenter.hull``): the hull against an independent geometric
computation, blobs kept apart per component, and the segmenter's masks on a clip whose object the foreground sees in
two parts."""
import numpy as np
import pytest
from scipy.spatial import ConvexHull, Delaunay

from helpers import ArrayClip
from tao_lab.segmenter import ForegroundSegmenter
from tao_lab.segmenter.classical import convex_hulls
from tao_lab.types import ObjectScores, ObjectTable, Prompts


def _distance_outside(points: np.ndarray, hull_points: np.ndarray) -> np.ndarray:
    """Distance of each point to the convex hull of hull_points (0 inside), from the hull's facet equations."""
    eq = ConvexHull(hull_points).equations  # n . x + d <= 0 inside, |n| = 1
    return np.clip((points @ eq[:, :2].T + eq[:, 2]).max(1), 0, None)


@pytest.mark.parametrize("seed", range(5))
def test_object_hull_matches_the_geometric_hull_of_the_pixel_centres(seed):
    """Every pixel whose centre lies inside the hull of the mask's pixel centres (by more than half a pixel) is in the
    output, no output pixel lies more than a pixel from that hull, and the mask itself is kept."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 50), bool)
    for _ in range(4):
        y, x = rng.integers(2, 36), rng.integers(2, 46)
        mask[y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = True
    out = convex_hulls(mask, per_component=False)
    ys, xs = np.mgrid[:40, :50]
    centres = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    pts = np.argwhere(mask)[:, ::-1].astype(float)
    dist = _distance_outside(centres, pts).reshape(40, 50)
    inside = Delaunay(pts).find_simplex(centres).reshape(40, 50) >= 0
    deep = inside & (dist == 0)
    # strictly inside: every facet at least half a pixel away
    eq = ConvexHull(pts).equations
    margin = (-(centres @ eq[:, :2].T + eq[:, 2])).min(1).reshape(40, 50)
    assert out[deep & (margin > 0.5)].all()
    assert dist[out].max() <= 1.0
    assert out[mask].all()


def test_component_hulls_fill_each_blob_and_keep_blobs_apart():
    """Two L-shaped blobs 6 px apart: each becomes the triangle-ish hull of its L (its concave corner filled), no pixel
    between them is set; the object hull fills the space between them."""
    mask = np.zeros((30, 40), bool)
    mask[5:20, 5:8] = True
    mask[17:20, 5:15] = True  # L 1: x 5..14, y 5..19
    mask[5:20, 21:24] = True
    mask[17:20, 21:31] = True  # L 2: x 21..30
    comp = convex_hulls(mask, per_component=True)
    assert not comp[:, 15:21].any()  # the gap stays empty
    assert comp[15, 10] and not mask[15, 10]  # inside L 1's hull, missed by the foreground
    assert not comp[6, 13]  # outside L 1's hull (above its diagonal)
    whole = convex_hulls(mask, per_component=False)
    assert whole[18, 15:21].all() and whole.sum() > comp.sum()
    assert np.array_equal(convex_hulls(np.zeros((5, 5), bool), True), np.zeros((5, 5), bool))


def _ring_clip(T=16, H=80, W=200):
    """A bright ring (outer radius 14, inner 8) on a flat background, moving right 8 px per frame (each pixel is
    covered on a few frames only, so the clip's median background is clean): the foreground is the ring; the
    ring's convex hull is the disc."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:H, :W]
    frames, discs, boxes = [], [], []
    for t in range(T):
        cx, cy = 30 + 8 * t, 40
        r2 = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2
        ring = (r2 <= 14 ** 2) & (r2 > 8 ** 2)
        f = np.full((H, W, 3), 60.0) + rng.normal(0, 2, (H, W, 3))
        f[ring] = 220
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
        discs.append(r2 <= 14 ** 2)
        boxes.append([cx - 14, cy - 14, cx + 14, cy + 14])
    return ArrayClip(np.stack(frames)), np.stack(discs), np.asarray(boxes, float)


@pytest.mark.parametrize("hull", ["component", "object"])
def test_hull_masks_cover_the_outlined_object_and_stay_in_the_enlarged_box(hull):
    """A ring whose centre is background, segmented with fill_holes off (standing in for an object whose foreground
    is open, e.g. a rider and a bike frame): the plain mask is the ring; with hull masks the whole disc is covered
    (recall > 99 % against < 80 %; the foreground is a pixel wider than the ring, so IoU says less), hull pixels the
    foreground missed score at the floor (0.25 x the object score), and no mask pixel leaves the box enlarged by
    box_margin (0.1 x 28 px per side)."""
    clip, discs, boxes = _ring_clip()
    T = len(boxes)
    objects = ObjectTable.build(np.arange(T), boxes, np.full(T, 2.0), np.zeros(T))
    scores = ObjectScores(objects, np.full(T, 2.0, np.float32))
    prompts = Prompts(np.arange(T), np.ones(T, int), boxes, [[0, 0]] * T, np.full(T, 2.0))
    kwargs = dict(fill_holes=False, box_score=0.0, background={"scope": "clip"})
    plain = ForegroundSegmenter(**kwargs).segment(clip, prompts, scores)
    hulled = ForegroundSegmenter(hull=hull, **kwargs).segment(clip, prompts, scores)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    for t in range(T):
        p, h = plain.instance_maps[t] == 1, hulled.instance_maps[t] == 1
        recall_h, recall_p = (h & discs[t]).sum() / discs[t].sum(), (p & discs[t]).sum() / discs[t].sum()
        assert recall_h > 0.99 and recall_p < 0.8, (t, recall_h, recall_p)
        assert iou(h, discs[t]) > iou(p, discs[t]) + 0.1
        added = h & ~p
        assert added.sum() > 100
        assert np.allclose(hulled.score_maps[t][added & (np.abs(np.arange(200)[None] - (30 + 8 * t)) < 4)
                                                & (np.abs(np.arange(80)[:, None] - 40) < 4)], 0.25 * 2.0, atol=0.05)
        x1, y1, x2, y2 = boxes[t]
        ys, xs = np.nonzero(h)
        assert xs.min() >= np.floor(x1 - 2.8) and xs.max() < np.ceil(x2 + 2.8)
        assert ys.min() >= np.floor(y1 - 2.8) and ys.max() < np.ceil(y2 + 2.8)


def test_unknown_hull_is_refused():
    with pytest.raises(ValueError, match="hull"):
        ForegroundSegmenter(hull="concave")
