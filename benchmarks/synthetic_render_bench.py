"""Rendering speed of the embedded synthetic dataset (frames/s, one core), at the tests' and the scale tests' sizes.

    python benchmarks/synthetic_render_bench.py [--frames 100] [--repeats 3]

Renders frames [100, 100 + n) of one test clip sequentially, as the pipeline reads them, and prints the best of
``--repeats`` runs per size next to the design targets (>= 500 frames/s at 120x180, >= 60 at 480x856). The speed
was a test assertion once; a wall-clock number depends on the machine and its load, so it is measured here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))

SIZES = (((120, 180), 500.0), ((480, 856), 60.0))  # (height, width), target frames/s


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="frames rendered per run (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per size; the best is reported (default 3)")
    args = ap.parse_args(argv)

    from tao_lab.dataset import SyntheticGenerator

    results = {}
    print(f"{'size':>10} {'frames/s':>10} {'target':>8}")
    for (h, w), target in SIZES:
        clip = SyntheticGenerator(seed=0, num_train_clips=0, num_test_clips=1, num_frames=100 + args.frames,
                                  height=h, width=w).clip("test", 0)
        best = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in clip.frames(100, 100 + args.frames):
                pass
            best = max(best, args.frames / (time.perf_counter() - start))
        results[f"{h}x{w}"] = best
        print(f"{h:>4}x{w:<5} {best:>10.1f} {target:>8.0f}")
    return results


if __name__ == "__main__":
    main()
