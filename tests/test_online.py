"""Online mode: a video file read as a stream, frame by frame, bounded buffer, per-frame results and outputs."""
import json

import numpy as np
import pytest

from helpers import write_video


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("stream") / "stream.mp4")


@pytest.fixture(scope="module")
def online_results(stream, tmp_path_factory):
    from helpers import compose
    from tao_lab.online import OnlinePipeline

    tmp = tmp_path_factory.mktemp("online")
    cfg = compose("infer", ["input=unused", "buffer_frames=8"], tmp)
    online = OnlinePipeline.from_config(cfg)
    results = list(online.run(str(stream), fit_seconds=2.0))
    return online, results


def test_every_frame_after_warmup_is_emitted_in_order(online_results):
    online, results = online_results
    assert [r.index for r in results] == list(range(50, 120))  # 2 s at 25 fps = 50 warm-up frames
    assert "fitted on the first 50 frames" in online.warmup_note
    for r in results:
        assert np.all(r.objects.frame == r.index) and np.all(r.objects.track_id >= 1)
        assert r.flagged.shape == (len(r.objects),) and r.objects.score.dtype == np.float32
        assert r.instance_map.shape == (160, 240) and r.score_map.shape == (160, 240)
        assert r.latency_s > 0 and r.anomalous == (r.frame_score > online.alarm.tau)
    # the scorer's ring buffer never holds more than T frames
    assert len(online.stages["score"].buffer) == 8


def test_stream_finds_the_anomalies_and_masks_carry_track_ids(online_results):
    online, results = online_results
    normal = [r.frame_score for r in results if r.index < 60]
    anomalous_part = [r.frame_score for r in results if r.index >= 66]
    assert max(anomalous_part) > max(normal)
    masked = [r for r in results if r.instance_map.any()]
    assert masked, "no anomalous object was segmented online"
    for r in masked:
        ids = set(np.unique(r.instance_map).tolist()) - {0}
        # masks are labelled with the track id of the object they cover (or a fresh id >= 1e6)
        assert all(i in set(r.objects.track_id.tolist()) or i >= 1_000_000 for i in ids)
        assert float(r.score_map.max()) > 0


def test_stage_timings_are_recorded(online_results):
    online, results = online_results
    assert {"detect", "track", "features", "score", "prompts", "segment"} <= set(online.timings)


def test_infer_online_writes_outputs_and_latency(stream, tmp_path):
    from helpers import compose
    from tao_lab.tasks import infer, run_task

    cfg = compose("infer", [f"input={stream}", "online=true", "fit_seconds=2", "max_frames=90", "online_masks=true"],
                  tmp_path)
    summary = run_task(cfg, infer)
    out = tmp_path / "run" / "outputs"
    assert summary["frames_emitted"] == 40 and summary["warmup_frames"] == 50
    assert summary["latency"]["frames"] == 40 and summary["latency"]["mean_ms"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["latency"] == summary["latency"]
    rows = np.loadtxt(out / "frame_scores.csv", delimiter=",", skiprows=1, ndmin=2)
    assert rows.shape == (40, 5) and rows[0, 0] == 50
    from tao_lab.formats import OBJECTS_HEADER, read_objects_csv

    assert (out / "objects.csv").read_text().startswith(OBJECTS_HEADER + "\n")
    objects, flagged = read_objects_csv(out / "objects.csv")
    assert len(objects) > 0 and objects.frame.min() == 50 and len(flagged) == len(objects)
    np.testing.assert_array_equal(flagged, objects.score > summary["prompt_threshold_tau"])
    # masks/ (online_masks=true): one PNG per emitted frame, labelled with that frame's track ids (or fresh ones)
    from tao_lab.formats import read_mask_png

    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 40 and masks[0].name == "000050.png"
    labelled = 0
    for p in masks:
        ids = set(np.unique(read_mask_png(p)).tolist()) - {0}
        tracks = set(objects.track_id[objects.frame == int(p.stem)].tolist())
        assert all(i in tracks or i >= 1_000_000 for i in ids)
        labelled += len(ids)
    assert labelled > 0
    from helpers import count_frames

    assert count_frames(out / "annotated.mp4")[0] == 40
    assert not (tmp_path / "run" / "outputs.partial").exists()


def test_sources_fail_clearly(tmp_path):
    from tao_lab.online import SourceError, open_source, parse_source

    assert parse_source("0") == 0 and parse_source(3) == 3 and parse_source("rtsp://h/x") == "rtsp://h/x"
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(bad)


def test_process_before_warmup_is_refused(tmp_path):
    from helpers import compose
    from tao_lab.online import OnlinePipeline

    online = OnlinePipeline.from_config(compose("infer", ["input=unused"], tmp_path))
    with pytest.raises(RuntimeError, match="warmup"):
        online.process(np.zeros((16, 16, 3), np.uint8))


def test_online_uses_the_offline_flow_and_extractors(online_results):
    online, _ = online_results
    fs = online.pipe.feature_set
    features = online.stages["features"]
    assert [e.name for e in features.extractors] == list(fs.extractors)
    kw = fs.flow_kwargs
    assert features.flow.preset == kw.get("preset", "fast") and features.flow.scale == kw.get("scale", 1.0)
    if kw.get("finest_scale") is not None:
        assert features.flow._dis.getFinestScale() == kw["finest_scale"]
