"""Every artifact format round-trips exactly; the stage cache re-uses what it stored and rejects corrupt files."""
import hashlib
import json

import numpy as np
import pytest

from tao_lab import artifacts
from tao_lab.cache import StageCache, stable_hash
from tao_lab.types import ObjectScores, ObjectTable, Prompts, Segmentation


def _table(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return ObjectTable(rng.integers(0, 50, n), rng.uniform(0, 100, (n, 4)), rng.uniform(0, 1, n),
                       rng.integers(-1, 4, n), rng.integers(0, 3, n))


def _assert_table_equal(a: ObjectTable, b: ObjectTable):
    for name, value in a.columns().items():
        np.testing.assert_array_equal(value, getattr(b, name))
        assert value.dtype == getattr(b, name).dtype


@pytest.mark.parametrize("n", [0, 1, 7])
def test_object_table_round_trip(tmp_path, n):
    table = _table(n)
    back = artifacts.load(artifacts.save(tmp_path / "t.npz", table))
    _assert_table_equal(table, back)


def test_scores_prompts_segmentation_features_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    scores = ObjectScores(_table(6), rng.uniform(size=30).astype(np.float32),
                          {"velocity": rng.uniform(size=6).astype(np.float32)})
    back = artifacts.load(artifacts.save(tmp_path / "s.npz", scores))
    _assert_table_equal(scores.objects, back.objects)
    np.testing.assert_array_equal(scores.frame_scores, back.frame_scores)
    np.testing.assert_array_equal(scores.parts["velocity"], back.parts["velocity"])

    prompts = Prompts([0, 3], [1, 2], [[0, 0, 5, 5], [1, 1, 9, 9]], [[2.5, 2.5], [5, 5]], [0.9, 1.2])
    back = artifacts.load(artifacts.save(tmp_path / "p.npz", prompts))
    for name in ("frame", "obj_id", "xyxy", "point", "score"):
        np.testing.assert_array_equal(getattr(prompts, name), getattr(back, name))

    maps = rng.uniform(size=(3, 8, 10)).astype(np.float16)
    inst = rng.integers(0, 3, (3, 8, 10)).astype(np.int32)
    seg = Segmentation(maps, _table(4), inst)
    back = artifacts.load(artifacts.save(tmp_path / "g.npz", seg))
    np.testing.assert_array_equal(back.score_maps, maps)
    np.testing.assert_array_equal(back.instance_maps, inst)
    assert artifacts.load(artifacts.save(tmp_path / "g2.npz", Segmentation(maps, _table(0)))).instance_maps is None

    feats = {"velocity": rng.normal(size=(6, 9)).astype(np.float32), "box": rng.normal(size=(6, 4))}
    back = artifacts.load(artifacts.save(tmp_path / "f.npz", feats))
    assert set(back) == {"velocity", "box"}
    np.testing.assert_array_equal(back["box"], feats["box"].astype(np.float32))


def test_object_table_rejects_ragged_columns():
    with pytest.raises(ValueError, match="rows"):
        ObjectTable([0, 1], np.zeros((3, 4)), [1, 1], [0, 0], [0, 0])


def test_missing_artifact_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        artifacts.load(tmp_path / "nope.npz")


def test_cache_computes_once_and_keys_follow_config(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return _table(3)

    cache = StageCache(tmp_path, "detect", {"detector": {"k": 1}})
    first = cache.get_or_compute("clip", "src", compute)
    again = StageCache(tmp_path, "detect", {"detector": {"k": 1}}).get_or_compute("clip", "src", compute)
    assert len(calls) == 1
    _assert_table_equal(first, again)
    # a different config or a different clip source is a different entry
    StageCache(tmp_path, "detect", {"detector": {"k": 2}}).get_or_compute("clip", "src", compute)
    StageCache(tmp_path, "detect", {"detector": {"k": 1}}).get_or_compute("clip", "other", compute)
    assert len(calls) == 3
    assert (cache.dir / "key.json").is_file()
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})


def test_cache_keys_written_before_the_package_renames_are_kept():
    """The packages took their config groups' names (tao_lab.detect -> tao_lab.detector, tao_lab.scorers ->
    tao_lab.scorer, ...); keys hash the old names, so a cache filled before the renames is still found."""
    spec = {"detector": {"_target_": "tao_lab.detector.BackgroundSubtractionDetector", "min_area": 40},
            "up": {"scorer": {"_target_": "tao_lab.scorer.attribute.AttributeScorer"}, "tau": 1.0}}
    before = ('{"detector":{"_target_":"tao_lab.detect.BackgroundSubtractionDetector","min_area":40},'
              '"up":{"scorer":{"_target_":"tao_lab.scorers.attribute.AttributeScorer"},"tau":1.0}}')
    assert stable_hash(spec) == hashlib.sha1(before.encode()).hexdigest()[:16] == "0905e67d33d00ac2"
    # the key the synthetic default's detect stage had before the renames (its key.json, target renamed)
    detect = {"detector": {"_target_": "tao_lab.detector.BackgroundSubtractionDetector",
                           "background": {"blur": 5, "k": 4.0, "min_threshold": 12.0, "morph": 3,
                                          "normalize_brightness": True, "num_samples": 60,
                                          "shadow_ratio": [0.45, 0.92], "shadow_texture": 3.0},
                           "dilate": 5, "min_area": 40, "min_width": 6, "score_scale": 40.0, "split_aspect": 0.9,
                           "split_valley": 0.5}}
    assert StageCache(None, "detect", detect).key == "77790bc5cd2f5d5d"
    # names that were not renamed, and longer names that merely start like a renamed one, are hashed as they are
    for text in ("tao_lab.features.FeatureSet", "tao_lab.scorers_extra.X", "my_tao_lab.detector.X"):
        assert stable_hash(text) == hashlib.sha1(json.dumps(text).encode()).hexdigest()[:16]


def test_corrupt_cache_file_is_recomputed(tmp_path):
    cache = StageCache(tmp_path, "detect", {"x": 1})
    cache.get_or_compute("clip", "src", lambda: _table(2))
    cache.path("clip", "src").write_bytes(b"not an npz")
    value = cache.get_or_compute("clip", "src", lambda: _table(4))
    assert len(value) == 4


def test_disabled_cache_always_computes():
    cache = StageCache(None, "detect", {"x": 1})
    calls = []
    for _ in range(2):
        cache.get_or_compute("clip", "src", lambda: calls.append(1) or _table(1))
    assert len(calls) == 2


def test_interrupted_write_leaves_no_artifact(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        artifacts.save(tmp_path / "x.npz", _table(2))
    assert list(tmp_path.iterdir()) == []


# ----- scorer checkpoints and temporary files: nothing half-written --------------------------------------------
def _tiny_scorer():
    from helpers import make_clip
    from tao_lab.scorer import AttributeScorer

    rng = np.random.default_rng(0)
    return AttributeScorer({"velocity": {"model": "gmm", "tail": "upper", "columns": [0],
                                         "calibration": "in_sample"}}).fit_clips([make_clip(rng, 10)])


def test_checkpoint_write_killed_midway_leaves_the_old_file(tmp_path, monkeypatch):
    import os

    import torch

    scorer = _tiny_scorer()
    path = tmp_path / "scorer.ckpt"
    scorer.save_checkpoint(path)
    before = path.read_bytes()

    def killed(obj, f, *args, **kwargs):  # writes part of the file, then the process is interrupted
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any written file, not mkstemp's 0600
    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        scorer.save_checkpoint(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["scorer.ckpt"]
    with pytest.raises(KeyboardInterrupt):
        scorer.save_checkpoint(tmp_path / "new" / "scorer.ckpt")
    assert list((tmp_path / "new").iterdir()) == []  # no 0-byte or truncated scorer.ckpt


def test_orphan_temporary_files_are_removed_when_old(tmp_path):
    import os
    import time

    cache = StageCache(tmp_path, "detect", {"x": 1})
    cache.get_or_compute("clip", "src", lambda: _table(2))
    old = cache.dir / "clip-0123456789.npz.k2j3h4.tmp"   # left by a write killed with SIGKILL
    young = cache.dir / "other-0123456789.npz.a8b7c6.tmp"  # may be a write in progress elsewhere
    for p in (old, young):
        p.write_bytes(b"partial")
    past = time.time() - artifacts.ORPHAN_AGE_S - 60
    os.utime(old, (past, past))
    again = StageCache(tmp_path, "detect", {"x": 1})
    assert len(again.get_or_compute("clip", "src", lambda: _table(5))) == 2  # a hit
    assert not old.exists() and young.exists()
    assert artifacts.remove_orphan_temps(tmp_path / "missing") == 0


def test_unreadable_cached_scorer_is_refitted(tmp_path, caplog):
    import logging
    import os
    import time

    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", [*TINY_SYNTHETIC, "dataset.num_frames=30", "workers=1"], tmp_path)
    train = load_dataset(cfg).train
    first = Pipeline(cfg)
    path = first.fit_scorer(train)
    tau = first.threshold.tau
    assert path.is_file()
    orphan = path.with_name("scorer.ckpt.x1y2z3.tmp")
    orphan.write_bytes(b"")
    past = time.time() - artifacts.ORPHAN_AGE_S - 60
    os.utime(orphan, (past, past))
    for broken in (b"", path.read_bytes()[:100]):  # 0-byte and truncated: a write killed by an older version
        path.write_bytes(broken)
        with caplog.at_level(logging.WARNING, logger="tao_lab.pipeline"):
            pipe = Pipeline(cfg)
            assert pipe.fit_scorer(train) == path
        assert "unreadable" in caplog.text and "refitting" in caplog.text
        assert pipe.threshold.tau == pytest.approx(tau)
        assert len(path.read_bytes()) > 1000 and Pipeline(cfg).fit_scorer(train) == path  # rewritten, loadable
        caplog.clear()
    assert not orphan.exists()


# ----- cache keys cover every input ----------------------------------------------------------------------------
def _write_masked_clip(root, x0, labels=(0, 1, 1)):
    """A 3-frame clip (PNG frames) with UCSD-style mask files: a 4x4 blob at column x0 in the labelled frames."""
    import cv2

    from tao_lab.dataset.clips import FolderMasks, FrameFolderClip
    from tao_lab.types import ClipGT

    frames, masks = root / "Test001", root / "Test001_gt"
    frames.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels):
        if not (frames / f"{i:03d}.png").is_file():  # the frames never change here: only the masks do
            cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((16, 24, 3), 90, np.uint8))
        m = np.zeros((16, 24), np.uint8)
        if lab:
            m[4:8, x0:x0 + 4] = 255
        cv2.imwrite(str(masks / f"{i:03d}.png"), m)
    clip = FrameFolderClip(str(frames), "Test001")
    clip.gt = ClipGT(np.array(labels, bool), FolderMasks(sorted(str(p) for p in masks.iterdir()), 16, 24))
    return clip


def test_gt_tracks_follow_edited_masks(tmp_path):
    import os
    import time

    from tao_lab.evaluation import gt_source, gt_tracks_for

    cache = tmp_path / "cache"
    before = gt_tracks_for(_write_masked_clip(tmp_path / "data", x0=2), cache, min_area=1)
    np.testing.assert_array_equal(before.xyxy[:, 0], [2, 2])
    # the masks are corrected (same frames, same file names): RBDC/TBDC must see the new masks, as pixel metrics do
    clip = _write_masked_clip(tmp_path / "data", x0=12)
    later = time.time() + 5  # a clearly newer mtime even on coarse-timestamp file systems
    for p in (tmp_path / "data" / "Test001_gt").iterdir():
        os.utime(p, (later, later))
    after = gt_tracks_for(clip, cache, min_area=1)
    np.testing.assert_array_equal(after.xyxy[:, 0], [12, 12])
    assert gt_tracks_for(clip, cache, min_area=1).xyxy[0, 0] == 12  # and the new entry is a hit
    # labels are part of the key too (their count sets how many masks are read)
    relabelled = _write_masked_clip(tmp_path / "data", x0=12)
    relabelled.gt.frame_labels = np.array([0, 0, 1], bool)
    assert gt_source(relabelled) != gt_source(clip)


def test_gt_source_covers_in_memory_array_and_callable_masks(tmp_path):
    from tao_lab.dataset.clips import ArrayMasks, CroppedMasks
    from tao_lab.evaluation import gt_source
    from tao_lab.types import Clip, ClipGT

    a = np.zeros((2, 8, 8), bool)
    b = a.copy()
    b[1, 2:4, 2:4] = True

    def clip_with(mask):
        c = Clip("c", 2, 8, 8, source="frames:x")
        c.gt = ClipGT(np.array([0, 1], bool), mask)
        return c

    for make in (lambda m: CroppedMasks(m, 8, 8), lambda m: ArrayMasks(m, 8, 8), lambda m: (lambda i: m[i])):
        assert gt_source(clip_with(make(a))) != gt_source(clip_with(make(b)))
        assert gt_source(clip_with(make(a))) == gt_source(clip_with(make(a.copy())))
    np.save(tmp_path / "m.npy", a)
    on_disk = ArrayMasks(np.load(tmp_path / "m.npy", mmap_mode="r"), 8, 8, str(tmp_path / "m.npy"))
    assert "m.npy" in on_disk.signature()


def test_scorer_key_covers_trainer_settings_and_gated_prompts_cover_labels(tmp_path):
    from helpers import compose
    from tao_lab.pipeline import Pipeline, load_dataset
    from tao_lab.cache import stable_hash

    def key(*overrides):
        cfg = compose("eval", ["dataset.num_frames=10", *overrides], tmp_path)
        return stable_hash(Pipeline(cfg).scorer_spec(load_dataset(cfg).train))

    mae = key("scorer=temporal_mae", "trainer.max_epochs=3")
    assert mae != key("scorer=temporal_mae", "trainer.max_epochs=4")  # a trained fit depends on its epochs ...
    assert mae == key("scorer=temporal_mae", "trainer.max_epochs=3", "progress=false",
                      f"trainer.default_root_dir={tmp_path / 'elsewhere'}")  # ... not on where it reports
    assert key("trainer.max_epochs=3") == key("trainer.max_epochs=4")  # fit-once scorers ignore the Trainer
    assert "trainer" not in Pipeline(compose("eval", [], tmp_path)).scorer_spec([])
    # outside a Hydra run (no run dir to resolve trainer.default_root_dir from) the key is still computed
    no_run = compose("eval", ["scorer=temporal_mae"])
    assert Pipeline(no_run).scorer_spec([])["trainer"]["max_epochs"] == no_run.trainer.max_epochs

    cfg = compose("eval", ["dataset.num_frames=10", "+metrics.gt_gating=true"], tmp_path)
    pipe, clip = Pipeline(cfg), load_dataset(cfg).test[0]
    gated = pipe.source("prompts", clip)
    assert pipe.source("score", clip) == clip.source and gated != clip.source
    clip.gt.frame_labels = ~np.asarray(clip.gt.frame_labels, bool)  # corrected labels: other gated prompts
    assert pipe.source("prompts", clip) != gated and pipe.source("segment", clip) != gated
    plain = Pipeline(compose("eval", ["dataset.num_frames=10"], tmp_path))
    assert plain.source("prompts", clip) == clip.source  # without the oracle, labels play no part
