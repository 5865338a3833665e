"""Frame AUC of each attribute of the configured scorer alone, on the Ped2 test set: a DIAGNOSTIC that reads test
labels, to explain a result after the fact; never use it to choose a setting (tao_lab.validation does that).

    python benchmarks/attribute_parts.py [--data-dir ../shared/datasets/ucsd_ped2] [hydra overrides ...]

Each attribute's calibrated object scores are reduced to frame scores as the scorer does (max over the frame's
objects, Gaussian smoothing with the scorer's frame_sigma) and scored with sklearn's roc_auc_score over all test
frames pooled; the last row is the fused score the scorer reports.
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from tao_lab.config import compose_config
    from tao_lab.no_network import set_offline_env
    from tao_lab.pipeline import dataset_pipeline, load_dataset
    from tao_lab.scorer.common import frame_scores_from_objects, smooth_frame_scores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    set_offline_env()
    cfg = compose_config(["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", "progress=false",
                          "validation=none", *args.overrides])
    dataset = load_dataset(cfg)
    pipe = dataset_pipeline(cfg, dataset)
    pipe.fit_scorer(dataset.train)
    scorer = pipe.scorer
    sigma = float(getattr(scorer, "frame_sigma", 0.0))
    per: dict[str, list] = {}
    labels = []
    for clip in dataset.test:
        tracks, feats = pipe.tracks(clip), pipe.features(clip)
        for name, part in scorer.object_parts(tracks, feats).items():
            frame = frame_scores_from_objects(tracks.frame, part, clip.num_frames)
            per.setdefault(name, []).append(smooth_frame_scores(frame, sigma))
        per.setdefault("(fused score)", []).append(scorer.score_clip(tracks, feats, clip.num_frames).frame_scores)
        labels.append(clip.gt.frame_labels)
    y = np.concatenate(labels)
    out = {name: float(roc_auc_score(y, np.concatenate(v))) for name, v in per.items()}
    for name, auc in out.items():
        print(f"{name:16s} {auc:.4f}")
    return out


if __name__ == "__main__":
    main()
