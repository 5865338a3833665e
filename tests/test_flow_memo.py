"""The flow the detector's motion split hands to the features of the same clip (tao_lab.features.flow_memo)."""
import numpy as np

from tao_lab.detector import BackgroundSubtractionDetector
from tao_lab.features import FeatureSet, FlowEstimator, MotionPatternFeature, VelocityFeature
from tao_lab.features.flow_memo import SHARED_FLOWS, FlowMemo, clip_key

from helpers import MovingSquareClip


def _greys(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (6, 8), dtype=np.uint8), rng.integers(0, 255, (6, 8), dtype=np.uint8)


def test_memo_gives_a_flow_once_and_only_for_the_same_frames():
    memo = FlowMemo()
    flow = np.ones((6, 8, 2), np.float32)
    grey, previous = _greys(0)
    memo.put("clip", 3, flow, grey, previous)
    assert memo.take("clip", 2, grey, previous) is None                  # another frame
    assert memo.take("other", 3, grey, previous) is None                 # another clip
    assert memo.take("clip", 3, grey, previous) is flow
    assert memo.take("clip", 3, grey, previous) is None                  # taken once
    memo.put("clip", 4, flow, grey, previous)
    assert memo.take("clip", 4, grey, previous[::-1].copy()) is None     # computed from other frames: not used
    memo.put("clip", 5, flow, grey, previous)
    memo.drop("clip")
    assert len(memo) == 0 and memo.take("clip", 5, grey, previous) is None


def test_memo_is_bounded_per_clip_and_in_clips():
    flow = np.ones((6, 8, 2), np.float32)
    grey, previous = _greys(1)
    entry = flow.nbytes + grey.nbytes + previous.nbytes
    memo = FlowMemo(clip_bytes=2 * entry, clips=2)
    for i in range(5):
        memo.put("a", i, flow, grey, previous)
    assert len(memo) == 2                                                # frames beyond the clip's budget not kept
    assert memo.take("a", 1, grey, previous) is flow and memo.take("a", 2, grey, previous) is None
    memo.put("b", 0, flow, grey, previous)
    memo.put("c", 0, flow, grey, previous)                               # a third clip: the oldest ("a") goes
    assert memo.take("a", 0, grey, previous) is None
    assert memo.take("b", 0, grey, previous) is flow and memo.take("c", 0, grey, previous) is flow


def test_features_use_the_detectors_flows_and_equal_their_own():
    """Detect (fills the memo), then extract: the features take the detector's flows and are identical to features
    computed with their own flow; the clip's leftovers are dropped at the end."""
    clip = MovingSquareClip(num_frames=30, width=200, squares=((10, 30, 4, 0, 20, 230), (60, 34, 1, 0, 20, 200)))
    features = FeatureSet({"velocity": VelocityFeature(), "motion_pattern": MotionPatternFeature()},
                          flow={"preset": "fast", "finest_scale": 1, "min_rows": None, "scale": 1.0})
    objects = BackgroundSubtractionDetector(split_motion=1.0).detect(clip)
    key = clip_key(clip, FlowEstimator().signature)
    stored = [i for i in range(clip.num_frames) if SHARED_FLOWS._store.get(key, {}).get(i) is not None]
    assert len(stored) >= 20                                              # frames with a blob wide enough to cut
    taken = []
    original = SHARED_FLOWS.take

    def spy(k, index, grey, previous):
        flow = original(k, index, grey, previous)
        taken.append(flow is not None)
        return flow

    SHARED_FLOWS.take = spy
    try:
        shared = features.extract(clip, objects, progress=False)
    finally:
        SHARED_FLOWS.take = original
    assert sum(taken) >= 20 and key not in SHARED_FLOWS._store
    own = features.extract(clip, objects, progress=False)                # nothing left: computes its own flow
    for name in own:
        np.testing.assert_array_equal(shared[name], own[name])


def test_default_configs_share_the_flow(compose_cfg):
    """The memo saves work only if the detector's flow settings are the features': true of the default configs."""
    cfg = compose_cfg("eval", [])
    detector = FlowEstimator(**cfg.detector.flow).signature
    assert cfg.detector.split_motion > 0 and detector == FlowEstimator(**cfg.features.flow).signature


def test_online_features_take_the_detector_steps_flow_and_equal_their_own():
    from tao_lab.streaming import StreamContext

    clip = MovingSquareClip(num_frames=30, width=200, squares=((10, 30, 4, 0, 20, 230), (60, 34, 1, 0, 20, 200)))
    features = FeatureSet({"velocity": VelocityFeature()}, flow={"preset": "fast", "finest_scale": 1})

    def run(share: bool):
        ctx = StreamContext(clip.height, clip.width, clip.fps)
        detector = BackgroundSubtractionDetector(split_motion=1.0).stream(ctx)
        stream = features.stream(ctx)
        if not share:
            stream.flows = None  # the features compute every flow themselves
        ctx.fit(clip)
        taken = []
        if share:
            original = ctx.flows.take
            ctx.flows.take = lambda *a: taken.append(original(*a)) or taken[-1]
        out = []
        for i, frame in enumerate(clip.frames()):
            boxes = detector.step(frame).xyxy
            out.append(stream.step(i, frame, boxes)["velocity"])
        return out, sum(t is not None for t in taken)

    shared, used = run(True)
    own, _ = run(False)
    assert used >= 20
    for a, b in zip(shared, own):
        np.testing.assert_array_equal(a, b)


def test_pipeline_hands_flows_to_the_segmenter_only_when_it_reads_the_same_flow(compose_cfg):
    """shares_flows: on for the default configs (the learned segmenter's motion coherence reads the features' flow
    settings); off when switched off, when the segmenter reads no flow, or reads another flow (nothing would take
    the flows left behind)."""
    from tao_lab.pipeline import shares_flows

    assert shares_flows(compose_cfg("eval", []))
    assert not shares_flows(compose_cfg("eval", ["share_flows=false"]))
    assert not shares_flows(compose_cfg("eval", ["segmenter.coherence=none"]))
    assert not shares_flows(compose_cfg("eval", ["segmenter=boxes"]))
    assert not shares_flows(compose_cfg("eval", ["+segmenter.flow.finest_scale=2"]))
    assert not shares_flows(compose_cfg("eval", ["features.flow.finest_scale=2"]))


def test_pipeline_segmentation_with_the_features_flows_equals_its_own(tmp_path):
    """A clip scored with segment_next=True (its features computed there) hands its flows to its segmentation, which
    takes them (none is computed again) and gives the same masks as share_flows=false; nothing stays in the memo."""
    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.pipeline import Pipeline, load_dataset

    def run(share: bool, where):
        cfg = compose("eval", [*TINY_SYNTHETIC, "dataset.num_frames=30", "workers=1", "segmenter=classical",
                               "segmenter.coherence=mask", f"share_flows={str(share).lower()}"], where)
        data = load_dataset(cfg)
        pipe = Pipeline(cfg)
        pipe.fit_scorer(data.train)
        clip = data.test[0]
        calls = []
        estimator = pipe.segmenter.flow_estimator
        original = type(estimator).__call__
        type(estimator).__call__ = lambda self, a, b: calls.append(self is estimator) or original(self, a, b)
        try:
            seg = pipe.segmentation(clip, pipe.scores(clip, segment_next=True))
        finally:
            type(estimator).__call__ = original
        assert not any(key[:2] == (clip.source, clip.clip_id) for key in SHARED_FLOWS._store)
        return seg, sum(calls)

    shared, own_computed = run(True, tmp_path / "shared")
    own, computed = run(False, tmp_path / "own")
    assert computed >= 10 and own_computed <= 1       # frame 0 (the flow to the next frame) is the segmenter's own
    np.testing.assert_array_equal(shared.score_maps, own.score_maps)
    np.testing.assert_array_equal(shared.instance_maps, own.instance_maps)
    np.testing.assert_array_equal(shared.objects.xyxy, own.objects.xyxy)
    assert (own.instance_maps > 0).any()
