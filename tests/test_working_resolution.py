"""Working resolution (tao_lab.dataset.resize, cfg.working_height): tall clips processed shrunk, ground truth with them."""
import json

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, MovingSquareClip
from tao_lab.dataset.resize import (ResizedClip, at_working_resolution, dataset_at_working_resolution,
                                    working_resolution_note, working_size)
from tao_lab.types import ClipGT, Dataset, ObjectTable


def test_working_size_known_answers():
    assert working_size(360, 640, 240) == (240, 427)        # Avenue's frames
    assert working_size(480, 856, 240) == (240, 428)
    assert working_size(240, 360, 240) == (240, 360)        # Ped2: unchanged
    assert working_size(158, 238, 240) == (158, 238)        # never enlarged
    assert working_size(1080, 1920, None) == (1080, 1920)   # null: off
    with pytest.raises(ValueError, match="working_height"):
        working_size(360, 640, 8)
    # working_min_height: shorter clips enlarged to it, taller ones as they are unless above working_height
    assert working_size(144, 216, None, 240) == (240, 360)
    assert working_size(158, 238, 240, 240) == (240, 362)  # 238 x 240 / 158 = 361.5
    assert working_size(360, 640, None, 240) == (360, 640)
    with pytest.raises(ValueError, match="must not exceed"):
        working_size(100, 100, 200, 300)


class _LabelledSquares(MovingSquareClip):
    """A 96x128 clip with one square; its mask is the square's pixels, its GT track the square's box."""

    def __init__(self):
        super().__init__(num_frames=6, height=96, width=128, squares=((16, 40, 4, 0, 16, 230),))
        labels = np.array([0, 1, 1, 1, 0, 0], bool)
        tracks = ObjectTable.build(np.array([1, 2]), np.stack([self.box(1), self.box(2)]), track_id=np.array([7, 7]))
        self.gt = ClipGT(frame_labels=labels, mask=self._mask, tracks=tracks)
        self.labels = labels

    def _mask(self, i):
        m = np.zeros((96, 128), bool)
        x1, y1, x2, y2 = self.box(i).astype(int)
        m[y1:y2, x1:x2] = True
        return m


def test_resized_clip_shrinks_frames_masks_and_boxes_together():
    base = _LabelledSquares()
    clip = ResizedClip(base, (48, 64))                      # exactly half: every 2x2 block becomes one pixel
    assert (clip.height, clip.width, clip.num_frames, clip.clip_id) == (48, 64, 6, base.clip_id)
    assert clip.source != base.source and "48" in clip.source
    frame = clip.frame(1)
    assert frame.shape == (48, 64, 3)
    np.testing.assert_allclose(frame[..., 0].astype(float),
                               base.frame(1)[..., 0].astype(float).reshape(48, 2, 64, 2).mean((1, 3)), atol=1.0)
    assert [f.shape for f in clip.frames(0, 2)] == [(48, 64, 3)] * 2
    # the square at x 20-36, y 40-56 on frame 1 covers x 10-18, y 20-28 at half size, exactly
    mask = clip.gt.mask(1)
    assert mask.shape == (48, 64) and mask.sum() == 64 and mask[20:28, 10:18].all()
    np.testing.assert_array_equal(clip.gt.frame_labels, base.gt.frame_labels)
    np.testing.assert_array_equal(clip.labels, base.labels)
    np.testing.assert_allclose(clip.gt.tracks.xyxy, base.gt.tracks.xyxy / 2)
    np.testing.assert_array_equal(clip.gt.tracks.track_id, [7, 7])
    with pytest.raises(ValueError, match="both sides alike"):
        ResizedClip(base, (120, 100))


def test_an_enlarged_clip_keeps_its_objects_where_they_were():
    base = _LabelledSquares()
    clip = ResizedClip(base, (192, 256))                    # twice the size, bilinear
    assert clip.frame(1).shape == (192, 256, 3) and "256x192" in clip.source
    mask = clip.gt.mask(1)                                  # the 16 px square at x 20-36, y 40-56: 32 px at x 40-72
    assert mask[80:112, 40:72].all() and mask.sum() == pytest.approx(32 * 32, rel=0.1)
    np.testing.assert_allclose(clip.gt.tracks.xyxy, base.gt.tracks.xyxy * 2)
    ys, xs = np.nonzero(clip.frame(1)[..., 0] > 200)      # the bright square, 230 grey levels, in the frame
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((40, 71, 80, 111), abs=1)


def test_half_covered_pixels_are_in_the_shrunk_mask_and_less_is_not():
    base = _LabelledSquares()
    m = np.zeros((96, 128), bool)
    m[10:12, 10:11] = True                                  # half of the 2x2 block at (10, 10): kept
    m[20:21, 20:21] = True                                  # a quarter of the block at (20, 20): dropped
    base.gt = ClipGT(frame_labels=base.gt.frame_labels, mask=lambda i: m)
    mask = ResizedClip(base, (48, 64)).gt.mask(0)
    assert mask[5, 5] and not mask[10, 10] and mask.sum() == 1


def test_only_clips_taller_than_the_working_height_are_resized():
    tall, short = _LabelledSquares(), MovingSquareClip(height=40, width=60)
    out = at_working_resolution([tall, short], 48)
    assert isinstance(out[0], ResizedClip) and (out[0].height, out[0].width) == (48, 64) and out[1] is short
    assert working_resolution_note(out) == "64x48 from 128x96" and working_resolution_note([short]) is None
    data = Dataset("d", train=[short], test=[tall])
    assert dataset_at_working_resolution(data, 200) is data
    resized = dataset_at_working_resolution(data, 48)
    assert resized.name == "d" and resized.train == [short] and resized.test[0].height == 48
    assert data.test[0] is tall                              # the original dataset is not changed


def test_eval_at_a_working_resolution_says_so_and_measures_in_its_pixels(tmp_path):
    """The synthetic set's 160-row clips processed at 100 rows: masks, GT and metrics at 100 rows, noted."""
    from helpers import compose
    from tao_lab.pipeline import load_dataset
    from tao_lab.tasks import evaluate, run_task

    cfg = compose("eval", [*TINY_SYNTHETIC, "working_height=100", "workers=1"], tmp_path)
    data = load_dataset(cfg)
    assert {(c.height, c.width) for c in (*data.train, *data.test)} == {(100, 150)}
    metrics = run_task(cfg, evaluate)
    assert 0.0 <= metrics["test/frame_auc_micro"] <= 1.0 and 0.0 <= metrics["test/pixel_ap"] <= 1.0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "150x100 from 240x160" in saved["working_resolution"]
    run_task(compose("eval", [*TINY_SYNTHETIC, "workers=1"], tmp_path / "native"), evaluate)  # 160 rows: as they are
    assert "working_resolution" not in json.loads((tmp_path / "native" / "run" / "metrics.json").read_text())


def test_online_frames_are_shrunk_like_offline_clips():
    from tao_lab.online import OnlinePipeline

    base = _LabelledSquares()
    online = OnlinePipeline(pipe=None, working_height=48)
    frames = list(online._at_working_resolution(iter([base.frame(1), np.zeros((40, 60, 3), np.uint8)])))
    assert frames[0].shape == (48, 64, 3) and frames[1].shape == (40, 60, 3)
    np.testing.assert_array_equal(frames[0], ResizedClip(base, (48, 64)).frame(1))  # exactly the offline frame
    same = OnlinePipeline(pipe=None)                                                   # null: as they come
    assert next(same._at_working_resolution(iter([base.frame(1)]))).shape == (96, 128, 3)


def test_planted_speeds_follow_the_working_resolution():
    """A planted walker at 4 px/frame in a 96-row camera is the same walker at 8 px/frame when the run sees that
    camera at 192 rows; clips at their own size keep the speeds. Sets in multiples of the normal speed (the
    defaults) are measured on the working-resolution tracks and stay as they are."""
    import dataclasses

    from tao_lab.validation.protocol import DEFAULT_PLANTS, specs_at_working_resolution

    px = tuple(dataclasses.replace(s, speed_unit="px") for s in DEFAULT_PLANTS)
    base = _LabelledSquares()
    doubled = specs_at_working_resolution(px, [ResizedClip(base, (192, 256))] * 2)
    assert [s.speed for s in doubled] == [(2 * s.speed[0], 2 * s.speed[1]) for s in px]
    assert [(s.name, s.kind, s.duration) for s in doubled] == [(s.name, s.kind, s.duration) for s in px]
    assert specs_at_working_resolution(px, [base, base]) == px
    assert {s.speed_unit for s in DEFAULT_PLANTS} == {"normal"}
    assert specs_at_working_resolution(DEFAULT_PLANTS, [ResizedClip(base, (192, 256))] * 2) == tuple(DEFAULT_PLANTS)
