"""A check, not a choice (docs/DETECTOR_ROUNDS.md, "Object scale"): UCSD Ped2 seen by a smaller camera, side by side
with the object scale off and at the configured default, in one run.

    python benchmarks/small_camera_check.py [--scale 0.6] [--data-dir ../shared/datasets/ucsd_ped2]

Every Ped2 clip is resampled by ``--scale`` (area-averaged: walkers about as tall as on UCSD Ped1's frames at 0.6x);
the scorer is fitted on the resampled training clips and the frame AUC (micro, macro) printed on the test clips,
first with ``working_object_height=null``, then with the configured value (which measures the small camera and
enlarges it). It reads Ped2's test labels, so it prints and decides nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.6)
    parser.add_argument("--data-dir", default="../shared/datasets/ucsd_ped2")
    args = parser.parse_args(argv)

    import numpy as np

    from tao_lab.config import compose_config
    from tao_lab.dataset.object_scale import dataset_at_object_scale
    from tao_lab.dataset.resize import ResizedClip
    from tao_lab.metrics import frame_metrics
    from tao_lab.pipeline import dataset_pipeline, load_dataset

    base_overrides = ["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", "progress=false"]
    native = load_dataset(compose_config([*base_overrides, "working_object_height=null"], config_name="eval"))

    def small(clips):
        return [ResizedClip(c, (int(round(args.scale * c.height)), int(round(args.scale * c.width)))) for c in clips]

    data = dataclasses.replace(native, train=small(native.train), test=small(native.test))
    configured = compose_config(base_overrides, config_name="eval").get("working_object_height")
    print(f"Ped2 at {args.scale:g}x ({data.test[0].width}x{data.test[0].height})")
    for name, target in (("object scale off", "null"), (f"working_object_height={configured}", str(configured))):
        start = time.perf_counter()
        cfg = compose_config([*base_overrides, f"working_object_height={target}"], config_name="eval")
        seen = dataset_at_object_scale(data, cfg)
        pipe = dataset_pipeline(cfg, seen)
        pipe.show_progress = False
        pipe.fit_scorer(seen.train)
        scores = [np.asarray(pipe.scores(c).frame_scores) for c in seen.test]
        m = frame_metrics(scores, [c.gt.frame_labels for c in seen.test])
        print(f"{name:28s} processed at {seen.test[0].width}x{seen.test[0].height}: frame AUC micro "
              f"{m['auc_micro']:.4f} macro {m['auc_macro']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
