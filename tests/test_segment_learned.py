"""``segmenter=learned``: the crop geometry, the copy-paste training crops, a network trained on synthetic clips with
exact masks (known IoU bounds, masks inside the enlarged box), its checkpoint, and the errors a user can meet."""
import numpy as np
import pytest

from helpers import iou, moving_disc_clip, tracked_scores, two_disc_clip
from tao_lab.segmenter import ForegroundSegmenter, LearnedSegmenter, mask_box
from tao_lab.segmenter.learned_training import _stretched, find_blobs, training_crops
from tao_lab.segmenter.mask_net import crop_inputs, crop_target, crop_to_frame, grey_levels
from tao_lab.types import Prompts

#: a quick training: enough for discs on a textured background
QUICK = {"num_crops": 600, "epochs": 4, "frames_per_clip": 12, "min_area": 20, "batch_size": 32}


def training_clips():
    """Four clips of a textured disc moving right at different speeds, rows and backgrounds (the camera's normal
    training video)."""
    return [moving_disc_clip(T=24, speed=s, seed=10 + k)[0] for k, s in enumerate((2.0, 3.0, 2.5, 3.5))]


@pytest.fixture(scope="module")
def trained():
    seg = LearnedSegmenter(training=QUICK)
    seg.fit(training_clips())
    return seg


@pytest.mark.parametrize("box", [[30.0, 20.0, 50.0, 70.0], [5.5, 40.2, 90.0, 60.7], [-5.0, -8.0, 12.0, 20.0]])
def test_crop_and_back_reproduce_a_mask(box):
    """A mask seen through a box's window and warped back onto the frame's pixels is the same mask (up to the
    resampling at its border); pixels outside the window read 0; the box lands on the crop's central square."""
    H, W = 80, 100
    truth = np.zeros((H, W), bool)
    ys, xs = np.mgrid[:H, :W]
    x1, y1, x2, y2 = box
    truth[(xs + 0.5 >= x1) & (xs + 0.5 <= x2) & (ys + 0.5 >= y1) & (ys + 0.5 <= y2)] = True
    truth &= (xs + ys) % 7 != 0  # some structure inside
    crop = crop_target(truth, np.array(box), context=0.25, size=40)
    region = (slice(0, H), slice(0, W))
    back = crop_to_frame(crop, np.array(box), 0.25, region) >= 0.5
    assert iou(back, truth) > 0.6
    filled = mask_box(truth)
    whole = crop_to_frame(crop_target(np.ones((H, W), bool), np.array(box), 0.25, 40), np.array(box), 0.25, region)
    w, h = x2 - x1, y2 - y1
    far = (xs + 0.5 < x1 - 0.3 * w) | (xs + 0.5 > x2 + 0.3 * w) | (ys + 0.5 < y1 - 0.3 * h) | (ys + 0.5 > y2 + 0.3 * h)
    assert (whole[far] == 0).all() and filled is not None
    solid = np.zeros((H, W), bool)
    solid[int(np.ceil(max(y1, 0))):int(np.floor(y2)), int(np.ceil(max(x1, 0))):int(np.floor(x2))] = True
    inner = crop_target(solid, np.array(box), 0.25, 40)
    if x1 >= 0 and y1 >= 0:  # the box maps onto pixels 6.7 .. 33.3 of the 40 px crop
        assert inner[8:32, 8:32].min() > 0.99 and inner[:5].max() == 0 and inner[:, 36:].max() == 0


def test_grey_levels_are_the_bits_of_numpys_channel_mean():
    """mask_net.grey_levels (a channel sum in float32, then / 3) gives exactly numpy's float32 mean over the channels
    for any uint8 colour frame, including every channel at 255 and odd sizes, and for a float frame; a grey frame comes
    back as float32."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(20)]
    frames += [np.full((4, 5, 3), 255, np.uint8), np.zeros((1, 1, 3), np.uint8),
               rng.integers(0, 256, (8, 9, 4), dtype=np.uint8)]
    for frame in frames:
        out = grey_levels(frame)
        assert out.dtype == np.float32 and np.array_equal(out, frame.astype(np.float32).mean(axis=2))
    floats = rng.random((5, 6, 3)) * 255.0  # not uint8: numpy's own mean
    assert np.array_equal(grey_levels(floats), floats.astype(np.float32).mean(axis=2))
    grey = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    assert grey_levels(grey).dtype == np.float32 and np.array_equal(grey_levels(grey), grey)


def test_crop_inputs_channels():
    clip, truth, boxes = moving_disc_clip(T=3)
    frame = clip.frame(1)
    grey = frame.astype(np.float32).mean(axis=2)
    diff = np.where(truth[1], 80.0, 2.0).astype(np.float32)
    x = crop_inputs(grey, diff, truth[1], boxes[1], 0.25, 40)
    assert x.shape == (3, 40, 40) and x.dtype == np.float32
    assert abs(x[1].max() - 1.6) < 1e-4 and x[1].min() >= 0  # 80 / 50
    assert set(np.unique(x[2].round(3))) >= {0.0, 1.0}
    assert -0.5 <= x[0].min() and x[0].max() <= 0.5


def test_find_blobs_finds_the_disc():
    clip, truth, _ = moving_disc_clip(T=24, speed=3.0)
    seg = ForegroundSegmenter()
    frames = {}
    blobs = find_blobs([clip], [seg._foreground_model(clip)], frames_per_clip=6, min_area=20, frames=frames)
    assert set(frames) == {(0, b.frame) for b in blobs}  # the frames holding blobs, kept for the crops
    assert len(blobs) >= 5  # one per sampled frame (the disc never touches the frame edge here)
    for b in blobs:
        got = np.zeros(truth[0].shape, bool)
        x1, y1, x2, y2 = b.box.astype(int)
        got[y1:y2, x1:x2] = b.mask
        assert iou(got, truth[b.frame]) > 0.7  # the foreground model's own blob of the disc


def test_stretched_blob_keeps_its_bottom_centre_and_scales():
    clip, truth, _ = moving_disc_clip(T=24, speed=3.0)
    blob = find_blobs([clip], [ForegroundSegmenter()._foreground_model(clip)], 4, 20)[1]
    rng = np.random.default_rng(0)
    frame = clip.frame(blob.frame).copy()
    mask, box = _stretched(blob, frame, 1.8, rng)
    assert abs((box[0] + box[2]) / 2 - (blob.box[0] + blob.box[2]) / 2) <= 1.0 and box[3] == blob.box[3]
    ratio = mask.sum() / blob.mask.sum()
    sx, sy = (box[2] - box[0]) / (blob.box[2] - blob.box[0]), (box[3] - box[1]) / (blob.box[3] - blob.box[1])
    assert 0.7 * sx * sy < ratio < 1.3 * sx * sy and (sx, sy) != (1.0, 1.0)


def test_training_crops_leave_the_distractor_out_of_the_target():
    """With a distractor on every crop, the target covers the object (about its share of the window) and never the
    pasted neighbour: the target is a subset of the object blob's own window, so its share stays below the
    foreground's share of the window."""
    clips = training_clips()
    seg = ForegroundSegmenter()
    x, y = training_crops(clips, seg._foreground_model, 120, 40, 0.25, seed=1, frames_per_clip=8, min_area=20,
                          distractor_prob=1.0, stretch_prob=0.0)
    assert x.shape == (120, 3, 40, 40) and y.shape == (120, 40, 40)
    assert 0.2 < y.mean() < 0.6  # a disc fills pi/4 of its box, the box 1/2.25 of the window
    assert (x[:, 2].mean(axis=(1, 2)) >= y.mean(axis=(1, 2)) - 0.05).mean() > 0.95
    # the foreground outside the target: the distractors (and nothing else on these clean clips)
    extra = (x[:, 2] > 0.5) & (y < 0.5)
    assert extra.sum(axis=(1, 2)).mean() > 20
    x2, y2 = training_crops(clips, seg._foreground_model, 120, 40, 0.25, seed=1, frames_per_clip=8, min_area=20,
                            distractor_prob=0.0, stretch_prob=0.0)
    assert ((x2[:, 2] > 0.5) & (y2 < 0.5)).sum(axis=(1, 2)).mean() < 0.5 * extra.sum(axis=(1, 2)).mean()
    np.testing.assert_array_equal(training_crops(clips, seg._foreground_model, 20, 40, 0.25, seed=1,
                                                 frames_per_clip=8, min_area=20)[1],
                                  training_crops(clips, seg._foreground_model, 20, 40, 0.25, seed=1,
                                                 frames_per_clip=8, min_area=20)[1])  # reproducible


def test_learned_masks_on_a_new_clip(trained):
    """Trained on four disc clips, it segments a disc of a new clip: IoU >= 0.7 on every frame (carried between
    prompts), masks inside the box enlarged by box_margin, graded pixel scores in [floor, 1] x score."""
    clip, truth, boxes = moving_disc_clip(T=30, speed=3.0, seed=0)
    scores = tracked_scores(boxes)
    prompts = Prompts([0, 10, 20], [1, 1, 1], boxes[[0, 10, 20]], [[0, 0]] * 3, [2.0, 2.0, 2.0])
    seg = trained.segment(clip, prompts, scores)
    ious = [iou(seg.instance_maps[t] == 1, truth[t]) for t in range(30)]
    assert min(ious) > 0.7, ious
    on = seg.instance_maps > 0
    assert seg.score_maps[on].min() >= 0.25 * 2.0 - 1e-3 and seg.score_maps.max() <= 2.0 + 1e-3
    assert len(np.unique(seg.score_maps[on])) > 10
    for t in range(30):  # the planned box: the prompt's on prompt frames, the (jittered) tracked box in between
        x1, y1, x2, y2 = seg.objects.xyxy[seg.objects.frame == t][0]
        box = boxes[t] if t in (0, 10, 20) else scores.objects.xyxy[t]
        mw, mh = 0.1 * (box[2] - box[0]), 0.1 * (box[3] - box[1])
        assert x1 >= np.floor(box[0] - mw) and x2 <= np.ceil(box[2] + mw)
        assert y1 >= np.floor(box[1] - mh) and y2 <= np.ceil(box[3] + mh)


def test_learned_keeps_a_passing_neighbour_out_better_than_the_classical_hull(trained):
    """Disc A prompted with its own box while disc B passes through its enlarged box: the classical mask (every
    foreground pixel of the enlarged box, then their hull) takes in B's pixels; the learned one takes fewer. Read at
    the network's own decision point, probability 0.5 (this test's network, 600 crops, is less sure of itself than a
    configured one, for which masks round 4 chose 0.3)."""
    clip, ma, mb, boxes_a, _ = two_disc_clip()
    frames = np.arange(22, 34)
    prompts = Prompts(frames, np.ones(len(frames), int), boxes_a[frames], [[0, 0]] * len(frames),
                      np.full(len(frames), 2.0))
    at_half = LearnedSegmenter(training=QUICK, mask_threshold=0.5)
    at_half.fit(training_clips())  # the fixture's network (kept in memory by its settings and clips)
    assert at_half.net is trained.net
    learned = at_half.segment(clip, prompts, None)
    classical = ForegroundSegmenter(hull="object", max_carry=0, carry_backward=0).segment(clip, prompts, None)
    b_learned = sum((learned.instance_maps[t] > 0)[mb[t]].sum() for t in frames)
    b_classical = sum((classical.instance_maps[t] > 0)[mb[t]].sum() for t in frames)
    assert b_classical > 0 and b_learned < b_classical
    assert np.mean([iou(learned.instance_maps[t] > 0, ma[t]) for t in frames]) > \
        np.mean([iou(classical.instance_maps[t] > 0, ma[t]) for t in frames])


def test_checkpoint_round_trip_and_errors(trained, tmp_path):
    path = tmp_path / "segmenter.ckpt"
    trained.save_checkpoint(str(path))
    loaded = LearnedSegmenter(checkpoint=str(path))
    clip, truth, boxes = moving_disc_clip(T=4)
    prompts = Prompts([2], [1], boxes[[2]], [[0, 0]], [1.0])
    np.testing.assert_allclose(loaded.segment(clip, prompts, None).score_maps,
                               trained.segment(clip, prompts, None).score_maps, atol=1e-6)
    from tao_lab.checkpoints import CheckpointError

    with pytest.raises(FileNotFoundError, match="missing.ckpt.*train.py"):
        LearnedSegmenter(checkpoint=str(tmp_path / "missing.ckpt")).segment(clip, prompts, None)
    with pytest.raises(CheckpointError, match="crop_size"):
        LearnedSegmenter(checkpoint=str(path), crop_size=32).segment(clip, prompts, None)
    import torch

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a learned segmenter checkpoint"):
        LearnedSegmenter(checkpoint=str(tmp_path / "other.ckpt")).segment(clip, prompts, None)
    with pytest.raises(ValueError, match="segmenter.checkpoint"):  # asked to train on nothing: says what to give it
        LearnedSegmenter().fit([])
    with pytest.raises(ValueError, match="unknown option"):
        LearnedSegmenter(training={"epochz": 3})
    with pytest.raises(ValueError, match="crop_size"):
        LearnedSegmenter(crop_size=30)


def test_train_writes_the_segmenter_checkpoint_and_eval_reads_it(tmp_path):
    """`train.py` (segmenter=learned, the default) trains the network on the training clips and writes segmenter.ckpt next to
    scorer.ckpt; an evaluation given that file segments with it (no training clips needed for the segmenter)."""
    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.tasks import evaluate, run_task, train

    quick = [f"segmenter.training.{k}={v}" for k, v in QUICK.items()] + ["segmenter.training.num_crops=200",
                                                                        "segmenter.training.epochs=1"]
    overrides = [*TINY_SYNTHETIC, "dataset.num_frames=40", "workers=1", "segmenter=learned", *quick]
    result = run_task(compose("train", overrides, tmp_path / "train"), train)
    ckpt = tmp_path / "train" / "run" / "segmenter.ckpt"
    assert ckpt.is_file() and (tmp_path / "train" / "run" / "scorer.ckpt").is_file()
    assert result["train/segmenter_crops"] == 200 and result["train/segmenter_loss"] > 0
    metrics = run_task(compose("eval", [*overrides, f"segmenter.checkpoint={ckpt}"], tmp_path / "eval"), evaluate)
    assert 0.0 <= metrics["test/pixel_ap"] <= 1.0
    # given the trained scorer (ckpt_path) and no segmenter.checkpoint, a run takes the segmenter.ckpt beside it ...
    from tao_lab.pipeline import Pipeline, use_segmenter_beside_scorer

    scorer_ckpt = f"ckpt_path={tmp_path / 'train' / 'run' / 'scorer.ckpt'}"
    assert Pipeline(compose("eval", [*overrides, scorer_ckpt], tmp_path / "e2")).segmenter.checkpoint == str(ckpt)
    # ... but never over the user's own choice, nor for another segmenter, nor when train.py wrote none there
    own = compose("eval", [*overrides, scorer_ckpt, "segmenter.checkpoint=elsewhere.ckpt"], tmp_path / "e3")
    assert use_segmenter_beside_scorer(own) is None and own.segmenter.checkpoint == "elsewhere.ckpt"
    assert use_segmenter_beside_scorer(compose("eval", [*TINY_SYNTHETIC, scorer_ckpt, "segmenter=classical"],
                                               tmp_path / "e4")) is None
    ckpt.unlink()
    assert Pipeline(compose("eval", [*overrides, scorer_ckpt], tmp_path / "e5")).segmenter.checkpoint is None


def test_without_training_clips_or_checkpoint_the_classical_step_is_used(tmp_path, caplog):
    """No training clip handed over (training.mode=unsupervised, a video) and no checkpoint: the masks are the
    classical segmenter's, with a warning that says how to get the learned ones; an unsupervised run completes."""
    clip, truth, boxes = moving_disc_clip(T=12)
    prompts = Prompts([2, 8], [1, 1], boxes[[2, 8]], [[0, 0]] * 2, [1.0, 1.0])
    scores = tracked_scores(boxes)
    with caplog.at_level("WARNING", logger="tao_lab.segmenter.learned"):
        got = LearnedSegmenter(hull="object").segment(clip, prompts, scores)
    want = ForegroundSegmenter(hull="object").segment(clip, prompts, scores)
    np.testing.assert_array_equal(got.instance_maps, want.instance_maps)
    np.testing.assert_array_equal(got.score_maps, want.score_maps)
    assert "no training clips" in caplog.text and "segmenter.ckpt" in caplog.text
    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.tasks import evaluate, run_task

    metrics = run_task(compose("eval", [*TINY_SYNTHETIC, "dataset.num_frames=40", "workers=1", "segmenter=learned",
                                        "training.mode=unsupervised"], tmp_path), evaluate)
    assert 0.0 <= metrics["test/pixel_ap"] <= 1.0


def test_a_trained_network_is_kept_in_the_cache_dir(tmp_path):
    """The pipeline hands the segmenter its cache dir: the network trained there is read back by a later run (a new
    process: the in-process memo cleared) on the same clips and settings, and gives the same masks."""
    from tao_lab.segmenter import learned

    options = {**QUICK, "num_crops": 100, "epochs": 1}
    first = LearnedSegmenter(training=options)
    first.use_cache_dir(tmp_path)
    first.fit(training_clips())
    assert len(list((tmp_path / "segmenter_nets").glob("*.pt"))) == 1
    learned._TRAINED.clear()
    second = LearnedSegmenter(training=options)
    second.use_cache_dir(tmp_path)
    assert second.fit(training_clips())["cached"] == 1
    clip, truth, boxes = moving_disc_clip(T=4)
    prompts = Prompts([2], [1], boxes[[2]], [[0, 0]], [1.0])
    np.testing.assert_allclose(second.segment(clip, prompts, None).score_maps,
                               first.segment(clip, prompts, None).score_maps, atol=1e-6)
    learned._TRAINED.clear()
    other = LearnedSegmenter(training={**options, "seed": 1})  # other settings: trained anew
    other.use_cache_dir(tmp_path)
    assert "cached" not in other.fit(training_clips())
    assert len(list((tmp_path / "segmenter_nets").glob("*.pt"))) == 2


def test_folded_network_gives_the_same_probabilities():
    """for_inference folds each BatchNorm into its convolution: the same logits as the network in eval mode, for
    BatchNorm statistics far from the identity."""
    import torch

    from tao_lab.segmenter.mask_net import build_mask_net, for_inference

    torch.manual_seed(0)
    net = build_mask_net(8).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.3, 3)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    folded = for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is left as it was


def test_a_missing_checkpoint_stops_the_run_before_any_work_and_says_where_it_comes_from(tmp_path):
    """segmenter.checkpoint naming no file: the run's preflight check stops it with the segmenter's own message
    (the file, and that train.py writes it), before any clip is read."""
    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.tasks import evaluate

    missing = tmp_path / "nowhere" / "segmenter.ckpt"
    cfg = compose("eval", [*TINY_SYNTHETIC, f"segmenter.checkpoint={missing}"], tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere/segmenter.ckpt not found.*written by `python train.py`"):
        evaluate(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))
