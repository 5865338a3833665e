"""What each configured feature extractor costs per frame on the real UCSD Ped2 copy, in one run.

    python benchmarks/feature_cost.py [--data-dir ../shared/datasets/ucsd_ped2] [--max-clips 4] [overrides...]

Reads the test clips' tracks through the project's stage cache (detections computed and cached when missing), then
runs the configured features (``configs/features``) over them once, one thread, timing every extractor's
``compute`` apart. The shared optical flow is timed on its own row (computed before the extractors read it, as
the first one to read it would pay for it), so the velocity row is the extractor alone. Prints ms per frame (all
test frames of the clips, with or without objects) and us per object. Settings are never chosen here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


class Timed:
    """An extractor whose ``compute`` time is added up (same name, dim and output)."""

    def __init__(self, inner):
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def begin(self, clip) -> None:
        self.inner.begin(clip)

    def end(self) -> None:
        self.inner.end()

    def compute(self, ctx, boxes):
        start = time.perf_counter()
        out = self.inner.compute(ctx, boxes)
        self.seconds += time.perf_counter() - start
        return out


class FlowFirst:
    """Reads the frame's shared flow before the extractors do, so its cost has a row of its own."""

    name, dim, seconds = "(optical flow)", 0, 0.0

    def begin(self, clip) -> None:
        pass

    def end(self) -> None:
        pass

    def compute(self, ctx, boxes):
        start = time.perf_counter()
        ctx.flow
        self.seconds += time.perf_counter() - start
        return np.zeros((len(boxes), 0), np.float32)


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "datasets", "ucsd_ped2"))
    ap.add_argument("--max-clips", type=int, default=4, help="test clips to run (default 4)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    from hydra.utils import instantiate

    from tao_lab.config import compose_config
    from tao_lab.features import FlowEstimator, extract_features
    from tao_lab.no_network import set_offline_env
    from tao_lab.pipeline import dataset_pipeline, load_dataset

    set_offline_env()
    cfg = compose_config(["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", "progress=false", "validation=none",
                          *args.overrides])
    dataset = load_dataset(cfg)
    clips = list(dataset.test)[:args.max_clips]
    pipe = dataset_pipeline(cfg, dataset)
    tracks = [pipe.tracks(c) for c in clips]
    features = instantiate(cfg.features)
    flow = FlowFirst()
    timed = [Timed(e) for e in features.extractors.values()]
    for clip, objects in zip(clips, tracks):
        extract_features(clip, objects, [flow, *timed], progress=False, flow=FlowEstimator(**features.flow_kwargs))
    frames = sum(c.num_frames for c in clips)
    objects = sum(len(t) for t in tracks)
    print(f"Ped2: {len(clips)} test clips, {frames} frames, {objects} tracked objects; one thread")
    print(f"{'extractor':16s} {'ms/frame':>9s} {'us/object':>10s}")
    costs = {}
    for row in [flow, *timed]:
        costs[row.name] = 1e3 * row.seconds / frames
        print(f"{row.name:16s} {costs[row.name]:9.3f} {1e6 * row.seconds / max(objects, 1):10.1f}")
    return costs


if __name__ == "__main__":
    main()
