"""infer.py on a video file / frame folder without GT: complete, consistent outputs; clear errors; no half outputs."""
import json

import numpy as np
import pytest

from helpers import TINY_SYNTHETIC, count_frames, write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="module")
def infer_run(video, tmp_path_factory):
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    tmp = tmp_path_factory.mktemp("infer")
    # two chunks: exercises the id offsets and the chunked, bounded-memory path
    cfg = compose("infer", [f"input={video}", "fit_seconds=2", "chunk_seconds=2.4", "gallery_size=5"], tmp)
    result = run_task(cfg, infer)
    return tmp / "run" / "outputs", result


def test_outputs_are_complete(infer_run):
    out, result = infer_run
    assert result["frames"] == 120 and result["chunks"] == 2
    names = {p.name for p in out.iterdir()}
    assert {"annotated.mp4", "masks", "tracks.csv", "tracks_mot.txt", "tracks.txt", "detections.txt", "objects.csv",
            "segments.csv", "frame_scores.csv", "prompts.csv", "events.csv", "report.html", "NOTE.txt",
            "summary.json"} <= names
    assert not (out.parent / "outputs.partial").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 120 and "fitted on the first 2 s" in summary["scorer"]
    assert "fitted on the first 2 s" in (out / "NOTE.txt").read_text()
    # the scene check of the default scorer's groups, whole video and fit window (its arithmetic: test_pipeline_e2e)
    assert list(summary["scene_check"]) == ["motion", "appearance", "place", "direction", "shape", "dwell"]
    for shares in summary["scene_check"].values():
        assert set(shares) == {"video", "fit_window"} and all(0.0 <= v <= 1.0 for v in shares.values())


def test_annotated_video_has_every_frame_and_a_timeline_bar(infer_run):
    from tao_lab.report.overlay import TIMELINE_HEIGHT

    out, _ = infer_run
    n, shape = count_frames(out / "annotated.mp4")
    assert n == 120 and shape[0] == 160 + TIMELINE_HEIGHT and shape[1] == 240


def test_masks_tracks_and_scores_are_consistent(infer_run):
    from tao_lab.formats import read_mask_png, read_mot, read_objects_csv, read_tracks_csv

    out, result = infer_run
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 120 and masks[0].name == "000000.png"
    tracks = read_tracks_csv(out / "tracks.csv")
    assert len(tracks) == result["objects_scored"] > 0
    assert (out / "tracks.csv").read_text().startswith("track_id,frame_id,x_min,y_min,x_max,y_max,score\n")
    mot = read_mot(out / "tracks_mot.txt")
    assert len(mot) == len(tracks) and np.loadtxt(out / "tracks_mot.txt", delimiter=",", ndmin=2)[:, 0].min() >= 1
    np.testing.assert_array_equal(mot.frame, tracks.frame)  # 1-based in the file, 0-based read back
    np.testing.assert_allclose(mot.xyxy, tracks.xyxy, atol=0.02)
    # objects.csv (the schema of the online mode too): every tracked object, flagged when above tau
    assert (out / "objects.csv").read_text().startswith("track_id,frame_id,x_min,y_min,x_max,y_max,score,flagged\n")
    objects, flagged = read_objects_csv(out / "objects.csv")
    np.testing.assert_array_equal(objects.track_id, tracks.track_id)
    np.testing.assert_array_equal(objects.xyxy, tracks.xyxy)
    np.testing.assert_array_equal(flagged, objects.score > result["prompt_threshold_tau"])
    assert flagged.any() and not flagged.all()
    segments = read_tracks_csv(out / "segments.csv")
    assert len(segments) == result["objects_segmented"] > 0
    from tao_lab.metrics import read_detections_txt, read_tracks_txt

    assert len(read_tracks_txt(out / "tracks.txt")) == len(tracks)
    dets = read_detections_txt(out / "detections.txt")
    np.testing.assert_array_equal(dets.frame, segments.frame)
    # masks hold only the ids of that frame's segmented objects (an object fully covered by a higher-scored one
    # keeps its row but loses its pixels), and every frame with objects has mask pixels
    for f in np.unique(segments.frame):
        inst = read_mask_png(out / "masks" / f"{int(f):06d}.png")
        ids = set(segments.track_id[segments.frame == f].tolist())
        in_mask = set(np.unique(inst).tolist()) - {0}
        assert in_mask and in_mask <= ids
    scores = np.loadtxt(out / "frame_scores.csv", delimiter=",", skiprows=1, ndmin=2)
    assert scores.shape == (120, 4)
    # the planted anomalies start at frame 66; the first part (fitted on) is normal
    assert scores[66:, 2].max() > scores[:60, 2].max()


def test_report_is_self_contained_and_states_the_fit(infer_run):
    out, _ = infer_run
    html = (out / "report.html").read_text()
    assert "fitted on the first 2 s" in html
    assert "Score timeline" in html and "data:image/png;base64," in html
    assert html.count("data:image/jpeg;base64,") >= 1  # gallery crops
    assert "Configuration used" in html and "fit_seconds: 2" in html
    assert "http://" not in html and "https://" not in html


def test_frame_folder_input(tmp_path, video):
    import cv2

    from helpers import compose
    from tao_lab.tasks import infer, run_task

    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(video))
    for i in range(70):
        ok, f = cap.read()
        cv2.imwrite(str(folder / f"img{i}.png"), f)
    cfg = compose("infer", [f"input={folder}", "fit_seconds=2", "write_video=false", "report=false"], tmp_path)
    result = run_task(cfg, infer)
    out = tmp_path / "run" / "outputs"
    assert result["frames"] == 70 and len(list((out / "masks").glob("*.png"))) == 70
    assert not (out / "annotated.mp4").exists() and not (out / "report.html").exists()


def test_corrupt_input_gives_a_clear_error_and_no_outputs(tmp_path):
    from helpers import compose
    from tao_lab.infer import InferenceInputError
    from tao_lab.tasks import infer, run_task

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    cfg = compose("infer", [f"input={bad}"], tmp_path)
    with pytest.raises(InferenceInputError, match="broken.mp4"):
        run_task(cfg, infer)
    cfg = compose("infer", [f"input={tmp_path / 'missing.avi'}"], tmp_path)
    with pytest.raises(InferenceInputError, match="missing.avi"):
        run_task(cfg, infer)
    assert not (tmp_path / "run" / "outputs").exists()
    assert (tmp_path / "run" / "FAILED.json").is_file()


def test_failure_while_writing_leaves_no_outputs(tmp_path, video, monkeypatch):
    import tao_lab.infer as infer_mod
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    def broken_render(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(infer_mod, "_render", broken_render)
    cfg = compose("infer", [f"input={video}", "fit_seconds=2", "paths.cache_dir=null"], tmp_path)
    with pytest.raises(OSError, match="disk full"):
        run_task(cfg, infer)
    run = tmp_path / "run"
    assert not (run / "outputs").exists() and not (run / "outputs.partial").exists()
    assert not list(run.rglob("*.partial.mp4"))


def test_fit_seconds_covering_the_input_is_refused(tmp_path, video):
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    cfg = compose("infer", [f"input={video}", "fit_seconds=60"], tmp_path)
    with pytest.raises(ValueError, match="covers the whole input"):
        run_task(cfg, infer)


def test_trained_checkpoint_is_used(tmp_path, video):
    from helpers import compose
    from tao_lab.tasks import infer, run_task, train

    train_cfg = compose("train", TINY_SYNTHETIC, tmp_path / "train")
    run_task(train_cfg, train)
    ckpt = tmp_path / "train" / "run" / "scorer.ckpt"
    assert ckpt.is_file()
    cfg = compose("infer", [f"input={video}", f"ckpt_path={ckpt}", "write_video=false"], tmp_path)
    result = run_task(cfg, infer)
    assert "loaded from checkpoint" in result["scorer"]
    assert "loaded from checkpoint" in (tmp_path / "run" / "outputs" / "report.html").read_text()


def test_chunks_respect_duration_and_memory_budget():
    from tao_lab.infer import chunk_bounds

    assert chunk_bounds(100, 25, None) == [(0, 100)]
    assert chunk_bounds(100, 25, 2.0) == [(0, 50), (50, 100)]
    assert chunk_bounds(110, 25, 2.0) == [(0, 50), (50, 110)]  # a short tail joins the last chunk
    # 1080p: 1 GiB of mask maps holds 86 frames, whatever chunk_seconds says
    chunks = chunk_bounds(1000, 25, 60.0, 1080, 1920, max_chunk_mb=1024)
    assert max(b - a for a, b in chunks) <= 1024 * 2 ** 20 // (6 * 1080 * 1920) + 86 // 4
    assert chunks[0] == (0, 86) and chunks[-1][1] == 1000


# ----- empty scenes ------------------------------------------------------------------------------------------
def write_frames(folder, num_static, num_moving=0, seed=0):
    """A frame folder (lossless PNGs): ``num_static`` frames of the empty synthetic scene (nothing moves, so the
    detector finds nothing), then ``num_moving`` frames of a synthetic clip with walkers."""
    import cv2

    from tao_lab.dataset import SyntheticGenerator

    clip = SyntheticGenerator(seed=seed, num_train_clips=0, num_test_clips=1, num_frames=max(num_moving, 2),
                              height=160, width=240, anomalies_per_clip=(0, 0)).dataset().test[0]
    folder.mkdir(parents=True)
    frames = [clip.scene.background] * num_static + list(clip.frames())[:num_moving]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    return folder


@pytest.fixture(scope="module")
def trained_scorer(tmp_path_factory):
    """A scorer checkpoint for the default pipeline, written by train.py's task on the tiny synthetic set."""
    from helpers import TINY_SYNTHETIC, compose
    from tao_lab.tasks import run_task, train

    tmp = tmp_path_factory.mktemp("train")
    run_task(compose("train", [*TINY_SYNTHETIC], tmp), train)
    ckpt = tmp / "run" / "scorer.ckpt"
    assert ckpt.is_file()
    return ckpt


def test_empty_fitting_window_says_what_to_do(tmp_path):
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    folder = write_frames(tmp_path / "quiet_start", num_static=40, num_moving=30)
    cfg = compose("infer", [f"input={folder}", "fit_seconds=1", "write_video=false"], tmp_path)
    with pytest.raises(ValueError) as err:
        run_task(cfg, infer)
    msg = str(err.value)
    assert "quiet_start" in msg and "no detected object" in msg
    assert "fit_seconds=2" in msg and "ckpt_path=" in msg  # the two ways out: a longer window, a checkpoint
    assert not (tmp_path / "run" / "outputs").exists()


def test_video_without_objects_scores_at_the_training_minimum(tmp_path, trained_scorer):
    from helpers import compose
    from tao_lab.formats import read_objects_csv, read_tracks_csv
    from tao_lab.tasks import infer, run_task

    folder = write_frames(tmp_path / "empty_scene", num_static=30)
    cfg = compose("infer", [f"input={folder}", f"ckpt_path={trained_scorer}", "write_video=false"],
                  tmp_path)
    result = run_task(cfg, infer)
    out = tmp_path / "run" / "outputs"
    assert result["objects_scored"] == 0 and result["objects_segmented"] == 0 and result["anomalous_frames"] == 0
    assert len(read_tracks_csv(out / "tracks.csv")) == 0 and len(read_objects_csv(out / "objects.csv")[0]) == 0
    scores = np.loadtxt(out / "frame_scores.csv", delimiter=",", skiprows=1, ndmin=2)
    # every frame at the calibrated training minimum (0), below the threshold
    assert scores.shape == (30, 4) and (scores[:, 2] == 0).all() and (scores[:, 3] == 0).all()
    # the alarm calibrated on these empty frames: threshold 0, and a frame must score strictly above it
    assert result["prompt_threshold_tau"] > 0 and result["alarm_threshold"] == 0


def test_online_empty_scene(tmp_path, trained_scorer):
    """Online: an empty warm-up without a checkpoint says what to do; with one, empty frames score 0."""
    import cv2

    from helpers import compose
    from tao_lab.online import OnlinePipeline
    from tao_lab.pipeline import NoTrainingObjectsError

    folder = write_frames(tmp_path / "frames", num_static=26)
    frames = [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]
    online = OnlinePipeline.from_config(compose("infer", ["input=unused", "buffer_frames=4"], tmp_path / "a"))
    with pytest.raises(NoTrainingObjectsError, match=r"camera7.*no detected object.*fit_seconds.*ckpt_path"):
        online.warmup(frames[:20], source="camera7")
    cfg = compose("infer", ["input=unused", "buffer_frames=4", f"ckpt_path={trained_scorer}"],
                  tmp_path / "b")
    online = OnlinePipeline.from_config(cfg)
    online.warmup(frames[:20], source="camera7")  # the alarm's calibration needs >= 16 warm-up frames
    results = [online.process(f) for f in frames[20:]]
    assert [r.index for r in results] == list(range(20, 26))
    for r in results:
        assert len(r.objects) == 0 and r.frame_score == 0.0 and not r.anomalous and not r.instance_map.any()


def test_alarm_events_and_report_lead(infer_run):
    """The frame alarm is the calibrated one (stated in summary.json), events match the flags, and the report
    opens with the events and the timeline, with a video the events seek."""
    out, result = infer_run
    summary = json.loads((out / "summary.json").read_text())
    a = summary["alarm"]
    assert a["target_false_alarm_rate"] == 0.005 and a["method"] == "conformal"  # configs/pipeline.yaml defaults
    assert a["held_out_fit_frames"] == 50 and "cross-fitting over 5 track parts" in a["calibration"]
    assert 0.0 <= a["false_alarm_rate_on_held_out_fit_frames"] <= 0.005
    assert summary["alarm_threshold"] == pytest.approx(a["threshold"])
    rows = np.loadtxt(out / "frame_scores.csv", delimiter=",", skiprows=1, ndmin=2)
    assert np.array_equal(rows[:, 3].astype(bool), rows[:, 2] > a["threshold"])
    assert summary["anomalous_frames"] == int(rows[:, 3].sum())
    assert summary["flagged_in_fit_window"] == int(rows[:50, 3].sum())
    # every event spans flagged frames only at its ends, and lies where frames are flagged
    ev_rows = (out / "events.csv").read_text().splitlines()
    assert ev_rows[0].startswith("event,start_frame,end_frame") and len(ev_rows) - 1 == len(summary["events"])
    for ev in summary["events"]:
        assert rows[ev["start_frame"], 3] == 1 and rows[ev["end_frame"], 3] == 1
        assert ev["peak_score"] == pytest.approx(rows[ev["start_frame"]:ev["end_frame"] + 1, 2].max(), abs=1e-4)
    page = (out / "report.html").read_text()
    assert page.index("<h2>Events (") < page.index("<h2>Score timeline") < page.index("<h2>Summary")
    assert "<video id='annotated'" in page and "seekTo(" in page and "target false-alarm rate of 0.005" in page
