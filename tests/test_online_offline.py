"""Online and offline run the same stage objects: same objects, same track partition, same features, same scores.

The default weight-free pipeline (background-subtraction detector, ByteTrack, attribute scorer fitted once on the
training clips) runs on each synthetic test clip twice: offline, per clip (``Pipeline.tracks`` /
``Pipeline.features``), and online, frame by frame (``OnlinePipeline.process``) with a ring buffer of T frames.
The stream's background model is fitted on the clip itself, as the offline detector fits its per-clip model
(online it is normally fitted on the warm-up frames; with other frames the blobs differ, by design).

What must be equal, exactly:
- every frame's boxes, in the same order;
- the tracks: one online id per offline id and back (the labels differ: online ids are stream-wide);
- the features of every frame but the first (frame 0's optical flow: offline looks one frame ahead, online has no
  previous frame, so flow-based features such as velocity differ there);
- the object scores and the frame score of frame t >= T, against the offline scorer's ``score_clip`` on the same
  window of the offline tracks and features (frames t-T+1..t). Windows that hold frame 0 inherit its features'
  difference. The scores of the whole-clip offline pass differ from both: its track and frame-score smoothing
  also see the frames after t, which a stream cannot.
"""
import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, compose

T = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from tao_lab.online import OnlinePipeline
    from tao_lab.pipeline import Pipeline, load_dataset

    cfg = compose("eval", TINY_SYNTHETIC, tmp_path_factory.mktemp("online_offline"))
    assert (cfg.detector._target_.endswith("BackgroundSubtractionDetector")
            and cfg.tracker._target_.endswith("ByteTracker") and cfg.scorer._target_.endswith("AttributeScorer"))
    dataset = load_dataset(cfg)
    pipe = Pipeline(cfg)
    pipe.fit_scorer(dataset.train)  # fitted once, used by both modes
    out = []
    for clip in dataset.test:
        online = OnlinePipeline(pipe, buffer_frames=T, fps=clip.fps, keep_frames=False)
        online.start(clip, clip.clip_id)
        frames, feats = [], []
        for frame in clip.frames():
            frames.append(online.process(frame))
            feats.append(online.stages["score"].buffer[-1][2])  # the features the online scorer was given
        out.append((clip, pipe.tracks(clip), pipe.features(clip), frames, feats))
    return pipe, out


def test_same_boxes_and_tracks_on_every_frame(runs):
    _, out = runs
    for clip, tracks, _, frames, _ in out:
        assert len(frames) == clip.num_frames and len(tracks) > 0
        ids: dict[int, int] = {}
        for t, r in enumerate(frames):
            rows = np.flatnonzero(tracks.frame == t)
            np.testing.assert_array_equal(r.objects.xyxy, tracks.xyxy[rows])
            np.testing.assert_array_equal(r.objects.frame, np.full(len(rows), t))
            for off, on in zip(tracks.track_id[rows].tolist(), r.objects.track_id.tolist()):
                assert ids.setdefault(off, on) == on, f"{clip.clip_id} frame {t}: offline track {off} split online"
        assert len(set(ids.values())) == len(ids), f"{clip.clip_id}: two offline tracks merged online"


def test_same_features_after_the_first_frame(runs):
    _, out = runs
    for clip, tracks, offline, frames, online in out:
        for t in range(1, clip.num_frames):
            rows = tracks.frame == t
            for name, values in offline.items():
                np.testing.assert_array_equal(online[t][name], values[rows], err_msg=f"{clip.clip_id} {t} {name}")


def test_same_scores_where_the_window_is_the_same(runs):
    from tao_lab.types import ObjectTable

    pipe, out = runs
    compared = flagged = 0
    for clip, tracks, feats, frames, _ in out:
        for t in range(T, clip.num_frames):
            a = t - T + 1
            sel = (tracks.frame >= a) & (tracks.frame <= t)
            window = tracks.take(sel)
            window = ObjectTable(window.frame - a, window.xyxy, window.score, window.track_id, window.cls)
            ref = pipe.scorer.score_clip(window, {k: v[sel] for k, v in feats.items()}, T)
            np.testing.assert_array_equal(frames[t].objects.score, ref.objects.score[ref.objects.frame == T - 1],
                                          err_msg=f"{clip.clip_id} frame {t}")
            assert frames[t].frame_score == float(ref.frame_scores[T - 1])
            compared += len(frames[t].objects)
            flagged += int(frames[t].flagged.sum())
    assert compared > 100 and flagged > 0  # real objects, some of them anomalous
