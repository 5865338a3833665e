"""Known answers for the calibrated alarm, event merging, the operating point and the fragment rule."""
import numpy as np
import pytest

from tao_lab.events import EventBuilder, find_events
from tao_lab.fragments import fragment_reasons, rank_tracks
from tao_lab.metrics.operating_point import intervals, operating_point
from tao_lab.threshold import ConformalThreshold
from tao_lab.types import ObjectTable
from tao_lab.user_errors import ConfigError


# ----- the conformal threshold ------------------------------------------------------------------------------
def test_conformal_threshold_is_the_stated_order_statistic():
    x = np.arange(1, 101, dtype=float)  # 1..100
    thr = ConformalThreshold(0.05).fit(x)
    assert thr.tau == 96.0  # k = ceil(101 * 0.95) = 96
    assert int(thr(x).sum()) == 4 and thr.fallback is None
    # too few scores for the rate: the maximum, with the reason recorded
    small = ConformalThreshold(0.01).fit(np.arange(10.0))
    assert small.tau == 9.0 and "too few" in small.fallback


def test_conformal_threshold_skips_a_pile_of_empty_frames():
    x = np.concatenate([np.zeros(995), np.linspace(1, 2, 5)])  # 99.5% of the frames hold no object (score 0)
    thr = ConformalThreshold(0.01).fit(x)
    assert thr.tau == 2.0 and "minimum" in thr.fallback  # the quantile over the 5 scores above 0: their max
    assert not thr(np.zeros(5)).any()


def test_conformal_rate_holds_on_fresh_normal_scores():
    rng = np.random.default_rng(0)
    thr = ConformalThreshold(0.01).fit(rng.normal(size=2000))
    fresh = rng.normal(size=50_000)
    # tolerance 0.004: the binomial spread of the 1% quantile of 2000 scores
    assert abs(thr(fresh).mean() - 0.01) < 0.004


def test_calibrated_alarm_on_synthetic_clips(tmp_path):
    """Cross-fitted on 3 normal training clips, the alarm flags at most 2x the target rate (tolerance: the held-out
    normal clips hold 200 correlated frames) on 2 held-out NORMAL clips, and catches the planted anomalies."""
    from helpers import compose
    from tao_lab.alarm import calibrate_on_training
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", ["dataset.num_train_clips=5", "dataset.num_test_clips=1", "dataset.num_frames=100",
                           "alarm.target_false_alarm_rate=0.05", "alarm.folds=3"], tmp_path)
    data = load_dataset(cfg)
    fit, held_out_normal = data.train[:3], data.train[3:]
    pipe = Pipeline(cfg)
    pipe.fit_scorer(fit)
    alarm = calibrate_on_training(pipe, cfg, fit)
    assert alarm.target_rate == 0.05 and alarm.calibration_frames == 3 * 100
    assert alarm.calibration_rate <= 0.05
    normal_flags = np.concatenate([alarm(pipe.scores(c).frame_scores) for c in held_out_normal])
    assert normal_flags.mean() <= 2 * 0.05
    caught = []
    for c in data.test:
        flags = alarm(pipe.scores(c).frame_scores)
        labels = np.asarray(c.gt.frame_labels, bool)
        caught.append(flags[labels].mean())
        print("held-out normal flagged", normal_flags.mean(), "anomalous caught", flags[labels].mean(),
              "normal part of the test clip flagged", flags[~labels].mean())
        assert flags[labels].mean() > flags[~labels].mean()  # flags concentrate on the planted anomalies
    assert max(caught) > 0.3


def test_track_parts_keep_every_track_whole_and_span_the_window():
    from tao_lab.alarm import track_parts, window_blocks
    from tao_lab.scorer.scene import dwell_frames
    from tao_lab.types import ObjectTable

    T = 60
    # track 7 stands still for all 60 frames; tracks 1..4 walk through in turn; two untracked rows
    frames = [*range(T), *[f for t in range(4) for f in range(15 * t, 15 * t + 15)], 3, 40]
    tids = [7] * T + [1 + i // 15 for i in range(60)] + [-1, -1]
    xs = [50.0] * T + [10.0 + 3 * (i % 15) for i in range(60)] + [5.0, 5.0]
    n = len(frames)
    xyxy = np.array([[x, 20.0, x + 10, 40.0] for x in xs], np.float32)
    objects = ObjectTable(np.array(frames), xyxy, np.ones(n, np.float32), np.array(tids), np.zeros(n, int))
    feats = {"row": np.arange(n, dtype=np.float32)[:, None]}
    parts = track_parts(objects, feats, T, folds=3)
    assert len(parts) == 3 and all(p[2] == T for p in parts)
    owner = {}
    for i, (o, f, _) in enumerate(parts):
        assert np.array_equal(np.asarray(o.frame), np.asarray(objects.frame)[f["row"][:, 0].astype(int)])
        for t in set(np.asarray(o.track_id).tolist()) - {-1}:
            assert owner.setdefault(t, i) == i  # a track never spans two parts
    assert sorted(owner) == [1, 2, 3, 4, 7] and sum(len(p[0]) for p in parts) == n
    stand = next(p for p in parts if 7 in np.asarray(p[0].track_id))[0]
    foot = np.stack([(stand.xyxy[:, 0] + stand.xyxy[:, 2]) / 2, stand.xyxy[:, 3]], 1)
    # the stander's history is whole in its part: it has stood 59 frames at the last frame, as on the whole window
    assert dwell_frames(stand, foot, np.full(len(stand), 5.0))[np.asarray(stand.track_id) == 7].max() == T - 1
    blocks = window_blocks(objects, feats, T, folds=3)  # time blocks cut that history to 20 frames
    assert max(len(b[0].frame[np.asarray(b[0].track_id) == 7]) for b in blocks) == 20
    with pytest.raises(ValueError, match="too few to calibrate"):
        track_parts(objects.take(np.asarray(objects.track_id) == 7), {"row": feats["row"][:T]}, T, folds=3)

    # window_crossfit: one track cannot be split by track, so it falls back to time blocks
    from tao_lab.alarm import window_crossfit

    class OneScorerPipe:  # fits "scorers" that give every frame its number of objects
        def new_fitted_scorer(self, items, single_process=False):
            class S:
                def score_clip(self, o, f, n):
                    return type("R", (), {"frame_scores": np.bincount(np.asarray(o.frame), minlength=n)})()
            return S()

    only7 = objects.take(np.asarray(objects.track_id) == 7)
    parts, scores, how = window_crossfit(OneScorerPipe(), only7, {"row": feats["row"][:T]}, T, 3, "tracks")
    assert len(parts) == 3 and [p[2] for p in parts] == [20, 20, 20] and "track parts" not in how
    parts, scores, how = window_crossfit(OneScorerPipe(), objects, feats, T, 3, "tracks")
    assert "3 track parts" in how and len(scores) == T
    assert np.all(scores >= 1)  # the stander is in every frame: the max over parts sees it


@pytest.mark.parametrize("split", ["time", "tracks"])
def test_a_single_training_clip_is_cross_fitted_by_the_configured_split(tmp_path, split):
    from helpers import compose
    from tao_lab.alarm import calibrate_on_training
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", ["dataset.num_train_clips=1", "dataset.num_test_clips=1", "dataset.num_frames=80",
                           "alarm.folds=3", f"alarm.split={split}"], tmp_path)
    data = load_dataset(cfg)
    pipe = Pipeline(cfg)
    pipe.fit_scorer(data.train)
    alarm = calibrate_on_training(pipe, cfg, data.train)
    # time: 3 blocks of the 80 frames, one score per frame; tracks: every part spans the 80 frames, max over parts
    assert alarm.calibration_frames == 80
    assert ("track parts" in alarm.calibration) == (split == "tracks") and "training clip" in alarm.calibration
    assert np.isfinite(alarm.tau)


def test_held_out_calibration_scores_are_cached_across_downstream_settings(tmp_path):
    """A sweep over the threshold, prompts or the alarm's target re-fits no fold scorer: the held-out scores are
    read from the stage cache (same alarm), and a change that alters them (folds) computes them afresh."""
    from helpers import compose
    from omegaconf import open_dict
    from tao_lab.alarm import calibrate_on_training
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", ["dataset.num_train_clips=3", "dataset.num_test_clips=1", "dataset.num_frames=60",
                           "alarm.folds=3"], tmp_path)
    data = load_dataset(cfg)
    pipe = Pipeline(cfg)
    pipe.fit_scorer(data.train)
    first = calibrate_on_training(pipe, cfg, data.train)

    def no_fit(items, single_process=False):
        raise AssertionError("a fold scorer was fitted although its held-out scores are cached")

    pipe.new_fitted_scorer = no_fit
    again = calibrate_on_training(pipe, cfg, data.train)
    assert again.tau == first.tau and again.calibration == first.calibration
    with open_dict(cfg):
        cfg.alarm.target_false_alarm_rate = 0.2
        cfg.threshold.tau = 0.3
    looser = calibrate_on_training(pipe, cfg, data.train)  # same cached scores, another quantile
    assert looser.target_rate == 0.2 and looser.tau <= first.tau
    with open_dict(cfg):
        cfg.alarm.folds = 2
    with pytest.raises(AssertionError, match="fold scorer was fitted"):
        calibrate_on_training(pipe, cfg, data.train)


def test_an_unknown_split_is_refused(tmp_path):
    from helpers import compose
    from tao_lab.alarm import calibrate_on_training
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", ["dataset.num_train_clips=1", "dataset.num_test_clips=1", "dataset.num_frames=40",
                           "alarm.split=frames"], tmp_path)
    data = load_dataset(cfg)
    pipe = Pipeline(cfg)
    with pytest.raises(ConfigError, match="alarm.split must be 'time' or 'tracks'"):
        calibrate_on_training(pipe, cfg, data.train)


# ----- events -----------------------------------------------------------------------------------------------
def test_event_merging_on_hand_made_flags():
    f = np.zeros(32, bool)
    f[[2, 3, 4, 6, 7]] = True      # a gap of 1 frame: merged into one event 2..7
    f[[12]] = True                 # a single frame: shorter than min_length 2 -> dropped
    f[[20, 21, 24, 25, 26]] = True  # a gap of 2 frames: merged (max_gap 2), 20..26
    f[[30]] = True                 # 3 unflagged frames after 26 -> a new event, but 1 frame long -> dropped
    scores = np.arange(32, dtype=float)
    ev = find_events(f, scores, max_gap=2, min_length=2)
    assert [(e.start, e.end, e.peak_frame) for e in ev] == [(2, 7, 7), (20, 26, 26)]
    assert [e.index for e in ev] == [1, 2]
    assert [(e.start, e.end) for e in find_events(f, scores, max_gap=0, min_length=1)] == \
        [(2, 4), (6, 7), (12, 12), (20, 21), (24, 26), (30, 30)]
    # streaming, fed every frame, gives the same events, each as soon as its gap is exceeded
    b, got = EventBuilder(2, 2), []
    for i in range(32):
        done = b.push(i, bool(f[i]), scores[i])
        if done:
            assert i == done[-1].end + 3  # closed by the third unflagged frame
        got += done
    got += b.close()
    assert [(e.start, e.end) for e in got] == [(2, 7), (20, 26)]


def test_operating_point_known_answer():
    labels = [np.array([0, 0, 1, 1, 1, 0, 0, 1, 0, 0], bool)]
    flags = [np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0], bool)]
    assert intervals(labels[0]) == [(2, 4), (7, 7)]
    op = operating_point(flags, labels, [[(0, 0), (2, 3)]])
    assert op["precision"] == pytest.approx(2 / 3) and op["recall"] == pytest.approx(2 / 4)
    assert op["false_alarm_rate"] == pytest.approx(1 / 6)
    assert op["event_recall"] == 0.5 and op["false_events"] == 1 and op["events"] == 2


# ----- fragments --------------------------------------------------------------------------------------------
def _track(tid, boxes):
    boxes = np.asarray(boxes, float)
    return ObjectTable(np.arange(len(boxes)), boxes, np.ones(len(boxes)), np.full(len(boxes), tid), np.zeros(len(boxes)))


def test_fragment_rule_on_synthetic_boxes():
    H, W = 240, 360
    walk = [[100 + 2 * i, 80, 120 + 2 * i, 140] for i in range(20)]  # a 20x60 person walking
    tiny = [[200, 200, 204, 204]] * 20
    edge = [[0, 50 + i, 15, 120 + i] for i in range(20)]  # a strip glued to the left border
    short = [[150, 100, 170, 160]] * 3
    jumpy = [[50, 50, 50 + (20 if i % 2 else 60), 110] for i in range(20)]  # width 20 <-> 60 every frame
    enters = [[0, 60, 20, 120]] * 3 + [[5 + 3 * i, 60, 25 + 3 * i, 120] for i in range(17)]  # walks in from the edge
    tracks = ObjectTable.concat([_track(1, walk), _track(2, tiny), _track(3, edge), _track(4, short),
                                 _track(5, jumpy), _track(6, enters)])
    reasons = fragment_reasons(tracks, H, W)
    assert reasons == {1: "", 2: "tiny", 3: "edge", 4: "short", 5: "jumpy", 6: ""}
    # the gallery ranks the real objects first even when fragments score higher
    score = np.where(tracks.track_id == 1, 0.5, np.where(tracks.track_id == 6, 0.4, 7.8)).astype(np.float32)
    rows = rank_tracks(tracks.with_score(score), reasons, 4)
    assert [int(tracks.track_id[r]) for r in rows][:2] == [1, 6]
    assert len(rows) == 4


def test_fold_fits_ask_for_a_single_process_trainer():
    """The alarm's fold scorers are fitted in rank 0 alone (the other DDP ranks have left after the main fit), so
    they must not get a multi-process Trainer (the slow DDP test in tests/test_scaleout.py runs the real thing)."""
    from tao_lab.alarm import crossfit_items

    calls = []

    class Pipe:
        def new_fitted_scorer(self, items, single_process=False):
            calls.append(single_process)
            raise ValueError("no fit in this test")

    items = [(np.zeros(3), {}, 10) for _ in range(3)]
    with pytest.raises(ValueError, match="no fold could fit"):
        crossfit_items(Pipe(), items, 3)
    assert calls == [True, True, True]
