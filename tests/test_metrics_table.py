"""The printed metrics table (tao_lab.run_info.format_metrics_table): levels, the scene check, then bookkeeping."""
from tao_lab.run_info import SCENE_CHECK_TITLE, format_metrics_table


def test_scene_check_has_its_own_section_with_each_group_next_to_its_training_share():
    table = format_metrics_table({"test/frame_auc_micro": 0.9, "train/scene_check_place": 0.01,
                                  "test/scene_check_place": 0.05, "test/scene_check_dwell": 0.02,
                                  "train/scene_check_dwell": 0.0, "train/threshold_tau": 0.25, "time/total_s": 3.0})
    lines = [l.split()[0] for l in table.splitlines() if l.startswith("  ")]
    assert lines == ["test/frame_auc_micro", "test/scene_check_dwell", "train/scene_check_dwell",
                     "test/scene_check_place", "train/scene_check_place", "train/threshold_tau", "time/total_s"]
    titles = [l for l in table.splitlines() if not l.startswith("  ")]
    assert titles == ["Frame level", SCENE_CHECK_TITLE, "Counts, operating points, timings (s)"]
