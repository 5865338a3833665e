"""benchmarks/planted_look.py: the planted object's detections on hand-made boxes, and the look's AUC per scene and
set equal to the cross-scene validation's cell for the same seed (the same plants, folds and negatives)."""
import numpy as np
import pytest

from helpers import load_benchmark
from tao_lab.types import ObjectTable


def test_planted_rows_take_the_best_overlapping_detection_of_each_planted_frame():
    look = load_benchmark("planted_look")
    # frame 0: the plant's box overlaps detection 1 (IoU 0.81), not detection 0; frame 1: only a
    # detection elsewhere (IoU 0); frame 2: a detection at IoU 1/3, counted at min_iou 0.2 and not at 0.5
    objects = ObjectTable.build([0, 0, 1, 2], [[0, 0, 10, 10], [10, 0, 20, 10], [50, 50, 60, 60], [10, 0, 20, 10]],
                                track_id=[1, 2, 3, 2])
    gt = ObjectTable.build([0, 1, 2], [[11, 0, 20, 9], [10, 0, 20, 10], [15, 0, 25, 10]], track_id=[0, 0, 0])
    np.testing.assert_array_equal(look.planted_rows(objects, gt, 0.2), [False, True, False, True])
    np.testing.assert_array_equal(look.planted_rows(objects, gt, 0.5), [False, True, False, False])
    assert not look.planted_rows(ObjectTable.empty(), gt).any()


@pytest.mark.parametrize("crowd", [False, True])
def test_the_looks_auc_is_the_cross_scene_cell(compose_cfg, crowd):
    """With ``crowd`` the cell of the validation's crowd guard: held-out and planted clips crowded by a spare clip."""
    from tao_lab.validation.cross_scene import cross_scene_validate

    look = load_benchmark("planted_look")
    cfg = compose_cfg("eval", [])
    sets = ["fast", "loiter"]
    lines = []
    gen = look.look_scenes(cfg, ["synthetic_persp"], sets, seed=0, num_clips=3, num_frames=70, crowd=crowd)
    while True:
        try:
            lines.append(next(gen))
        except StopIteration as stop:
            aucs = stop.value
            break
    result = cross_scene_validate(cfg, {"default": cfg}, scenes=["synthetic_persp"], sets=sets, num_clips=3,
                                  num_frames=70, show_progress=False, crowd=crowd)
    for kind in sets:
        assert aucs["synthetic_persp"][kind] == pytest.approx(result.auc["default"]["synthetic_persp"][kind], abs=1e-9)
    # one explanation per held-out clip and set, each with the planted object's excess per group
    assert sum(line.startswith("synthetic_persp / fast fold") for line in lines) == 3
    assert sum("planted object's median excess: motion" in line for line in lines) == 6
    # the closing table: per set the cell's AUC and the share of the labelled frames the folds found the plant on
    for kind in sets:
        folds = [line for line in lines if line.startswith(f"synthetic_persp / {kind} fold")]
        found = sum(int(line.split("detected on ")[1].split()[0].rstrip(";")) for line in folds)
        labelled = sum(int(line.split("labelled ")[1].split(",")[0]) for line in folds)
        assert labelled > 0
        header = next(line for line in lines if line.startswith("scene \\ set")).split("|")
        row = next(line for line in lines if line.startswith("synthetic_persp | ")).split("|")
        cell = row[[h.strip() for h in header].index(kind)].strip()
        assert cell == f"{aucs['synthetic_persp'][kind]:.4f} ({found / labelled:4.0%})"
    # the fast plant is seen by the motion group: its median motion excess is above 0 in most folds
    motion = [float(line.split("motion ")[1].split(",")[0]) for line in lines
              if "median excess" in line][:3]
    assert sum(m > 0 for m in motion) >= 2
