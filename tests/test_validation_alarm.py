"""The alarm-defaults validation (tao_lab.validation.alarm_choice): candidate grid, counting, summaries."""
import numpy as np
import pytest

from tao_lab.validation.alarm_choice import CLEAN, AlarmChoiceResult, Candidate, _Counts, candidates_from


def test_candidates_are_the_full_grid_and_bad_values_are_refused():
    grid = candidates_from({"methods": ["conformal", "evt"], "targets": [0.01, 0.05], "folds": [3]})
    assert [c.name for c in grid] == ["conformal/0.01/3", "conformal/0.05/3", "evt/0.01/3", "evt/0.05/3"]
    with pytest.raises(ValueError, match="unknown methods"):
        candidates_from({"methods": ["median"]})
    with pytest.raises(ValueError, match="targets must be in"):
        candidates_from({"targets": [1.5]})
    with pytest.raises(ValueError, match="folds must be >= 2"):
        candidates_from({"folds": [1]})


def test_counts_and_summary_match_a_hand_computation():
    c = Candidate("conformal", 0.01, 5)
    res = AlarmChoiceResult([c], ["a", "b"], ["fast", "loiter"])
    labels = np.array([0, 0, 0, 0, 1, 1], bool)
    cells = {("a", "fast"): [0, 1, 0, 0, 1, 1],     # 1 flagged unlabelled frame of 4, recall 2/2
             ("a", "loiter"): [0, 0, 0, 0, 0, 1],   # recall 1/2
             ("b", "fast"): [1, 1, 0, 0, 0, 0],     # 2 flagged unlabelled frames, recall 0/2; (b, loiter) not planted
             ("a", CLEAN): [0, 0, 1, 0, 0, 0, 0, 0],  # the untouched held-out clips: 1 false alarm of 8 frames
             ("b", CLEAN): [0, 0, 0, 0, 0, 0, 0, 0]}  # 0 of 8
    for (scene, kind), flags in cells.items():
        lab = labels if kind != CLEAN else np.zeros(8, bool)
        for mode in ("window", "clips"):
            res.counts.setdefault((c, mode, scene, kind), _Counts()).add(np.array(flags, bool), lab)
    res.window[c] = (3, 40)
    w = res.summary(c, "window")
    assert w["false_alarm_rate"] == pytest.approx(1 / 16)          # counted on the untouched clips only
    assert w["recall"] == pytest.approx(np.mean([1.0, 0.5, 0.0]))   # mean over the planted cells
    assert w["precision"] == pytest.approx(3 / 6)                    # planted clips: 3 hits, 3 flagged unlabelled
    assert w["fit_window_flagged"] == pytest.approx(3 / 40)
    assert "fit_window_flagged" not in res.summary(c, "clips")
    assert res.mean_recall(c) == pytest.approx(0.5)
    assert "conformal/0.01/5" in res.table()


def test_the_cli_needs_scenes_for_the_alarm_protocol(tmp_path, capsys):
    from tao_lab.validation.__main__ import main

    spec = tmp_path / "alarm.yaml"
    spec.write_text("methods: [conformal]\n")
    with pytest.raises(SystemExit):
        main(["--alarm", str(spec)])
    spec.write_text("methods: [median]\n")  # a bad candidate: a usage error naming the file, no traceback
    with pytest.raises(SystemExit):
        main(["--scenes", "synthetic", "--alarm", str(spec)])
    assert "unknown methods ['median']" in capsys.readouterr().err


@pytest.mark.slow
def test_a_higher_target_flags_a_superset_on_real_runs(compose_cfg):
    """On the synthetic scene, end to end: for one method and fold count, the conformal threshold of a higher target
    rate is lower on the same held-out scores, so it flags at least the same frames: false alarms, recall and the
    fit window's flags never drop."""
    from tao_lab.validation.alarm_choice import validate_alarm

    cfg = compose_cfg("eval", ["progress=false", "paths.cache_dir=null"])
    grid = candidates_from({"methods": ["conformal"], "targets": [0.01, 0.2], "folds": [3]})
    res = validate_alarm(cfg, grid, scenes=["synthetic"], sets=["fast", "wrong_way"], num_clips=3, num_frames=60,
                         show_progress=False)
    low, high = (res.summary(c, "window") for c in grid)
    assert high["false_alarm_rate"] >= low["false_alarm_rate"] and high["recall"] >= low["recall"]
    assert high["fit_window_flagged"] >= low["fit_window_flagged"]
    assert high["false_alarm_rate"] > low["false_alarm_rate"]  # a 20% target does flag more normal frames
    assert sum(x.normal for x in res.counts.values()) > 0 and sum(x.anomalous for x in res.counts.values()) > 0


def test_clips_mode_sees_the_camera_as_eval_does_and_window_mode_does_not(compose_cfg, monkeypatch):
    """clips mode is eval.py (its stages know the scene's training clips: the camera background); window mode is
    infer.py on a video alone (per-clip backgrounds); with no stage using a camera background they share one
    pipeline."""
    import tao_lab.alarm
    import tao_lab.validation.alarm_choice as ac
    from tao_lab.validation.cross_scene import SceneClips

    made = []

    class Stop(Exception):
        pass

    class RecordingPipeline:
        cache_dir = None

        def __init__(self, cfg):
            self.cameras, self.read = None, []
            made.append(self)

        def set_camera_clips(self, clips=(), cameras=None):
            self.cameras = cameras

        def tracks(self, clip):
            self.read.append(clip)

        def features(self, clip):
            return {}

    def crossfit_items(pipe, items, folds):
        raise Stop

    monkeypatch.setattr(ac, "Pipeline", RecordingPipeline)
    clips = [type("Clip", (), {"num_frames": 10, "name": n})() for n in ("clip0", "clip1")]
    monkeypatch.setattr(ac, "build_scenes", lambda *a, **k: [SceneClips("s", clips)])
    monkeypatch.setattr(tao_lab.alarm, "crossfit_items", crossfit_items)
    grid = candidates_from({"methods": ["conformal"], "targets": [0.01], "folds": [3]})
    with pytest.raises(Stop):
        ac.validate_alarm(compose_cfg("eval", []), grid, scenes=["synthetic"], show_progress=False)
    clips_mode, window_mode = made
    assert clips_mode.cameras == [clips] and window_mode.cameras is None
    assert clips_mode.read == window_mode.read == clips  # each mode reads the clips through its own pipeline
    made.clear()
    per_clip = compose_cfg("eval", ["detector.background.scope=clip", "segmenter.background.scope=clip"])
    with pytest.raises(Stop):
        ac.validate_alarm(per_clip, grid, scenes=["synthetic"], show_progress=False)
    assert len(made) == 1 and made[0].read == clips  # one pipeline serves both modes
