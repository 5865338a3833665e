"""The validation's crowd (tao_lab.validation.crowd) with known answers: a donor's moving objects are pasted whole
over the base, where the donor's frame says, and nowhere else; the donors are clips of the same camera that no fold
fits on; and the cross-scene protocol with ``crowd=True`` equals an independent recomputation from crowded held-out
and planted clips."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import PED2_DIR, ArrayClip, ped2_available
from tao_lab.validation.crowd import Crowd, CrowdedClip

T, H, W = 10, 40, 60


def donor_clip(num_frames: int = T) -> ArrayClip:
    """A flat background (150, 150, 150) with one 6 x 6 object moving right 3 px a frame: colour (150, 150, 230), so
    only its red channel tells it from the ground, and grey-level subtraction alone would miss it."""
    frames = np.full((num_frames, H, W, 3), 150, np.uint8)
    for t in range(num_frames):
        frames[t, 10:16, 3 * t + 5:3 * t + 11] = (150, 150, 230)
    return ArrayClip(frames, "donor")


def base_clip() -> ArrayClip:
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 100, (T, H, W, 3)).astype(np.uint8)
    clip = ArrayClip(frames, "base")
    clip.source = "base-source"
    clip.labels = np.arange(T) % 2 == 0  # a planted copy's frame labels
    return clip


def test_crowded_clip_pastes_the_donor_object_whole_and_nothing_else():
    base, donor = base_clip(), donor_clip(T + 2)  # a longer donor: its first T frames are used
    crowded = CrowdedClip(base, Crowd(donor, dilate=1))
    assert crowded.num_frames == T and (crowded.height, crowded.width) == (H, W)
    frames = list(crowded.frames())
    assert len(frames) == T
    for i, frame in enumerate(frames):
        x0 = 3 * i + 5
        expected = base.frame(i).copy()
        expected[9:17, x0 - 1:x0 + 7] = donor.frame(i)[9:17, x0 - 1:x0 + 7]  # the object and a 1 px ring
        np.testing.assert_array_equal(frame, expected)
        np.testing.assert_array_equal(frame, crowded.frame(i))  # random access reads the same frame
    np.testing.assert_array_equal(list(crowded.frames(3, 5))[1], frames[4])
    np.testing.assert_array_equal(crowded.labels, base.labels)  # a planted copy's labels pass through
    assert crowded.clip_id != base.clip_id and crowded.source != base.source  # its own cache entries
    # one Crowd crowds several clips with a background computed once (a held-out clip and its planted copies)
    crowd = crowded.crowd
    background = crowd.background()
    other = CrowdedClip(base_clip(), crowd)
    np.testing.assert_array_equal(other.frame(2), crowded.frame(2))
    assert crowd.background() is background
    assert CrowdedClip(base, Crowd(donor, dilate=2)).source != crowded.source  # the mask settings key the cache


def test_a_donor_with_nothing_moving_adds_nothing():
    base = base_clip()
    still = ArrayClip(np.full((T, H, W, 3), 150, np.uint8), "still")
    np.testing.assert_array_equal(CrowdedClip(base, Crowd(still)).frame(4), base.frame(4))


def test_crowded_clip_refuses_bad_input():
    base = base_clip()
    with pytest.raises(ValueError, match="same camera"):
        CrowdedClip(base, Crowd(ArrayClip(np.zeros((T, H, W + 1, 3), np.uint8))))
    with pytest.raises(ValueError, match="must cover every frame"):  # a wrapped donor's people would jump
        CrowdedClip(base, Crowd(donor_clip(T - 1)))
    with pytest.raises(ValueError, match="threshold > 0"):
        Crowd(donor_clip(), threshold=0)


def test_spare_clips_are_the_same_camera_and_never_fitted_on():
    from tao_lab.validation.scenes import spare_clips, synthetic_scene

    train = synthetic_scene("synthetic_persp", 3, 30)
    spare = spare_clips(["synthetic_persp"], 3, 30)["synthetic_persp"]
    assert len(spare) == 3 and not {c.clip_id for c in spare} & {c.clip_id for c in train}
    assert all(c.num_frames == 30 and (c.height, c.width) == (train[0].height, train[0].width) for c in spare)
    with pytest.raises(ValueError, match="unknown scene"):
        spare_clips(["mars"], 3, 30)
    with pytest.raises(ValueError, match="needs the Ped2 folder"):
        spare_clips(["ped2"], 3, 30)
    if not ped2_available():
        return
    from tao_lab.validation.scenes import ped2_train_clips, warp_scene

    used = {c.clip_id for c in ped2_train_clips(str(PED2_DIR), 4, 20)}
    both = spare_clips(["ped2", "ped2_low"], 4, 20, str(PED2_DIR))
    donors = both["ped2"]
    assert len(donors) == 4 and not used & {c.clip_id for c in donors}
    np.testing.assert_array_equal(both["ped2_low"][1].frame(3), warp_scene("ped2_low", donors)[1].frame(3))
    with pytest.raises(ValueError, match="9 validated leave only 7"):
        spare_clips(["ped2"], 9, 20, str(PED2_DIR))
    with pytest.raises(ValueError, match="16 validated leave only 0"):  # --clips unset: every clip is validated
        spare_clips(["ped2"], None, 20, str(PED2_DIR))
    # 8 clips: at 120 frames (Ped2's shortest clip) every donor covers its clip; at 150 Train008 (120 frames) would
    # crowd Train007 (150), and at full length also Train006 (150) Train005 (180): refused, naming the longest --frames
    assert all(c.num_frames == 120 for c in spare_clips(["ped2"], 8, 120, str(PED2_DIR))["ped2"])
    for frames in (150, None):
        with pytest.raises(ValueError, match=r"as long as the clip it crowds: .*\(use --frames 120 or fewer\)"):
            spare_clips(["ped2"], 8, frames, str(PED2_DIR))


def test_cross_scene_crowd_scores_crowded_held_out_and_planted_clips(compose_cfg):
    """One cell recomputed: each fold fitted on the other training clips as they are; the positives are the crowded
    planted copy's labelled frames, the negatives the crowded held-out clip's frames; the crowd of both is the same
    spare clip of the scene."""
    from sklearn.metrics import roc_auc_score

    from tao_lab.pipeline import Pipeline, instantiate
    from tao_lab.validation.cross_scene import build_scenes, crowd_scene, cross_scene_validate
    from tao_lab.validation.scenes import spare_clips

    cfg = compose_cfg("eval", [])
    run = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=["loiter"], num_clips=3,
                               num_frames=70, show_progress=False, crowd=True)
    scene = build_scenes(cfg, ["synthetic_persp"], ["loiter"], None, 3, 70, show_progress=False, animate=True,
                         occlusion=True)[0]  # the validation's plants: animated, behind nearer people
    donors = spare_clips(["synthetic_persp"], 3, 70)["synthetic_persp"]
    crowded = crowd_scene(scene, donors)
    assert crowded.train == scene.train  # the fit is not crowded
    for v in range(3):
        crowd = crowded.scored_clip(v).crowd
        assert crowded.scored_clip(v).base is scene.train[v] and crowd.donor is donors[v]
        plant = crowded.planted["loiter"][v]
        assert plant.base is scene.planted["loiter"][v] and plant.crowd is crowd  # one background per donor
    pipe = Pipeline(cfg)
    pipe.set_camera_clips(cameras=[scene.train])

    def item(c):
        return pipe.tracks(c), pipe.features(c), c.num_frames

    labels, scores = [], []
    for v in range(3):
        scorer = instantiate(cfg.scorer).fit_clips([item(c) for u, c in enumerate(scene.train) if u != v])
        plant = crowded.planted["loiter"][v]
        pos = scorer.score_clip(*item(plant)).frame_scores[plant.labels]
        neg = scorer.score_clip(*item(crowded.scored_clip(v))).frame_scores
        labels.append(np.r_[np.ones(len(pos)), np.zeros(len(neg))])
        scores.append(np.r_[pos, neg])
    assert run.auc["default"]["synthetic_persp"]["loiter"] == pytest.approx(
        roc_auc_score(np.concatenate(labels), np.concatenate(scores)), abs=1e-9)


def test_validation_cli_refuses_a_crowd_without_spare_clips_before_anything_runs(capsys):
    from tao_lab.validation.__main__ import main

    if not ped2_available():
        pytest.skip("needs ../shared/datasets/ucsd_ped2")
    with pytest.raises(SystemExit):
        main(["--scenes", "ped2", "--sets", "fast", "--clips", "12", "--frames", "40", "--crowd",
              "--ped2-dir", str(PED2_DIR), "progress=false"])
    assert "12 validated leave only 4 of 16 (use --clips 8 or fewer)" in capsys.readouterr().err
