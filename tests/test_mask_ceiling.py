"""benchmarks/mask_ceiling.py: the oracle inputs are what they claim, every oracle row and key is marked, the
label-free row equals eval's numbers, and the boxes segmenter fed oracle prompts reaches the known mask IoU."""

import numpy as np
import pytest
from helpers import TINY_SYNTHETIC, ArrayClip, compose, load_benchmark

from tao_lab.metrics import MaskAgreement, tracks_from_masks
from tao_lab.segmenter import FilledBoxSegmenter
from tao_lab.types import ClipGT, ObjectScores, ObjectTable

bench = load_benchmark("mask_ceiling")

H, W, T = 48, 64, 6


def rect(y1, x1, y2, x2):
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


def clip_with_masks(masks):
    """A clip whose GT masks are ``masks`` (T, H, W) (frame content does not matter to the boxes segmenter)."""
    frames = np.full((len(masks), H, W, 3), 100, np.uint8)
    clip = ArrayClip(frames, "rects")
    clip.gt = ClipGT(frame_labels=masks.any(axis=(1, 2)), mask=lambda i: masks[i])
    return clip


def two_rectangles():
    """Frames 1..4: a 10x8 rectangle moving 3 px/frame and a fixed 12x12 one; frames 0 and 5 normal."""
    masks = np.zeros((T, H, W), bool)
    for t in range(1, 5):
        masks[t] |= rect(5, 4 + 3 * t, 15, 12 + 3 * t)
        masks[t] |= rect(30, 40, 42, 52)
    return masks


def test_oracle_prompts_are_the_gt_components_boxes():
    masks = two_rectangles()
    prompts = bench.oracle_prompts(tracks_from_masks(list(masks)))
    assert prompts.frame.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]  # every GT frame, nothing on normal frames
    # ids stable over frames (track id + 1), boxes exactly the rectangles' (x2/y2 exclusive), one score for all
    moving = prompts.obj_id == prompts.obj_id[prompts.xyxy[:, 1] == 5][0]
    assert sorted(set(prompts.obj_id.tolist())) == [1, 2]
    np.testing.assert_array_equal(prompts.xyxy[moving], [[4 + 3 * t, 5, 12 + 3 * t, 15] for t in range(1, 5)])
    np.testing.assert_array_equal(prompts.xyxy[~moving], [[40, 30, 52, 42]] * 4)
    np.testing.assert_array_equal(prompts.point[~moving], [[46, 36]] * 4)
    assert (prompts.score == 1.0).all()


def test_boxes_segmenter_with_oracle_prompts_reaches_the_known_iou():
    # rectangles: the filled box is the object: IoU 1 and boundary F1 1 on every GT frame, no mask elsewhere
    masks = two_rectangles()
    clip = clip_with_masks(masks)
    seg = FilledBoxSegmenter().segment(clip, bench.oracle_prompts(tracks_from_masks(list(masks))), None)
    acc = MaskAgreement(tolerance=0)
    for t in range(T):
        acc.update(seg.instance_maps[t] > 0, masks[t])
    out = acc.compute()
    assert out["mask_iou"] == 1.0 and out["mask_iou_pooled"] == 1.0 and out["boundary_f1"] == 1.0
    # an L shape (a 10x10 square without its 5x5 corner): the filled box has IoU 75 / 100
    L = rect(10, 10, 20, 20) & ~rect(10, 15, 15, 20)
    l_masks = np.stack([L] * 3)
    seg = FilledBoxSegmenter().segment(clip_with_masks(l_masks),
                                       bench.oracle_prompts(tracks_from_masks(list(l_masks))), None)
    acc = MaskAgreement()
    for t in range(3):
        acc.update(seg.instance_maps[t] > 0, l_masks[t])
    assert acc.compute()["mask_iou"] == pytest.approx(0.75)
    assert acc.compute()["mask_precision"] == pytest.approx(0.75) and acc.compute()["mask_recall"] == 1.0


def test_oracle_scores_flag_exactly_the_objects_on_gt_objects():
    gt = ObjectTable.build([1, 1, 2], [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], track_id=[0, 1, 0])
    objects = ObjectTable.build(
        [0, 1, 1, 1, 2],
        [[0, 0, 10, 10],      # frame 0 has no GT object -> 0
         [0, 0, 10, 10],      # IoU 1 -> 1
         [40, 40, 50, 50],    # no overlap -> 0
         [25, 20, 35, 30],    # IoU 50 / 150 = 0.33 with the second GT box -> 1
         [9, 9, 19, 19]],     # IoU 1 / 199 < 0.1 -> 0
        score=[5, 0.1, 5, 0.2, 5], track_id=[1, 1, 2, 3, 1])
    out = bench.oracle_object_scores(ObjectScores(objects, np.full(3, 9.0, np.float32)), gt)
    assert out.objects.score.tolist() == [0, 1, 0, 1, 0]
    assert out.frame_scores.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(out.objects.xyxy, objects.xyxy)  # same detections, only the scores change
    assert bench.oracle_flags(objects, gt, min_iou=0.4).tolist() == [False, True, False, False, False]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """The benchmark's rows on the tiny synthetic dataset (exact masks), and eval's metrics of the same pipeline."""
    from tao_lab.evaluation import evaluate_clips
    from tao_lab.pipeline import Pipeline, load_dataset

    tmp = tmp_path_factory.mktemp("ceiling")
    cfg = compose("eval", [*TINY_SYNTHETIC, "workers=1"], tmp)
    dataset = load_dataset(cfg)
    pipe = Pipeline(cfg)
    pipe.fit_scorer(dataset.train)
    segmenters = {"default": pipe.segmenter, "boxes": FilledBoxSegmenter()}  # eval's own segmenter
    rows = bench.measure(pipe, dataset.test, segmenters)
    gated_cfg = compose("eval", [*TINY_SYNTHETIC, "workers=1", "+metrics.gt_gating=true"], tmp)
    gated = Pipeline(gated_cfg)
    gated.fit_scorer(dataset.train)
    return rows, evaluate_clips(pipe, dataset.test, cfg).metrics, evaluate_clips(gated, dataset.test, gated_cfg).metrics


def test_every_oracle_row_and_key_is_marked(synthetic_run):
    rows = synthetic_run[0]
    assert [(r["segmenter"], r["oracle"]) for r in rows] == [
        (s, o) for s in ("default", "boxes") for o in ("none", "frame_labels", "scores", "prompts")]
    for r in rows:
        assert r["reads_test_labels"] == (r["oracle"] != "none")
        # rows whose objects all tie count a tied group as one operating point (order-independent RBDC/TBDC)
        assert r["metrics"]["object_group_ties"] == float(r["oracle"] in ("scores", "prompts"))
        assert r["prefix"].startswith("oracle_") == r["reads_test_labels"]
    keys = bench.flat_keys(rows)
    assert "oracle_prompts/boxes/mask_iou" in keys and "oracle_scores/default/pixel_ap" in keys
    assert "oracle_frame_labels/default/object_rbdc" in keys and "system/default/boundary_f1" in keys
    assert all(k.split("/", 1)[0] in ("system", "oracle_prompts", "oracle_scores", "oracle_frame_labels")
               for k in keys)
    text = bench.table(rows, "synthetic")
    assert "TEST LABELS" in text
    marked = [line for line in text.splitlines() if "**ORACLE**" in line]
    assert len(marked) == 6 and not any("| none |" in line for line in marked)


def test_label_free_and_gated_rows_equal_eval(synthetic_run):
    """The label-free row is eval.py's run, the frame_labels row eval.py's with metrics.gt_gating=true."""
    rows, metrics, gated = synthetic_run
    keys = ("pixel_auroc", "pixel_ap", "pixel_aupro@0.3", "pixel_f1_max", "pixel_ap_tao", "pixel_f1_tao",
            "pixel_aupro_tao", "object_rbdc", "object_tbdc")
    row = next(r for r in rows if r["segmenter"] == "default" and r["oracle"] == "none")["metrics"]
    for key in keys:
        assert row[key] == pytest.approx(metrics[f"test/{key}"], abs=1e-12), key
    row = next(r for r in rows if r["segmenter"] == "default" and r["oracle"] == "frame_labels")["metrics"]
    for key in keys:
        assert row[key] == pytest.approx(gated[f"test/{key}_gtgated"], abs=1e-12), key
    assert row["pixel_ap"] != metrics["test/pixel_ap"]  # the gating changes something on these clips


def test_oracle_prompts_beat_the_system_on_exact_synthetic_masks(synthetic_run):
    """With perfect boxes both segmenters reach a higher mask IoU than with the system's prompts (the synthetic
    clips' masks are exact), and the filled GT boxes cover every GT pixel."""
    rows = synthetic_run[0]
    get = {(r["segmenter"], r["oracle"]): r["metrics"] for r in rows}
    for s in ("default", "boxes"):
        assert get[(s, "prompts")]["mask_iou"] > get[(s, "none")]["mask_iou"]
    assert get[("boxes", "prompts")]["mask_recall"] == 1.0
    # boxes with oracle prompts: every predicted pixel is inside a GT object's box, so the pooled precision is the
    # GT's share of its boxes, and no mask falls on a normal frame
    assert get[("boxes", "prompts")]["mask_precision"] == pytest.approx(get[("boxes", "prompts")]["mask_iou_pooled"])
