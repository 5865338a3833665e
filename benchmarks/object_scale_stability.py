"""How steady the object-scale measurement is on one camera, and what each target makes of it, in one run.

    python benchmarks/object_scale_stability.py [--targets 36 40 44] [--ped2-dir ../shared/datasets/ucsd_ped2]

The object height of :mod:`tao_lab.dataset.object_scale` (box-area-weighted median blob height, label-free) is
measured on several training samples of the cameras the defaults were chosen on: the main job's synthetic camera
(generator seeds 0-2; 3, 4, 5 and 8 clips; 100, 120 and 200 frames) and Ped2's training clips (all 16; 6 and 4 clips
spread over them, 120 frames), and on the resized scenes it is meant for (``ped2_small``). For each target T it
prints whether that camera would be enlarged (T / height >= 1.15) on each sample. A target whose verdict on one
camera changes with the sample resizes that camera by chance. No label is read; settings are not chosen here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[36.0, 40.0, 44.0])
    parser.add_argument("--ped2-dir", default="../shared/datasets/ucsd_ped2")
    args = parser.parse_args(argv)

    from hydra.utils import instantiate

    from tao_lab.config import compose_config
    from tao_lab.dataset.object_scale import object_height, object_scale
    from tao_lab.validation import scenes

    cfg = compose_config(["progress=false"], config_name="eval")
    samples = []  # (camera, sample, clips)
    for seed in (0, 1, 2):
        for clips, frames in ((4, 120), (3, 120), (5, 100), (8, 120), (4, 200)):
            data = instantiate(compose_config([f"dataset.seed={seed}", f"dataset.num_train_clips={clips}",
                                               f"dataset.num_frames={frames}", "dataset.num_test_clips=1"],
                                              config_name="eval").dataset)
            samples.append(("synthetic (main job)", f"seed {seed}, {clips} x {frames}", data.train))
    if os.path.isdir(args.ped2_dir):
        samples.append(("ucsd_ped2", "16 training clips", scenes.ped2_train_clips(args.ped2_dir, None, None)))
        for n in (6, 4):
            clips = scenes.ped2_train_clips(args.ped2_dir, n, 120)
            samples.append(("ucsd_ped2", f"{n} x 120", clips))
            samples.append(("ped2_small", f"{n} x 120", scenes.scale_scene("ped2_small", clips)))
    else:
        print(f"{args.ped2_dir} not found: Ped2 rows skipped")

    head = f"{'camera':22s} {'sample':18s} {'height px':>9s}  " + "  ".join(f"T={t:g}".rjust(8) for t in args.targets)
    print(head)
    print("-" * len(head))
    verdicts: dict[tuple[str, float], set] = {}
    for camera, label, clips in samples:
        start = time.perf_counter()
        height = object_height(clips, cfg.detector)
        cells = []
        for t in args.targets:
            factor = object_scale(height, t)
            verdicts.setdefault((camera, t), set()).add(factor > 1.0)
            cells.append(("own size" if factor == 1.0 else f"x{factor:.2f}").rjust(8))
        shown = "-" if height is None else f"{height:.0f}"
        took = time.perf_counter() - start
        print(f"{camera:22s} {label:18s} {shown:>9s}  " + "  ".join(cells) + f"   ({took:.1f} s)")
    print("\nsteady verdict per camera (the same on every sample):")
    for camera in dict.fromkeys(c for c, _, _ in samples):
        row = []
        for t in args.targets:
            v = verdicts[(camera, t)]
            row.append(("enlarged" if v == {True} else "own size" if v == {False} else "FLIPS").rjust(9))
        print(f"  {camera:22s} " + " ".join(f"T={t:g}:{r}" for t, r in zip(args.targets, row)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
