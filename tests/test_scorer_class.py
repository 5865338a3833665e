"""The scorer's ``class`` attribute: rarity of the detected class (and of the track's class history)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import compose
from tao_lab.detector import UNKNOWN_CLASS
from tao_lab.scorer import AttributeScorer
from tao_lab.scorer.class_rarity import check_detector_has_classes, class_rarity, fit_class_table
from tao_lab.types import ObjectTable

PERSON, BICYCLE, TRUCK = 0, 1, 7
ATTRS = {"class": {"model": "class", "calibration": "in_sample", "track_window": 5}}


def make_clip(num_frames=30, walkers=4, extra=None, noise_frame=None):
    """Objects of one clip: `walkers` person tracks over all frames (one of them mislabelled as a truck on
    `noise_frame`), a few unknown blobs, and optionally `extra` = (class, track id, first frame, last frame)."""
    frame, tid, cls = [], [], []
    for i in range(num_frames):
        for k in range(walkers):
            frame.append(i), tid.append(k + 1), cls.append(TRUCK if (noise_frame == i and k == 0) else PERSON)
        if i % 3 == 0:
            frame.append(i), tid.append(50 + i), cls.append(UNKNOWN_CLASS)
        if extra is not None and extra[2] <= i <= extra[3]:
            frame.append(i), tid.append(extra[1]), cls.append(extra[0])
    n = len(frame)
    objects = ObjectTable.build(np.array(frame), np.tile([[0, 0, 10, 20]], (n, 1)), None, np.array(tid),
                                np.array(cls))
    return objects, {}, num_frames


def test_class_table_counts_with_add_one_smoothing():
    table = fit_class_table(np.array([0, 0, 0, -1]))
    assert table["classes"].tolist() == [-1, 0]
    # N = 4 objects, K = 2 classes: p(person) = 4/7, p(unknown) = 2/7, p(unseen) = 1/7
    np.testing.assert_allclose(np.exp(-table["nll"]), [2 / 7, 4 / 7, 1 / 7])
    np.testing.assert_allclose(class_rarity(np.array([0, -1, 7, 3]), **table),
                               -np.log([4 / 7, 2 / 7, 1 / 7, 1 / 7]))


def test_rare_class_outscores_the_common_one_and_the_track_history_ignores_one_mislabel(tmp_path):
    train = [make_clip(noise_frame=10) for _ in range(3)]
    scorer = AttributeScorer(ATTRS, frame_sigma=0.0).fit_clips(train)
    objects, feats, n = make_clip(extra=(BICYCLE, 99, 10, 20), noise_frame=5)
    out = scorer.score_clip(objects, feats, n)
    score = out.objects.score
    bike, person = objects.track_id == 99, objects.cls == PERSON
    assert score[bike].min() > 1.0 > score[person].max()  # above the calibrated training range
    # the walker mislabelled "truck" in one frame keeps a walker's score (median over its track's history) ...
    mislabelled = (objects.track_id == 1) & (objects.frame == 5)
    assert score[mislabelled][0] == pytest.approx(score[person & (objects.track_id == 1)].max())
    # ... while without the track history the one mislabel scores like the rarest training class (the training
    # clips' own mislabels): at the calibrated top of the training range, far above the walkers
    raw = AttributeScorer({"class": {**ATTRS["class"], "track_window": 1}}, frame_sigma=0.0).fit_clips(train)
    single = raw.score_clip(objects, feats, n).objects.score
    assert single[mislabelled][0] == pytest.approx(1.0) and single[person & ~mislabelled].max() < 0.1
    # frames with the bicycle are the anomalous frames
    assert out.frame_scores[10:21].min() > out.frame_scores[:10].max()
    # the fitted class table survives a checkpoint
    path = tmp_path / "class.ckpt"
    scorer.save_checkpoint(path)
    restored = AttributeScorer.load_from_checkpoint(path)
    np.testing.assert_array_equal(restored.score_clip(objects, feats, n).objects.score, score)
    assert restored.state_dict()["class__class_classes"].tolist() == [UNKNOWN_CLASS, PERSON, TRUCK]


def test_class_attribute_is_refused_for_a_detector_without_classes():
    cfg = compose("eval", ["+scorer.attributes.class={model:class,calibration:in_sample}"])
    assert cfg.detector._target_.endswith("BackgroundSubtractionDetector")
    with pytest.raises(ValueError, match=r"class-agnostic.*detector=yolo or detector=hybrid"):
        check_detector_has_classes(cfg.scorer, cfg.detector)
    hybrid = compose("eval", ["detector=hybrid", "+scorer.attributes.class={model:class,calibration:in_sample}"])
    check_detector_has_classes(hybrid.scorer, hybrid.detector)  # accepted
    check_detector_has_classes(compose("eval").scorer, cfg.detector)  # no class attribute: nothing to check


def test_pipeline_refuses_before_fitting(tmp_path):
    from tao_lab.pipeline import Pipeline

    cfg = compose("eval", ["+scorer.attributes.class={model:class}"], tmp_path)
    with pytest.raises(ValueError, match="class-agnostic"):
        Pipeline(cfg).fit_scorer([])
