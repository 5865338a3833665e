"""Per-anomaly-type frame table (tao_lab.metrics.by_kind), checked against a direct computation."""
import numpy as np

from tao_lab.metrics.by_kind import per_kind_frame_table
from tao_lab.types import ObjectTable


def test_per_kind_table_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    scores = [rng.normal(0, 1, 50), rng.normal(0, 1, 40)]
    labels = [np.zeros(50, bool), np.zeros(40, bool)]
    # clip 0: kind 1 on frames 10-19 (scored high); clip 1: kind 3 on frames 5-9 (scored like normal frames)
    scores[0][10:20] += 5.0
    labels[0][10:20] = True
    labels[1][5:10] = True
    tracks = [ObjectTable.build(np.arange(10, 20), np.zeros((10, 4)), klass=np.full(10, 1)),
              ObjectTable.build(np.arange(5, 10), np.zeros((5, 4)), klass=np.full(5, 3))]
    rows = per_kind_frame_table(scores, labels, tracks, {1: "rider", 3: "wrong_way"})
    assert [r["kind"] for r in rows] == ["rider", "wrong_way"]
    assert [r["frames"] for r in rows] == [10, 5]
    normal = np.concatenate([scores[0][~labels[0]], scores[1][~labels[1]]])
    for r, pos in zip(rows, [scores[0][10:20], scores[1][5:10]]):
        # AUC as the probability that a kind frame outscores a normal frame (no ties with continuous scores)
        direct = (pos[:, None] > normal[None, :]).mean()
        assert np.isclose(r["frame_auc"], direct)
        cut = np.quantile(normal, 0.95)
        assert np.isclose(r["recall@fpr0.05"], (pos > cut).mean())
    assert rows[0]["frame_auc"] == 1.0 and rows[1]["frame_auc"] < 0.9


def test_per_kind_table_is_empty_without_named_kinds_or_tracks():
    scores, labels = [np.arange(5.0)], [np.array([0, 0, 0, 1, 1], bool)]
    one_kind = [ObjectTable.build(np.array([3, 4]), np.zeros((2, 4)))]
    assert per_kind_frame_table(scores, labels, one_kind) == []
    assert per_kind_frame_table(scores, labels, [None]) == []
    assert per_kind_frame_table(scores, labels, one_kind, {0: "anomaly"})[0]["frame_auc"] == 1.0
