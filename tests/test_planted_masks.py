"""benchmarks/planted_masks.py and PlantedClip.object_mask: the planted object's pixels are where it was pasted,
the prompts are the boxes around them, and the metrics of a segmenter that returns exactly those pixels (or filled
boxes) are the known answers."""

import numpy as np
import pytest
from helpers import ArrayClip, load_benchmark

from tao_lab.segmenter import FilledBoxSegmenter
from tao_lab.types import ObjectTable, Segmentation
from tao_lab.validation.planted import PlantedClip

H, W, T = 40, 60, 5
bench = load_benchmark("planted_masks")


def planted_disc():
    """A 10x10 sprite whose alpha is a disc of radius 4 (a non-rectangular object), pasted at integer positions on
    frames 1-3 (frame 2 at scale 2), absent on frames 0 and 4."""
    base = ArrayClip(np.full((T, H, W, 3), 90, np.uint8), "base")
    yy, xx = np.mgrid[0:10, 0:10]
    alpha = (((yy - 4.5) ** 2 + (xx - 4.5) ** 2) <= 16).astype(np.float32)
    sprite = np.full((10, 10, 3), 200, np.uint8)
    top_left = np.array([[np.nan, np.nan], [5, 5], [20, 10], [40, 25], [np.nan, np.nan]], float)
    scale = np.array([1, 1, 2, 1, 1], float)
    return PlantedClip(base, sprite, alpha, top_left, "disc", scale=scale), alpha


def test_object_mask_is_the_pasted_alpha_and_the_pasted_pixels():
    clip, alpha = planted_disc()
    assert not clip.object_mask(0).any() and not clip.object_mask(4).any()
    expected = np.zeros((H, W), bool)
    expected[5:15, 5:15] = alpha > 0.5
    assert np.array_equal(clip.object_mask(1), expected)
    # the mask covers exactly the pixels the paste changed (sprite 200 on a flat 90 background, alpha 0/1 at scale 1)
    assert np.array_equal(clip.frame(1)[..., 0] != 90, expected)
    big = clip.object_mask(2)  # scale 2 about the top-left corner: about 4x the area, inside [20, 40) x [10, 30)
    assert 3.5 * alpha.sum() < big.sum() < 4.5 * alpha.sum()
    ys, xs = np.nonzero(big)
    assert xs.min() >= 20 and xs.max() < 40 and ys.min() >= 10 and ys.max() < 30


def test_plant_prompts_box_the_pixels_on_visible_frames_only():
    clip, _ = planted_disc()
    prompts, masks = bench.plant_prompts(clip, min_area=20)
    assert list(prompts.frame) == [1, 2, 3] and sorted(masks) == [1, 2, 3]
    assert np.all(prompts.obj_id == 1) and np.all(prompts.score == 1)
    for f, box in zip(prompts.frame, prompts.xyxy):
        ys, xs = np.nonzero(masks[int(f)])
        assert list(box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # a min_area above the disc's area keeps only the frame where it is pasted at scale 2
    prompts, masks = bench.plant_prompts(clip, min_area=int(planted_disc()[1].sum()) + 1)
    assert list(prompts.frame) == [2]


class ExactSegmenter:
    """Returns the planted object's own pixels on every prompted frame: every mask metric is 1."""

    def segment(self, clip, prompts, carry):
        maps = np.zeros((clip.num_frames, H, W), np.int32)
        for f in prompts.frame:
            maps[f] = clip.object_mask(int(f))
        return Segmentation(maps.astype(np.float16), ObjectTable.empty(), maps)


def test_measure_gives_known_answers():
    clip, alpha = planted_disc()
    exact = bench.measure(ExactSegmenter(), [clip, None])
    assert exact["frames"] == 3
    for key in ("mask_iou", "mask_iou_pooled", "mask_precision", "mask_recall", "boundary_f1", "pixel_ap",
                "pixel_f1_max"):
        assert exact[key] == pytest.approx(1.0), key
    # filled boxes: recall 1, precision = object pixels / box pixels, pooled over the three frames
    boxes = bench.measure(FilledBoxSegmenter(), [clip])
    _, masks = bench.plant_prompts(clip)
    obj = sum(int(m.sum()) for m in masks.values())
    box = 0
    for m in masks.values():
        ys, xs = np.nonzero(m)
        box += (xs.max() + 1 - xs.min()) * (ys.max() + 1 - ys.min())
    assert boxes["mask_recall"] == pytest.approx(1.0)
    assert boxes["mask_precision"] == pytest.approx(obj / box)
    assert boxes["mask_iou_pooled"] == pytest.approx(obj / box)
    per_set = {"a": exact, "b": boxes, "c": {"frames": 0}}
    fig = bench.figure(per_set, ["a", "b", "c"])
    assert fig == pytest.approx(100 * np.mean([1.0, np.mean([boxes[k] for k in bench.FIGURE_KEYS])]))


def test_example_grid_draws_one_cell_per_set_and_variant(tmp_path):
    """--figure: measure() keeps the middle prompted frame of the first clip; the grid has a row per set and a column
    per variant, with the mask in red and the pasted pixels' outline in green."""
    import cv2

    clip, _ = planted_disc()
    examples = {"a": {}, "b": {}}
    for s in examples:
        for name, seg in (("exact", ExactSegmenter()), ("boxes", FilledBoxSegmenter())):
            bench.measure(seg, [clip], example=examples[s].setdefault(name, {}))
    assert examples["a"]["exact"]["title"] == "base frame 2"  # frames 1-3 prompted: the middle one
    assert np.array_equal(examples["a"]["exact"]["mask"], clip.object_mask(2))
    path = tmp_path / "grid.png"
    bench.example_grid(examples, str(path), zoom=1)
    image = cv2.imread(str(path))[..., ::-1]
    cell_h, cell_w = image.shape[0] // 2, image.shape[1] // 2
    assert image.shape[0] == 2 * cell_h and image.shape[1] == 2 * cell_w
    reddish = (image[..., 0] > image[..., 1] + 40) & (image[..., 0] > image[..., 2] + 40)
    green = (image[..., 1] == 255) & (image[..., 0] == 0)
    for r in range(2):
        for c in range(2):
            cell = (slice(r * cell_h, (r + 1) * cell_h), slice(c * cell_w, (c + 1) * cell_w))
            assert reddish[cell].any() and green[cell].any()


def test_benchmark_options_and_overrides_are_told_apart(capsys):
    """The benchmarks' shared parser: --options are theirs, key=value are Hydra overrides, an unknown --option stops
    with a message naming it."""
    import argparse

    from tao_lab.config import parse_with_overrides

    ap = argparse.ArgumentParser()
    ap.add_argument("--num-clips", type=int, default=16)
    args, extra = parse_with_overrides(ap, ["--num-clips", "3", "segmenter.background.scope=clip"])
    assert args.num_clips == 3 and extra == ["segmenter.background.scope=clip"]
    with pytest.raises(SystemExit):
        parse_with_overrides(ap, ["--frames", "3"], "segmenter.background.scope=clip")
    assert "unknown option(s) ['--frames']" in capsys.readouterr().err


def test_hull_ground_truth_is_one_polygon_around_the_whole_object():
    """A U-shaped object (two legs joined at the top, the gap between them open at the bottom): its convex hull is
    its whole bounding rectangle, the gap included, as an annotator's polygon would be; the pasted pixels are not.
    plant_prompts with gt="hull" boxes the same pixels and returns the hulls."""
    base = ArrayClip(np.full((T, H, W, 3), 90, np.uint8), "base")
    alpha = np.zeros((12, 8), np.float32)
    alpha[:3, :] = 1.0        # the top bar
    alpha[:, :2] = 1.0        # left leg
    alpha[:, 6:] = 1.0        # right leg: the gap is columns 2-5 of rows 3-11
    top_left = np.array([[np.nan, np.nan], [10, 5], [30, 20], [np.nan, np.nan], [np.nan, np.nan]], float)
    clip = PlantedClip(base, np.full((12, 8, 3), 200, np.uint8), alpha, top_left, "u")
    pasted, hull = clip.object_mask(1), clip.object_mask(1, "hull")
    box = np.zeros((H, W), bool)
    box[5:17, 10:18] = True
    assert np.array_equal(hull, box)
    assert pasted.sum() == alpha.sum() == 12 * 8 - 9 * 4 and np.all(hull[pasted])
    assert not clip.object_mask(0, "hull").any()
    with pytest.raises(ValueError, match="ground-truth shape must be one of"):
        clip.object_mask(1, "polygon")
    prompts_p, masks_p = bench.plant_prompts(clip, min_area=20)
    prompts_h, masks_h = bench.plant_prompts(clip, min_area=20, gt="hull")
    assert np.array_equal(prompts_p.xyxy, prompts_h.xyxy) and sorted(masks_h) == [1, 2]
    assert np.array_equal(masks_h[1], hull) and np.array_equal(masks_p[1], pasted)


def test_occlusion_hides_the_plant_behind_nearer_objects_only():
    """occlusion: a planted object is pasted behind the base clip's objects whose lowest row is below its own (nearer
    the camera) and over the ones above it (farther). Base: a flat ground (90) and two still people-boxes (30) shown
    on frames 2-4 only, so the clip's median background is the ground: a near one (rows 20-39, lowest row 39) and a
    far one (rows 2-11, lowest row 11). The planted 20x20 block (rows 8-27, columns 15-34) overlaps both: the near
    one hides it (where its mask, grown by 1 px, lies), it covers the far one, and its ground truth is what stays
    visible. Without occlusion (every caller before session 60) it covers both. The two clips have different
    sources (cache keys)."""
    frames = np.full((8, H, W, 3), 90, np.uint8)
    frames[2:5, 20:40, 20:30] = 30  # near object
    frames[2:5, 2:12, 24:34] = 30  # far object
    base = ArrayClip(frames, "base")
    sprite = np.full((20, 20, 3), 200, np.uint8)
    alpha = np.ones((20, 20), np.float32)
    top_left = np.tile([[15.0, 8.0]], (8, 1))
    behind = PlantedClip(base, sprite, alpha, top_left, "block", occlusion=True)
    over = PlantedClip(base, sprite, alpha, top_left, "block")
    assert behind.source != over.source and behind.occlusion and not over.occlusion
    block = np.zeros((H, W), bool)
    block[8:28, 15:35] = True
    near = np.zeros((H, W), bool)
    near[19:40, 19:31] = True  # the near object's mask grown by 1 px
    np.testing.assert_array_equal(behind.object_mask(3), block & ~near)
    frame = behind.frame(3)[..., 0]
    assert (frame[block & ~near] == 200).all()  # pasted where visible, over the far object too
    assert (frame[20:28, 20:30] == 30).all()  # the near object in front
    assert (frame[19, 19:31] == 90).all()  # its grown rim: the ground, not the plant
    np.testing.assert_array_equal(behind.object_mask(0), block)  # no people on frame 0: nothing hides it
    np.testing.assert_array_equal(over.object_mask(3), block)
    assert (over.frame(3)[..., 0][block] == 200).all()
