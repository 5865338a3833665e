"""The Avenue reader on the real files of ../shared/datasets/avenue_partial (official MATLAB masks; six test videos,
no training videos): counts and labels as in its PROVENANCE.md, a clear message for supervised runs, and an
unsupervised evaluation that runs."""
import pytest

from helpers import AVENUE_DIR, compose

AVENUE = AVENUE_DIR
needs_avenue = pytest.mark.skipif(not (AVENUE / "testing_videos").is_dir(),
                                  reason="real Avenue copy ../shared/datasets/avenue_partial absent")
# PROVENANCE.md: frames (= masks, checked) and anomalous frames per test video
FRAMES = {"Test08": (36, 36), "Test17": (426, 384), "Test18": (294, 294), "Test19": (248, 140),
          "Test20": (273, 154), "Test21": (76, 53)}


@needs_avenue
def test_real_avenue_test_videos_and_official_masks():
    from tao_lab.dataset import load_avenue

    ds = load_avenue(str(AVENUE), splits=("test",))
    assert ds.train == []
    got = {c.clip_id: (c.num_frames, int(c.gt.frame_labels.sum())) for c in ds.test}
    assert got == FRAMES
    clip = ds.test[-1]
    assert (clip.height, clip.width, clip.fps) == (360, 640, 25.0)
    first = int(clip.gt.frame_labels.argmax())
    assert clip.gt.mask(first).shape == (360, 640) and clip.gt.mask(first).any()
    assert not clip.gt.frame_labels[:first].any()


@needs_avenue
def test_supervised_run_says_the_training_videos_are_missing(tmp_path, capsys):
    from tao_lab.tasks import evaluate, run_cli

    cfg = compose("eval", ["dataset=avenue", f"paths.data_dir={AVENUE}"], tmp_path)
    with pytest.raises(SystemExit) as e:
        run_cli(cfg, evaluate)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "the Avenue training videos are missing" in err and "training.mode=unsupervised" in err
    assert "ckpt_path" in err and "Traceback" not in err


def test_runs_read_only_the_splits_they_need(tmp_path):
    from tao_lab.pipeline import splits_needed

    def splits(*overrides, evaluate=True):
        return splits_needed(compose("eval", list(overrides), tmp_path), evaluate=evaluate)

    assert splits() == ("train", "test")
    assert splits("ckpt_path=some.ckpt") == ("test",)
    assert splits("training.mode=unsupervised") == ("test",)
    assert splits("training.mode=unsupervised", "training.unsupervised_source=merged") == ("train", "test")
    assert splits(evaluate=False) == ("train",)


@pytest.mark.slow
@needs_avenue
def test_unsupervised_eval_on_real_avenue(tmp_path):
    from tao_lab.tasks import evaluate, run_task

    cfg = compose("eval", ["dataset=avenue", f"paths.data_dir={AVENUE}", "training.mode=unsupervised",
                           "+dataset.clip_ids=[Test19,Test21]", "dataset.max_frames=60"], tmp_path)
    m = run_task(cfg, evaluate)
    assert m["test/num_clips"] == 2 and m["test/frames"] == 120
    assert m["test/pixel_num_clips"] == 2 and m["test/object_num_clips"] == 2
    for key in ("test/frame_auc_micro", "test/pixel_auroc", "test/object_rbdc"):
        assert 0.0 <= m[key] <= 1.0, key
