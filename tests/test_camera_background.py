"""Camera background (background.scope=camera): a person standing for the whole clip, the per-clip fallbacks, the
leave-own-clip-out rule, the cache keys and the error messages. Tiny hand-made clips: seconds in all."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from helpers import compose
from tao_lab.boxes import box_iou
from tao_lab.detector import BackgroundModel, BackgroundSubtractionDetector
from tao_lab.detector.camera import CameraBackgrounds, cache_spec, derived_from, split_background_options
from tao_lab.pipeline import Pipeline, splits_needed
from tao_lab.segmenter import ForegroundSegmenter
from tao_lab.types import Clip, Prompts, SubClip

H, W, T = 64, 96, 40
STANDING = (40, 26, 52, 56)  # x1, y1, x2, y2 of the person who stands still for the whole clip


class SceneClip(Clip):
    """A static textured scene (``scene`` seeds it) at global brightness ``gain`` with sensor noise; walkers cross
    its upper band (dark rectangles moving along x, rows 1-19), and optionally a person stands at STANDING (below
    that band) on every frame."""

    def __init__(self, clip_id: str, scene: int = 0, gain: float = 1.0, standing: bool = False, walkers: int = 2,
                 seed: int = 0, size=(H, W)):
        super().__init__(clip_id, T, size[0], size[1], source=f"scene{scene}:{clip_id}:g{gain}:s{standing}:{seed}")
        rng = np.random.default_rng(scene)
        base = rng.uniform(90, 170, (size[0] // 8, size[1] // 8))
        self.bg = np.kron(base, np.ones((8, 8)))[:size[0], :size[1]] * gain
        self.standing, self.seed = standing, seed
        r = np.random.default_rng(1000 + seed)
        self.walkers = [(r.uniform(-10, 10), r.uniform(1, 3), r.choice([-1, 1]) * r.uniform(2.5, 4))
                        for _ in range(walkers)]

    def _read(self, i: int) -> np.ndarray:
        img = self.bg.copy()
        for x0, y0, vx in self.walkers:
            x = int((x0 + vx * i) % (self.width + 20)) - 10
            img[int(y0):int(y0) + 16, max(x, 0):max(x + 8, 0)] = 35
        if self.standing:
            x1, y1, x2, y2 = STANDING
            img[y1:y2, x1:x2] = 30
        noise = np.random.default_rng(self.seed * 7919 + i).normal(0, 2, img.shape)
        grey = np.clip(img + noise, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)


def training_clips(scene: int = 0, n: int = 3) -> list[Clip]:
    return [SceneClip(f"train{k}", scene, gain=g, seed=k) for k, g in zip(range(n), (1.0, 0.85, 1.15, 0.95))]


def camera_detector(train) -> BackgroundSubtractionDetector:
    det = BackgroundSubtractionDetector(background={"scope": "camera"})
    det.use_camera(CameraBackgrounds(train))
    return det


def found_share(detections, box, iou: float = 0.5) -> float:
    """Share of the frames with a detection of IoU >= ``iou`` with ``box``."""
    hits = [len(d) and box_iou(np.float32([box]), d).max() >= iou
            for d in (detections.xyxy[detections.frame == t] for t in range(T))]
    return float(np.mean(hits))


def test_person_standing_all_clip_is_foreground_with_camera_background_only():
    train = training_clips()
    clip = SceneClip("test", gain=0.9, standing=True, seed=9)
    x1, y1, x2, y2 = STANDING
    clip_model = BackgroundModel().fit(clip)
    model, reason, share = CameraBackgrounds(train).model(clip)
    assert reason == "camera" and 0 < share < 0.25  # the absorbed person is the disagreement
    for t in (0, T // 2, T - 1):
        assert clip_model.foreground(clip.frame(t))[y1:y2, x1:x2].mean() < 0.05  # absorbed by the clip's median
        assert model.foreground(clip.frame(t))[y1:y2, x1:x2].mean() > 0.9
    # the detector: boxed on every frame with the camera background, on none with the per-clip one
    assert found_share(BackgroundSubtractionDetector().detect(clip), STANDING) == 0.0
    assert found_share(camera_detector(train).detect(clip), STANDING) >= 0.95
    # the segmenter: with fallback "none", the per-clip background leaves no mask at all, the camera one the person
    centre = np.float32([(x1 + x2) / 2, (y1 + y2) / 2])
    prompts = Prompts(np.arange(T), np.ones(T), np.tile(np.float32(STANDING), (T, 1)), np.tile(centre, (T, 1)),
                      np.ones(T))
    masks = {}
    for scope in ("clip", "camera"):  # box_score 0: the score map is the mask
        seg = ForegroundSegmenter(background={"scope": scope}, fallback="none", box_score=0.0, max_carry=0,
                                  carry_backward=0)
        seg.use_camera(CameraBackgrounds(train))
        masks[scope] = np.asarray(seg.segment(clip, prompts).score_maps) > 0
    assert masks["clip"][:, y1:y2, x1:x2].mean() < 0.05
    assert masks["camera"][:, y1:y2, x1:x2].mean() > 0.9


def test_a_moving_walker_stays_found_and_plain_clips_stay_quiet_with_the_camera_background():
    train = training_clips()
    plain = SceneClip("plain", gain=1.05, seed=5)
    clip_dets = BackgroundSubtractionDetector().detect(plain)
    cam_dets = camera_detector(train).detect(plain)
    # two walkers per frame, at most: no false blobs from the clips' different brightness
    assert len(cam_dets) <= 2 * T + 2 and abs(len(cam_dets) - len(clip_dets)) <= 4
    model, reason, _ = CameraBackgrounds(train).model(plain)
    assert reason == "camera"
    assert np.mean([model.foreground(plain.frame(t)).mean() for t in range(0, T, 5)]) < 0.12


def test_clip_of_another_camera_falls_back_to_its_own_background(caplog):
    train = training_clips(scene=0)
    other = SceneClip("elsewhere", scene=1, standing=True, seed=3)  # same frame size, another scene
    with caplog.at_level(logging.WARNING, logger="tao_lab.detector.camera"):
        model, reason, share = CameraBackgrounds(train).model(other)
    assert reason != "camera" and share > 0.25
    assert "elsewhere" in caplog.text and "own per-clip background" in caplog.text
    np.testing.assert_allclose(model.background, BackgroundModel().fit(other).background)
    np.testing.assert_allclose(model.threshold, BackgroundModel().fit(other).threshold)
    # same detections as scope=clip
    np.testing.assert_array_equal(camera_detector(train).detect(other).xyxy,
                                  BackgroundSubtractionDetector().detect(other).xyxy)


def test_without_training_clips_of_the_camera_it_is_the_per_clip_background(caplog):
    clip = SceneClip("test", standing=True, seed=4)
    small = SceneClip("small", size=(32, 48), seed=1)  # another frame size: another camera
    det = BackgroundSubtractionDetector(background={"scope": "camera"})  # no use_camera: no training clips
    with caplog.at_level(logging.INFO, logger="tao_lab.detector.camera"):
        alone = det.detect(clip)
        det.use_camera(CameraBackgrounds([small]))
        other_size = det.detect(clip)
    assert "no training clip of this camera" in caplog.text
    reference = BackgroundSubtractionDetector().detect(clip).xyxy
    np.testing.assert_array_equal(alone.xyxy, reference)
    np.testing.assert_array_equal(other_size.xyxy, reference)


def test_a_clip_is_left_out_of_its_own_camera_background():
    train = training_clips(n=4)
    cameras = CameraBackgrounds(train)
    assert [c.clip_id for c in cameras.camera_clips(train[1])] == ["train0", "train2", "train3"]
    sub = SubClip(train[2], 0, 20)  # a sub-clip (and a planted copy, '<source>+plant:...') of a training clip
    assert [c.clip_id for c in cameras.camera_clips(sub)] == ["train0", "train1", "train3"]
    assert derived_from(train[2].source + "+plant:loiter:d0:abc", train[2].source)
    assert not derived_from(train[2].source + "9", train[2].source)  # another clip whose name extends it
    assert len(cameras.camera_clips(SceneClip("test", seed=8))) == 4
    assert len(cameras.camera_clips(SceneClip("test", seed=8), max_clips=2)) == 2
    # grouped by camera: a clip derived from a training clip uses that clip's group only
    grouped = CameraBackgrounds(cameras=[train[:2], train[2:]])
    assert [c.clip_id for c in grouped.camera_clips(sub)] == ["train3"]


def test_cache_keys_differ_between_scopes_and_name_the_training_clips(tmp_path):
    both_clip = ["dataset.num_frames=20", "detector.background.scope=clip", "segmenter.background.scope=clip"]
    clip_cfg = compose("eval", both_clip, tmp_path)
    cam_cfg = compose("eval", [*both_clip, "detector.background.scope=camera"], tmp_path)
    seg_cfg = compose("eval", [*both_clip, "segmenter.background.scope=camera"], tmp_path)
    train_a, train_b = training_clips(n=3), training_clips(n=2)

    def keys(cfg, clips):
        pipe = Pipeline(cfg)
        if clips is not None:
            pipe.set_camera_clips(clips)
        return pipe.caches["detect"].key, pipe._stage_spec(cfg.segmenter)

    clip_key, clip_seg = keys(clip_cfg, None)
    assert keys(clip_cfg, train_a) == (clip_key, clip_seg)  # scope=clip ignores the training clips
    cam_a, cam_b, cam_none = keys(cam_cfg, train_a)[0], keys(cam_cfg, train_b)[0], keys(cam_cfg, None)[0]
    assert len({clip_key, cam_a, cam_b, cam_none}) == 4
    assert keys(cam_cfg, list(reversed(train_a)))[0] == cam_a  # the set of clips, not their order
    seg_a = keys(seg_cfg, train_a)[1]
    assert seg_a != clip_seg and seg_a["camera_clips"] == sorted(c.source for c in train_a)
    assert keys(seg_cfg, train_a)[0] == clip_key  # the segmenter's scope leaves the detector's key alone
    # `scope: clip` keys like the config before the option existed (existing caches stay valid)
    assert cache_spec({"background": {"scope": "clip", "k": 4.0}}, None) == {"background": {"k": 4.0}}
    assert cache_spec({"background": {"scope": "clip"}}, None) == {"background": None}


def test_pipeline_hands_the_camera_backgrounds_to_the_stages(tmp_path):
    cfg = compose("eval", ["dataset.num_frames=20", "detector.background.scope=camera",
                           "segmenter.background.scope=camera"], tmp_path)
    pipe = Pipeline(cfg)
    assert pipe.detector.camera is not None and not pipe.detector.camera.clips  # built before: empty provider
    train = training_clips()
    pipe.set_camera_clips(train)
    assert pipe.detector.camera is pipe.camera_backgrounds and pipe.segmenter.camera is pipe.camera_backgrounds
    assert pipe.detector.camera.clips == train


def test_dataset_pipeline_knows_the_camera_and_every_benchmark_that_reads_a_dataset_uses_it(tmp_path):
    """Pipeline(cfg) alone knows no camera (its stages fall back to per-clip backgrounds whatever the config says):
    benchmarks that read a dataset build their pipeline with dataset_pipeline, so they measure the default."""
    import re
    from pathlib import Path

    from tao_lab.pipeline import dataset_pipeline
    from tao_lab.types import Dataset

    cfg = compose("eval", ["dataset.num_frames=20", "detector.background.scope=camera",
                           "segmenter.background.scope=camera"], tmp_path)
    train = training_clips()
    pipe = dataset_pipeline(cfg, Dataset("scenes", train, [SceneClip("test", seed=8)]))
    assert pipe.detector.camera.clips == train and pipe.segmenter.camera is pipe.camera_backgrounds
    unsupervised = compose("eval", ["dataset.num_frames=20", "detector.background.scope=camera",
                                    "training.mode=unsupervised"], tmp_path)
    assert not dataset_pipeline(unsupervised, Dataset("scenes", train, [])).detector.camera.clips
    # the benchmarks: a bare Pipeline(cfg) only where no dataset is read (one video, fitted on its own first frames)
    bare = {f.name for f in (Path(__file__).parents[1] / "benchmarks").glob("*.py")
            if re.search(r"\bPipeline\(cfg\)", f.read_text())}
    assert bare == {"alarm_any_video.py"}, bare


def test_a_checkpoint_eval_reads_the_training_split_for_the_camera_only_when_it_exists(tmp_path, monkeypatch, caplog):
    """An evaluation from ckpt_path does not need the training split for the scorer; camera_clips reads it for the
    camera backgrounds, and a copy without training videos (Avenue partial) falls back to per-clip backgrounds."""
    import tao_lab.pipeline as pipeline_module
    from tao_lab.dataset.errors import DataError
    from tao_lab.pipeline import camera_clips, load_dataset
    from tao_lab.types import Dataset

    ckpt = compose("eval", ["dataset.num_frames=20", "ckpt_path=/x/scorer.ckpt", "detector.background.scope=camera"],
                   tmp_path)
    assert splits_needed(ckpt) == ("test",)
    test_only = Dataset(name="synthetic", train=[], test=[])
    expected = [c.source for c in load_dataset(ckpt, splits=["train"]).train]
    assert expected and [c.source for c in camera_clips(ckpt, test_only)] == expected
    clip_scope = compose("eval", ["dataset.num_frames=20", "ckpt_path=/x/scorer.ckpt",
                                  "detector.background.scope=clip", "segmenter.background.scope=clip"], tmp_path)
    assert camera_clips(clip_scope, test_only) == []  # nobody needs them: nothing is read

    def missing(cfg, splits=None):
        raise DataError("the training videos are missing")

    monkeypatch.setattr(pipeline_module, "load_dataset", missing)
    with caplog.at_level(logging.INFO, logger="tao_lab.pipeline"):
        assert camera_clips(ckpt, test_only) == []
    assert "the training videos are missing" in caplog.text and "per-clip backgrounds" in caplog.text


def test_bad_background_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"detector\.background\.scope must be one of \('clip', 'camera'\)"):
        BackgroundSubtractionDetector(background={"scope": "camra"})
    with pytest.raises(ValueError, match=r"segmenter\.background\.max_disagreement must be in \(0, 1\]"):
        ForegroundSegmenter(background={"scope": "camera", "max_disagreement": 0})
    with pytest.raises(ValueError, match="agreement must be > 0"):
        split_background_options({"scope": "camera", "agreement": -1}, "detector.background")
    # frame differencing has no background model: the camera scope (the configured default) does not apply
    assert ForegroundSegmenter(foreground="frame_diff", background={"scope": "camera"}).scope == "clip"
    with pytest.raises(ValueError, match="either as clips .* or as cameras"):
        CameraBackgrounds(training_clips(n=1), cameras=[training_clips(n=1)])
    model = BackgroundModel().fit(SceneClip("a"))
    with pytest.raises(ValueError, match=r"camera background size \(32, 48\).*differs from the clip's \(64, 96\)"):
        model.blend_camera(np.zeros((32, 48), np.float32), np.zeros((32, 48), np.float32))


class LitPatchClip(SceneClip):
    """A SceneClip with a patch of sunlight (PATCH, +45 grey levels) on every frame, and a person who arrives at
    frame ARRIVES and stands at STANDING to the end (60% of the clip: the clip's own median absorbs them)."""

    PATCH = (4, 30, 28, 54)
    ARRIVES = 16

    def _read(self, i: int) -> np.ndarray:
        img = super()._read(i).astype(np.float32)
        x1, y1, x2, y2 = self.PATCH
        img[y1:y2, x1:x2] += 45
        if i >= self.ARRIVES:
            x1, y1, x2, y2 = STANDING
            img[y1:y2, x1:x2] = 30
        return np.clip(img, 0, 255).astype(np.uint8)


def test_seen_blend_keeps_a_clip_long_light_patch_as_background_and_still_finds_the_person_who_stood():
    """blend=seen: a pixel's background is the median of the clip's own frames that show the camera's background
    there. The sunlit patch never shows it (the whole clip is lit): it keeps the clip's own median and is not
    foreground, where blend=disagree puts the camera's darker background and marks the patch on every frame. The
    person who stood for the last 60% of the clip is foreground with both (the clip's own median alone absorbs
    them)."""
    train = training_clips()
    clip = LitPatchClip("lit", gain=1.0, seed=11)
    px1, py1, px2, py2 = LitPatchClip.PATCH
    x1, y1, x2, y2 = STANDING
    cams = CameraBackgrounds(train)
    disagree = cams.model(clip, blend="disagree")[0]
    seen = cams.model(clip, blend="seen", seen_share=0.1)[0]
    own = BackgroundModel().fit(clip)
    late = [t for t in range(LitPatchClip.ARRIVES, T, 4)]

    def fg(model, box, frames):
        a1, b1, a2, b2 = box
        return float(np.mean([model.foreground(clip.frame(t))[b1:b2, a1:a2].mean() for t in frames]))

    assert fg(disagree, LitPatchClip.PATCH, range(0, T, 4)) > 0.9
    assert fg(seen, LitPatchClip.PATCH, range(0, T, 4)) < 0.05
    assert fg(own, STANDING, late) < 0.1
    assert fg(disagree, STANDING, late) > 0.9 and fg(seen, STANDING, late) > 0.9
    # before the person arrives: the clip's own median shows their ghost there, the camera-based ones do not
    early = range(0, LitPatchClip.ARRIVES, 4)
    assert fg(own, STANDING, early) > 0.9
    assert fg(disagree, STANDING, early) < 0.05 and fg(seen, STANDING, early) < 0.05
    # the sampled frames are dropped once used, and seen without them is a clear error
    assert seen._samples is None
    with pytest.raises(RuntimeError, match="keep_samples=True"):
        BackgroundModel().fit(clip).blend_camera(disagree.background, disagree.sigma, seen_share=0.1)
    with pytest.raises(ValueError, match=r"detector\.background\.blend must be one of"):
        BackgroundSubtractionDetector(background={"scope": "camera", "blend": "mean"})
    with pytest.raises(ValueError, match=r"seen_share must be in \(0, 1\]"):
        split_background_options({"scope": "camera", "seen_share": 0}, "detector.background")


def test_seen_background_is_the_median_of_the_agreeing_samples():
    from tao_lab.detector.background import _seen_background

    samples = np.float32([[[10, 50]], [[12, 90]], [[30, 91]], [[11, 92]], [[100, 93]]])  # (S=5, H=1, W=2)
    camera = np.float32([[11, 20]])
    tol = np.float32([[2, 2]])
    own = np.float32([[99, 77]])
    # pixel 0: samples 10, 12, 11 agree (3 of 5) -> their median 11; pixel 1: none agree -> own
    np.testing.assert_array_equal(_seen_background(samples, camera, tol, 0.5, own), [[11, 77]])
    # asking for more than 3 of 5 agreeing samples: own everywhere
    np.testing.assert_array_equal(_seen_background(samples, camera, tol, 0.8, own), [[99, 77]])


def test_scoped_backgrounds_finds_every_scoped_background_of_a_stage_config():
    """The one walker behind cache_spec, uses_camera_background and the validation's planting pipeline: a top-level
    background, a nested part's (hybrid) and one in a list; a background without a scope is not scoped."""
    from tao_lab.detector.camera import scoped_backgrounds, uses_camera

    cfg = {"background": {"scope": "clip", "k": 4.0},
           "parts": {"bg": {"background": {"scope": "camera"}}, "yolo": {"background": {"k": 1.0}}},
           "extra": [{"background": {"scope": "clip"}}]}
    found = [owner["background"] for owner in scoped_backgrounds(cfg)]
    assert found == [{"scope": "clip", "k": 4.0}, {"scope": "camera"}, {"scope": "clip"}]
    assert uses_camera(cfg) and not uses_camera({"background": {"scope": "clip"}}) and not uses_camera(None)
    spec = cache_spec(cfg, CameraBackgrounds(training_clips(n=2)))
    assert spec["background"] == {"k": 4.0} and spec["extra"] == [{"background": None}]
    assert spec["parts"]["bg"]["background"] == {"scope": "camera"} and len(spec["camera_clips"]) == 2
    assert cfg["background"] == {"scope": "clip", "k": 4.0}  # the config given is not changed


def test_background_parts_separates_the_background_from_the_noise():
    """benchmarks/background_parts.py's four combinations on hand-set models: region R is 30 grey levels off a flat
    background and hidden only by the clip's own inflated noise (threshold 40 there); region Q is 30 off the clip's own
    background but matches the camera's. Each combination must see exactly the regions its parts imply."""
    from benchmarks.background_parts import foreground_parts

    h, w = 20, 40
    plain = dict(blur=0, normalize_brightness=False, k=4.0, min_threshold=12.0, shadow_ratio=None, morph=0)
    flat = np.full((h, w), 100, np.uint8)
    fitted = BackgroundModel(**plain).fit_frames([flat] * 3)  # background 100, no noise (threshold = the 12 floor)
    sigma = np.zeros((h, w), np.float32)
    sigma[0:10, 0:10] = 10.0  # R: the clip's own noise inflated (threshold 40)
    own = fitted.replaced(sigma=sigma)
    cam_bg = np.full((h, w), 100.0, np.float32)
    cam_bg[10:20, 20:30] = 130.0  # Q: the camera's background differs
    camera = fitted.replaced(background=cam_bg)
    assert np.array_equal(fitted.threshold, np.full((h, w), 12.0)) and own.threshold[0, 0] == 40.0
    frame = np.full((h, w), 100, np.uint8)
    frame[0:10, 0:10] = 130
    frame[10:20, 20:30] = 130
    parts = foreground_parts(own, camera, [frame])
    region = 100 / (h * w)  # one 10x10 region's share of the frame
    assert parts["own"] == pytest.approx(region)  # Q only
    assert parts["cam_bg"] == pytest.approx(0.0)  # R hidden by the own noise, Q matches the camera's background
    assert parts["cam_sd"] == pytest.approx(2 * region)  # R and Q
    assert parts["default"] == pytest.approx(region)  # R only
    assert parts["raised_own"] == pytest.approx(region) and parts["raised_camera"] == 0.0
    assert np.isnan(parts["shadow_share"])  # no shadow test configured


def test_stages_spelling_the_same_background_differently_share_one_fit_per_clip(monkeypatch):
    """The segmenter's `background: {scope: camera}` and the detector's written-out defaults (a YAML list for
    shadow_ratio) are the same model: the camera statistics and each clip's fitted background are made once and
    handed to both (the detector first, then the segmenter); another clip object is fitted on its own, even with
    the same source; with no room to keep fits, every call fits again."""
    written_out = {"scope": "camera", "blend": "seen", "num_samples": 60, "blur": 5, "normalize_brightness": True,
                   "k": 4.0, "min_threshold": 12.0, "shadow_ratio": [0.45, 0.92], "shadow_texture": 3.0, "morph": 3}
    det_kwargs, _, det_options = split_background_options(written_out, "detector.background")
    seg_kwargs, _, seg_options = split_background_options({"scope": "camera", "blend": "seen"},
                                                          "segmenter.background")
    assert det_kwargs == seg_kwargs == BackgroundModel.settings({}) and det_options == seg_options
    assert det_kwargs["shadow_ratio"] == (0.45, 0.92)
    fits = []
    original = BackgroundModel.fit

    def counted(self, clip, keep_samples=False):
        fits.append(clip.clip_id)
        return original(self, clip, keep_samples)

    monkeypatch.setattr(BackgroundModel, "fit", counted)
    cameras = CameraBackgrounds(training_clips())
    clip = SceneClip("test", standing=True, seed=9)
    first = cameras.model(clip, det_kwargs, **det_options)
    assert sorted(fits) == ["test", "train0", "train1", "train2"]  # the clip, then the camera's statistics
    assert cameras.model(clip, seg_kwargs, **seg_options) is first and len(fits) == 4  # nothing fitted again
    twin = SceneClip("test", standing=True, seed=9)  # equal frames, equal source: still another object
    again = cameras.model(twin, det_kwargs, **det_options)
    assert again is not first and fits[-1] == "test" and len(fits) == 5
    np.testing.assert_array_equal(again[0].background, first[0].background)
    other = cameras.model(clip, {**det_kwargs, "k": 3.0}, **det_options)  # other settings: fitted on their own
    assert other[0] is not first[0] and other[0].k == 3.0
    no_room = CameraBackgrounds(training_clips(), keep_bytes=0)
    before = len(fits)
    no_room.model(clip, det_kwargs, **det_options)
    no_room.model(clip, det_kwargs, **det_options)
    assert fits[before:].count("test") == 2
    with pytest.raises(ValueError, match=r"detector\.background: .*unexpected keyword argument 'kk'"):
        split_background_options({"scope": "camera", "kk": 3}, "detector.background")


def test_the_median_over_frames_is_numpys():
    from tao_lab.detector.background import median_over_frames

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 8, 59, 60):
        stack = rng.integers(0, 40, (n, 7, 9)).astype(np.float32) * 0.5  # ties, as grey levels have
        got, expected = median_over_frames(stack), np.median(stack, axis=0)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_camera_statistics_fitted_on_worker_processes_are_the_ones_the_stages_would_fit():
    """fit_camera_statistics (before a parallel pass on forked workers) fits each training clip's statistics the
    stages will need once, on the workers, and keeps them here: the same arrays as fitted in this process, and
    afterwards nothing is missing, so no worker fits them again."""
    from tao_lab.detector.camera import camera_settings
    from tao_lab.pipeline import fit_camera_statistics

    train = training_clips(n=4)
    test = [SceneClip("test0", standing=True, seed=9)]
    det = BackgroundSubtractionDetector(background={"scope": "camera", "num_samples": 12, "max_clips": 3})
    seg = ForegroundSegmenter(background={"scope": "camera", "blend": "seen"})
    plain = BackgroundSubtractionDetector(background={"scope": "clip"})
    assert camera_settings(plain) == [] and camera_settings(object()) == []
    assert [(kw["num_samples"], n) for kw, n in camera_settings(det)] == [(12, 3)]
    cameras = CameraBackgrounds(train)
    settings = camera_settings(det) + camera_settings(seg)
    todo = cameras.missing_statistics(settings, test)
    # max_clips 3 of the detector: 3 of the 4 training clips; the segmenter's default: all 4 (other settings)
    default_samples = BackgroundModel.settings({})["num_samples"]
    assert default_samples != 12
    assert sorted((c.clip_id, kw["num_samples"]) for c, kw in todo) == sorted(
        [(c.clip_id, 12) for c in cameras.camera_clips(test[0], 3)] + [(c.clip_id, default_samples) for c in train])
    fit_camera_statistics(cameras, [det, seg, plain], test, workers=2, kind="process")
    assert cameras.missing_statistics(settings, test) == []
    here = CameraBackgrounds(train)
    for clip, kwargs in todo:
        for got, want in zip(cameras.clip_statistics(clip, kwargs), here.clip_statistics(clip, kwargs)):
            np.testing.assert_array_equal(got, want)
    # the training clips themselves (leave-one-out): every other training clip
    fresh = CameraBackgrounds(train)
    assert {c.clip_id for c, _ in fresh.missing_statistics([({}, 32)], train)} == {c.clip_id for c in train}
    assert {c.clip_id for c, _ in fresh.missing_statistics([({}, 32)], train[:1])} == {c.clip_id for c in train[1:]}


def test_the_segmenter_takes_the_detectors_foregrounds_of_the_shared_camera_model(monkeypatch):
    """Detector and segmenter on one camera background: each frame is differenced once (the detector's pass leaves
    its differences under the model, tao_lab/frame_memo.py), and the masks are those of a segmenter that computes its
    own."""
    from tao_lab.frame_memo import FOREGROUNDS

    train = training_clips()
    clip = SceneClip("test", gain=0.9, standing=True, seed=9)
    prompts = Prompts(np.arange(T), np.ones(T), np.tile(np.float32(STANDING), (T, 1)), np.zeros((T, 2), np.float32),
                      np.ones(T))

    def segmenter(cameras):
        seg = ForegroundSegmenter(background={"scope": "camera"}, max_carry=0, carry_backward=0)
        seg.use_camera(cameras)
        return seg

    own = segmenter(CameraBackgrounds(train)).segment(clip, prompts)  # nothing left by a detector: computed here
    calls = []
    real = BackgroundModel.difference
    monkeypatch.setattr(BackgroundModel, "difference", lambda self, frame: calls.append(1) or real(self, frame))
    cameras = CameraBackgrounds(train)
    detector = BackgroundSubtractionDetector(background={"scope": "camera"})
    detector.use_camera(cameras)
    detector.detect(clip)
    assert len(calls) == T and len(FOREGROUNDS) >= T  # the sampled frames of its row model included
    shared = segmenter(cameras).segment(clip, prompts)
    assert len(calls) == T                                 # the segmenter computed none
    np.testing.assert_array_equal(shared.score_maps, own.score_maps)
    np.testing.assert_array_equal(shared.instance_maps, own.instance_maps)
    # an edited frame (the learned segmenter's training pastes objects into frames) is differenced itself
    from tao_lab.segmenter.classical import _Background

    model = cameras.model(clip)[0]
    edited = clip.frame(0)
    edited[:20, :20] = 255
    np.testing.assert_array_equal(_Background(model)(0, edited)[0], real(model, edited))
    assert not np.array_equal(_Background(model)(0, edited, as_decoded=True)[0], real(model, edited))
    # a model that changes forgets what was kept under it
    assert FOREGROUNDS.get(model, 0) is not None
    model._set_sigma(model.sigma)
    assert FOREGROUNDS.get(model, 0) is None
