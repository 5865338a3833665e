"""What the tests share, in one place: where the project and the shared data are, the tiny Hydra configs, and the
synthetic inputs (clips, videos, dataset files, object tables) that more than one test file builds. Test files
import these from here, never from each other.

Importing this module puts the test environment in place (PROJECT_ROOT, W&B off, no network access), so a script
a test runs in a subprocess gets it too with ``sys.path.insert(0, <tests>); from helpers import ...``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
# the shared read-only data (datasets, weights, docs) sits next to the project: ../shared
SHARED_DIR = ROOT.parent / "shared"

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ["WANDB_MODE"] = os.environ.get("TAO_TEST_WANDB_MODE", "disabled")

from tao_lab.no_network import set_offline_env  # noqa: E402

set_offline_env()

from tao_lab.types import Clip, ObjectTable, Prompts  # noqa: E402
from wandb_runs import read_wandb_run, wandb_run_dirs  # noqa: E402,F401 - offline W&B runs read back


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` imported as a module (registered in sys.modules: dataclasses look their module up
    there)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def shared_path(*parts: str) -> Path:
    """A path under the shared data folder, ``../shared`` relative to the project root (it may not exist: tests
    that need it skip)."""
    return SHARED_DIR.joinpath(*parts)


PED2_DIR = shared_path("datasets", "ucsd_ped2")
AVENUE_DIR = shared_path("datasets", "avenue_partial")
WEIGHTS_DIR = shared_path("weights")


def ped2_available() -> bool:
    return (PED2_DIR / "UCSDped2" / "Test").is_dir()


# --- configs ------------------------------------------------------------------------------------------------------

# A tiny synthetic dataset: enough objects to fit density models, small enough for seconds-long runs.
TINY_SYNTHETIC = ["dataset.num_train_clips=2", "dataset.num_test_clips=2", "dataset.num_frames=60"]
# A small training budget for the default segmenter (segmenter=learned) in runs a test starts in a subprocess (in the
# test process itself, conftest.small_segmenter_training does this); only with the default segmenter.
QUICK_SEGMENTER = ["segmenter.training.num_crops=300", "segmenter.training.epochs=2"]


def compose(config_name: str = "eval", overrides=(), tmp_path: Path | None = None):
    """The real config, with run outputs and the stage cache moved under tmp_path."""
    from tao_lab.config import compose_config

    extra = []
    if config_name in ("eval", "train") and not any(str(o).lstrip("+~").startswith("validation") for o in overrides):
        # val/ metrics cost a leave-one-clip-out pass with planted clips; tests/test_validation_in_run.py turns it on
        extra.append("validation=none")
    if tmp_path is not None:
        extra += [f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                  f"paths.log_dir={tmp_path / 'logs'}"]
    return compose_config([*extra, "progress=false", *overrides], config_name=config_name)


def compose_group(group: str, option: str):
    """The real Hydra config of one group option (composed through configs/pipeline.yaml)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose(config_name="pipeline", overrides=[f"{group}={option}"])[group]


# --- clips --------------------------------------------------------------------------------------------------------

class MovingSquareClip(Clip):
    """Textured noisy background with bright squares moving at constant velocity (known boxes).

    squares: list of (x0, y0, vx, vy, size, grey level); gain: per-frame global brightness factor (drift);
    shadow: optional (x1, y1, x2, y2, ratio) region darkened by `ratio` in every frame (a static-free cast shadow
    that moves with the first square: offset relative to it).
    """

    def __init__(self, num_frames=20, height=96, width=128, squares=((10, 40, 5, 0, 16, 230),), noise=3.0,
                 gain=None, shadow=None, seed=0, clip_id="square"):
        super().__init__(clip_id, num_frames, height, width, source=f"moving-square-{seed}")
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width]
        self.bg = (80 + 30 * np.sin(xx / 7.0) * np.cos(yy / 9.0) + rng.normal(0, 5, (height, width))).astype(np.float32)
        self.squares = squares
        self.noise = noise
        self.gain = gain
        self.shadow = shadow
        self.seed = seed

    def box(self, i, k=0):
        x0, y0, vx, vy, s, _ = self.squares[k]
        return np.array([x0 + vx * i, y0 + vy * i, x0 + vx * i + s, y0 + vy * i + s], np.float32)

    def _read(self, i):
        rng = np.random.default_rng(self.seed * 1000 + i)
        img = self.bg.copy()
        if self.shadow is not None:
            dx1, dy1, dx2, dy2, ratio = self.shadow
            b = self.box(i).astype(int)
            img[max(b[1] + dy1, 0):b[1] + dy2, max(b[0] + dx1, 0):b[0] + dx2] *= ratio
        for k, (_, _, _, _, _, level) in enumerate(self.squares):
            x1, y1, x2, y2 = self.box(i, k).astype(int)
            img[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = level
        if self.gain is not None:
            img *= self.gain[i]
        img += rng.normal(0, self.noise, img.shape)
        g = np.clip(img, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)


def square_crossers(size: int, seed: int = 0, num_frames: int = 40) -> "MovingSquareClip":
    """Three squares of ``size`` px crossing a 96x160 frame at 3 px/frame (never still, never touching)."""
    return MovingSquareClip(num_frames=num_frames, height=96, width=160, seed=seed, clip_id=f"sq{size}-{seed}",
                            squares=((2, 6, 3, 0, size, 230), (140, 38, -3, 0, size, 20), (20, 66, 3, 0, size, 220)))


class ArrayClip(Clip):
    """A clip over a (T, H, W, 3) uint8 array."""

    def __init__(self, frames: np.ndarray, clip_id: str = "arr"):
        super().__init__(clip_id, len(frames), frames.shape[1], frames.shape[2])
        self._frames = frames

    def _read(self, i):
        return self._frames[i]


def square_clip(T=7, H=72, W=96, seed=0):
    """A noisy grey clip with one cyan 20x25 square moving 4 px/frame (the sam2 tests' input)."""
    rng = np.random.default_rng(seed)
    frames = (np.full((T, H, W, 3), 90) + rng.integers(0, 20, (T, H, W, 3))).astype(np.uint8)
    for t in range(T):
        frames[t, 20:45, 10 + 4 * t:30 + 4 * t] = (40, 200, 230)
    return ArrayClip(frames)


# The prompts of square_clip(). object 1: box + point on frames 1 and 3; object 2: box only, first prompted on
# frame 3. sam2 propagates object 2 from frame 1 too, with only future (bfloat16) memories: the case that breaks
# sam2 on CPU without the float32 cast (regression guard).
SQUARE_PROMPTS = Prompts([1, 3, 3], [1, 1, 2], [[14, 20, 34, 45], [22, 20, 42, 45], [60, 5, 80, 25]],
                         [[24, 32], [32, 32], [np.nan, np.nan]], [1.0, 1.5, 2.0])


def grey_clip(value=128, clip_id="bg", height=120, width=160, num_frames=60):
    """A still, almost uniform grey clip (the planting tests' background)."""
    from tao_lab.online import BufferClip

    rng = np.random.default_rng(0)
    base = np.clip(value + rng.normal(0, 2, (height, width, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    return BufferClip([base.copy() for _ in range(num_frames)], clip_id=clip_id)


# --- object tables ------------------------------------------------------------------------------------------------

def reference_objects(n=40, height=30, num_frames=60):
    """Normal objects standing in the middle band of a 120x160 frame, all `height` px tall."""
    rng = np.random.default_rng(1)
    cx = rng.uniform(40, 120, n)
    bottom = rng.uniform(60, 100, n)
    xyxy = np.stack([cx - 6, bottom - height, cx + 6, bottom], axis=1)
    return ObjectTable.build(np.arange(n) % num_frames, xyxy)


def walking_tracks():
    """Walkers on a band of rows 50-100 going +x or -x, height 0.4 x row, speed 0.02 x row px/frame (perspective:
    near rows larger and faster); nothing ever above row 45 or below row 105."""
    rng = np.random.default_rng(5)
    rows = []
    for tid in range(40):
        y = rng.uniform(50, 100)
        v = 0.02 * y * (1 if tid % 2 else -1)
        h = 0.4 * y
        x0 = rng.uniform(20, 140)
        for i in range(30):
            x = x0 + v * i
            rows.append((i, x - 0.15 * h, y - h, x + 0.15 * h, y, tid))
    a = np.array(rows)
    return ObjectTable.build(a[:, 0], a[:, 1:5], track_id=a[:, 5].astype(int))


def make_clip(rng, num_frames=40, per_frame=3, fast=()):
    """Objects of one clip: `per_frame` walkers per frame (speed ~1 px/frame, 2-D appearance blob), each a track;
    frames in `fast` get one extra object moving 6 px/frame with an unusual appearance."""
    frame, xyxy, tid, vel, app = [], [], [], [], []
    for i in range(num_frames):
        for k in range(per_frame):
            frame.append(i)
            xyxy.append([10 + 30 * k + i, 10, 30 + 30 * k + i, 50])
            tid.append(k + 1)
            vel.append([abs(rng.normal(1.0, 0.2)), 0.0])
            app.append(rng.normal(0, 1, 4))
        if i in fast:
            frame.append(i)
            xyxy.append([0, 60, 20, 100])
            tid.append(99)
            vel.append([rng.normal(6.0, 0.3), 0.0])
            app.append(rng.normal(5, 1, 4))
    objects = ObjectTable.build(np.array(frame), np.array(xyxy, np.float32), track_id=np.array(tid))
    feats = {"velocity": np.array(vel, np.float32), "appearance": np.array(app, np.float32)}
    return objects, feats, num_frames


# --- video files and dataset layouts ------------------------------------------------------------------------------

VIDEO_FPS = 25


def write_video(path, num_frames=120, normal_fraction=0.55, seed=0, height=160, width=240):
    """An mp4 of one synthetic test clip whose first ``normal_fraction`` holds no anomaly (then 2 anomalies)."""
    import cv2

    from tao_lab.dataset import SyntheticGenerator

    gen = SyntheticGenerator(seed=seed, num_train_clips=0, num_test_clips=1, num_frames=num_frames, height=height,
                             width=width, anomalies_per_clip=(2, 2),
                             anomaly_start=(normal_fraction, normal_fraction + 0.1))
    clip = gen.dataset().test[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, (width, height))
    for frame in clip.frames():
        writer.write(frame)
    writer.release()
    return path


def count_frames(path):
    """(number of frames, shape of the last one) of a video file, read with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            return n, shape
        n, shape = n + 1, f.shape


# the size of the small dataset files below (Avenue, ShanghaiTech layouts)
SMALL_H, SMALL_W = 48, 64


def indexed_frame(i, h=SMALL_H, w=SMALL_W):
    """A frame whose mean grey level encodes its index (robust to JPEG compression) plus a moving square."""
    img = np.full((h, w, 3), 20 + 7 * i, np.uint8)
    x = (3 * i) % (w - 8)
    img[10:18, x:x + 8] = 255
    return img


def write_avi(path, n, h=SMALL_H, w=SMALL_W, fourcc="MJPG", fps=25):
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(indexed_frame(i, h, w))
    vw.release()


def write_frames(folder, n, h=SMALL_H, w=SMALL_W, name="{:04d}.jpg", start=0):
    import cv2

    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, name.format(i + start)), indexed_frame(i, h, w))


def box_masks(n, h=SMALL_H, w=SMALL_W, on=range(3, 7)):
    """n uint8 masks, a 10x10 box (moving 1 px/frame) on the frames in `on`."""
    out = np.zeros((n, h, w), np.uint8)
    for i in on:
        if i < n:
            out[i, 5:15, 2 + i:12 + i] = 1
    return out


def write_label_mat(path, masks):
    """An Avenue ``<k>_label.mat`` (a 1 x n cell ``volLabel`` of masks)."""
    import scipy.io

    os.makedirs(os.path.dirname(path), exist_ok=True)
    cell = np.empty((1, len(masks)), dtype=object)
    for i, m in enumerate(masks):
        cell[0, i] = m
    scipy.io.savemat(path, {"volLabel": cell})


def write_shanghaitech(root):
    """A tiny ShanghaiTech layout: two training videos, two test frame folders with pixel and frame masks."""
    write_avi(os.path.join(root, "training", "videos", "01_001.avi"), 8)
    write_avi(os.path.join(root, "training", "videos", "02_001.avi"), 9)
    for cid, n in (("01_0014", 10), ("02_0128", 7)):
        write_frames(os.path.join(root, "testing", "frames", cid), n, name="{:03d}.jpg")
        pix = box_masks(n, on=range(2, 5))
        os.makedirs(os.path.join(root, "testing", "test_pixel_mask"), exist_ok=True)
        os.makedirs(os.path.join(root, "testing", "test_frame_mask"), exist_ok=True)
        np.save(os.path.join(root, "testing", "test_pixel_mask", f"{cid}.npy"), pix)
        np.save(os.path.join(root, "testing", "test_frame_mask", f"{cid}.npy"), pix.any((1, 2)).astype(np.int64))


# ----- clips with exact object masks (the segmenter tests) -----
def moving_disc_clip(T=30, H=96, W=128, r=10, speed=3.0, seed=0, stop_at=None):
    """Textured background + noise, one bright textured disc moving right (whole pixels per frame, so its texture
    moves with it; it stands still from frame ``stop_at`` on); returns (clip, truth masks (T,H,W), boxes (T,4))."""
    from tao_lab.segmenter import mask_box

    rng = np.random.default_rng(seed)
    bg = (rng.integers(60, 120, (H // 8, W // 8, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
    bg = np.kron(bg, np.ones((8, 8, 1), np.uint8))[:H, :W]
    yy, xx = np.mgrid[:H, :W]
    texture = np.kron(rng.integers(150, 255, (H // 3 + 1, W // 3 + 1)), np.ones((3, 3), int))
    frames, truth, boxes = [], [], []
    for t in range(T):
        dx = int(round(speed * (t if stop_at is None else min(t, stop_at))))
        cx, cy = 20 + dx, 48
        m = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
        f = bg.astype(np.int16) + rng.normal(0, 3, (H, W, 3)).astype(np.int16)
        f[m] = texture[:H, :W][np.roll(m, -dx, axis=1)][:, None]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
        truth.append(m)
        boxes.append(mask_box(m))
    return ArrayClip(np.stack(frames)), np.stack(truth), np.stack(boxes)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def tracked_scores(boxes, track_id=0, jitter=2.0, seed=1, score=2.0):
    rng = np.random.default_rng(seed)
    T = len(boxes)
    noisy = boxes + rng.uniform(-jitter, jitter, boxes.shape)
    from tao_lab.types import ObjectScores

    objects = ObjectTable.build(np.arange(T), noisy, np.full(T, score), np.full(T, track_id))
    return ObjectScores(objects, np.full(T, score, np.float32))


def two_disc_clip(T=48, H=96, W=180, seed=3):
    """Textured background; disc A (r 11) moves right at 3 px/frame along row 60, disc B (r 9) left at 2 px/frame along
    row 40: they pass each other around frame 28, where their boxes touch (one merged blob for a background-subtraction
    detector). Returns (clip, A masks, B masks, A boxes, union boxes)."""
    from tao_lab.segmenter import mask_box

    rng = np.random.default_rng(seed)
    bg = (rng.integers(60, 120, (H // 8 + 1, W // 8 + 1, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
    bg = np.kron(bg, np.ones((8, 8, 1), np.uint8))[:H, :W]
    yy, xx = np.mgrid[:H, :W]
    tex_a = np.kron(rng.integers(150, 255, (H // 3 + 1, W // 3 + 1)), np.ones((3, 3), int))[:H, :W]
    tex_b = np.kron(rng.integers(0, 50, (H // 3 + 1, W // 3 + 1)), np.ones((3, 3), int))[:H, :W]
    frames, ma, mb, boxes_a, union = [], [], [], [], []
    for t in range(T):
        da, db = 3 * t, -2 * t
        a = (xx + 0.5 - (10 + da)) ** 2 + (yy + 0.5 - 60) ** 2 <= 11 ** 2
        b = (xx + 0.5 - (150 + db)) ** 2 + (yy + 0.5 - 40) ** 2 <= 9 ** 2
        f = bg.astype(np.int16) + rng.normal(0, 3, (H, W, 3)).astype(np.int16)
        f[a] = np.roll(tex_a, da, axis=1)[a][:, None]
        f[b] = np.roll(tex_b, db, axis=1)[b][:, None]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
        ma.append(a)
        mb.append(b)
        boxes_a.append(mask_box(a))
        union.append(mask_box(a | b))
    return ArrayClip(np.stack(frames)), np.stack(ma), np.stack(mb), np.stack(boxes_a), np.stack(union)
