"""Per-frame cost of the feature stage with and without the pose and deep LiteRT features, side by side, on one Ped2
clip.

    python benchmarks/features_cost.py                         # Test004, first 200 frames, ../shared data + weights
    python benchmarks/features_cost.py --clip Test001 --frames 120

Rows (wall seconds per frame of each stage, on this machine, one clip, no stage cache):
  default                      detector=background, features=default (the default pipeline)
  + deep litert, standalone    detector=background, features=deep_yolo: the feature runs the .tflite itself
  yolo, default features       detector=yolo, features=default
  yolo + deep litert, shared   detector=yolo, features=deep_yolo in one pipeline: the detector's pass is reused
  yolo + deep litert, standalone   the same tracks, the deep feature running the network itself (what a run whose
                               detections come from the stage cache pays)
  + pose (BlazePose)           detector=background, features=pose_blazepose: one BlazePose pass per person crop
  + pose + deep, standalone    detector=background, features=pose_deep (every attribute set of issue 19)
"invokes/frame" counts LiteRT Interpreter.invoke calls of the whole row (detector + features) per clip frame
(the pose rows add one per BlazePose crop).
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


def compose(overrides: list[str]):
    from tao_lab.config import compose_config

    return compose_config(["progress=false", "validation=none", "workers=1", "paths.cache_dir=null", *overrides])


class InvokeCounter:
    """Counts LiteRT invocations of every interpreter (ultralytics' and the deep feature's)."""

    def __init__(self):
        from ai_edge_litert.interpreter import Interpreter

        self.count = 0
        original = Interpreter.invoke

        def invoke(interp):
            self.count += 1
            return original(interp)

        Interpreter.invoke = invoke


def run_pipeline(overrides: list[str], clip, counter: InvokeCounter) -> tuple[dict, object, object]:
    """Stage seconds per frame of detect -> track -> features on ``clip`` (fresh pipeline, no cache)."""
    from tao_lab.pipeline import Pipeline

    pipe = Pipeline(compose(overrides))
    counter.count = 0
    pipe.features(clip)
    n = clip.num_frames
    per = {s: pipe.timings[s] / n for s in ("detect", "track", "features")}
    per["invokes"] = counter.count / n
    return per, pipe, pipe.tracks(clip)


def time_features(feature_set, clip, tracks, counter: InvokeCounter) -> dict:
    counter.count = 0
    start = time.perf_counter()
    feature_set.extract(clip, tracks, progress=False)
    return {"features": (time.perf_counter() - start) / clip.num_frames, "invokes": counter.count / clip.num_frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets/ucsd_ped2")
    ap.add_argument("--weights-dir", default="../shared/weights")
    ap.add_argument("--clip", default="Test004")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--layer", default="p4", help="deep feature layer (p3 | p4 | p5)")
    args, extra = ap.parse_known_args()
    os.chdir(ROOT)

    from tao_lab.pipeline import instantiate, load_dataset
    from tao_lab.features import yolo_litert

    data = ["dataset=ucsd_ped2", f"paths.data_dir={args.data_dir}", f"dataset.max_frames={args.frames}",
            f"+dataset.clip_ids=[{args.clip}]", f"paths.weights_dir={args.weights_dir}", *extra]
    deep = ["features=deep_yolo", f"features.extractors.deep.layer={args.layer}"]
    clip = load_dataset(compose(data), ["test"]).test[0]
    counter = InvokeCounter()

    # bytes of feature maps the shared pass holds for one clip (read when the feature stage takes them)
    held = {"bytes": 0}
    take = yolo_litert.FeatureMapTap.take

    def measuring_take(tap, clip_id):
        out = take(tap, clip_id)
        held["bytes"] = max(held["bytes"], sum(m.nbytes for m, _, _ in out.values()))
        return out

    yolo_litert.FeatureMapTap.take = measuring_take

    rows = {}
    run_pipeline(data, clip, counter)  # warm-up (imports, first-call costs), not reported
    rows["default"], _, _ = run_pipeline(data, clip, counter)
    rows["+ deep litert, standalone"], _, _ = run_pipeline(data + deep, clip, counter)
    shared, pipe, tracks = run_pipeline(data + ["detector=yolo"] + deep, clip, counter)
    yolo_default = dict(shared)
    yolo_default.update(time_features(instantiate(compose(data + ["detector=yolo"]).features), clip, tracks, counter))
    yolo_default["invokes"] = shared["invokes"]  # the detector's passes; default features run none
    rows["yolo, default features"] = yolo_default
    rows["yolo + deep litert, shared"] = shared
    alone = dict(shared)
    alone.update(time_features(instantiate(compose(data + ["detector=yolo"] + deep).features), clip, tracks, counter))
    alone["invokes"] += shared["invokes"]  # + the detector's own passes
    rows["yolo + deep litert, standalone"] = alone
    rows["+ pose (BlazePose)"], _, _ = run_pipeline(data + ["features=pose_blazepose"], clip, counter)
    rows["+ pose + deep, standalone"], _, _ = run_pipeline(data + ["features=pose_deep"] + deep[1:], clip, counter)

    print(f"\nUCSD Ped2 {clip.clip_id}, {clip.num_frames} frames, deep layer {args.layer} "
          f"(yolo11n_int8.tflite), ms per frame on this machine:")
    print(f"{'row':34s} {'detect':>8s} {'track':>7s} {'features':>9s} {'total':>8s} {'frames/s':>9s} "
          f"{'invokes/frame':>13s}")
    for name, r in rows.items():
        total = r["detect"] + r["track"] + r["features"]
        print(f"{name:34s} {1e3 * r['detect']:8.1f} {1e3 * r['track']:7.1f} {1e3 * r['features']:9.1f} "
              f"{1e3 * total:8.1f} {1 / total:9.1f} {r['invokes']:13.2f}")
    print(f"\nfeature maps held between the detector and the feature stage (shared pass, one clip, float16, "
          f"cropped to the frame): {held['bytes'] / 2 ** 20:.1f} MiB = {held['bytes'] / clip.num_frames / 1024:.0f} "
          f"KiB per frame")


if __name__ == "__main__":
    main()
