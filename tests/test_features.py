"""Feature extractors on synthetic clips with known motion, and the shared single decoding pass."""
from __future__ import annotations

import numpy as np
import pytest

from tao_lab.features import (FrameContext, BoxGeometryFeature, CropAppearanceFeature, DeepFeature, FeatureSet, FlowEstimator,
                              PoseFeature, VelocityFeature, extract_features)
from tao_lab.types import ObjectTable
from helpers import MovingSquareClip


class CountingClip(MovingSquareClip):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.reads = 0

    def _read(self, i):
        self.reads += 1
        return super()._read(i)


def square_objects(clip, frames):
    return ObjectTable.build(np.array(frames), np.stack([clip.box(i) for i in frames]))


@pytest.mark.parametrize("vx,vy", [(5, 0), (0, -4), (-3, 3)])
def test_velocity_reads_known_speed_and_direction(vx, vy):
    clip = MovingSquareClip(num_frames=12, height=128, width=160, squares=((60, 60, vx, vy, 20, 220),), noise=2)
    objects = square_objects(clip, list(range(12)))
    feats = extract_features(clip, objects, [VelocityFeature(bins=8)], progress=False)["velocity"]
    true = np.hypot(vx, vy)
    assert feats.shape == (12, 11) and feats.dtype == np.float32
    speed, cell_max = np.median(feats[:, 0]), np.median(feats[:, 2])
    assert abs(speed - true) < 0.25 * true, (speed, true)
    assert abs(cell_max - true) < 0.25 * true
    np.testing.assert_allclose(feats[:, 3:].sum(1), feats[:, 0], rtol=1e-4, atol=1e-5)  # bins sum to the speed
    expected_bin = int((np.arctan2(vy, vx) % (2 * np.pi)) / (2 * np.pi / 8) + 0.5) % 8  # nearest sector
    dominant = np.bincount(feats[1:, 3:].argmax(1), minlength=8).argmax()
    assert dominant in (expected_bin, (expected_bin - 1) % 8)


def test_velocity_static_object_is_zero():
    clip = MovingSquareClip(num_frames=6, squares=((40, 40, 0, 0, 16, 220),), noise=1)
    feats = extract_features(clip, square_objects(clip, [1, 3, 5]), [VelocityFeature()], progress=False)["velocity"]
    assert feats[:, :3].max() < 0.5


def test_geometry_columns():
    clip = MovingSquareClip(num_frames=3, height=100, width=200)
    objs = ObjectTable.build(np.array([0, 2]), np.array([[10, 20, 30, 60], [0, 0, 200, 100]], np.float32))
    g = extract_features(clip, objs, [BoxGeometryFeature()], progress=False)["geometry"]
    np.testing.assert_allclose(g[0], [0.1, 0.4, 20, 40, np.log(0.5), np.sqrt(800)], rtol=1e-5)
    np.testing.assert_allclose(g[1, :4], [0.5, 0.5, 200, 100])


def test_appearance_descriptors():
    clip = MovingSquareClip(num_frames=4)
    objs = square_objects(clip, [0, 1, 2, 3])
    grey = extract_features(clip, objs, [CropAppearanceFeature(size=8)], progress=False)["appearance"]
    assert grey.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(grey, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(grey.mean(1), 0.0, atol=1e-5)
    hog = extract_features(clip, objs, [CropAppearanceFeature(size=16, kind="hog")], progress=False)["appearance"]
    assert hog.shape == (4, CropAppearanceFeature(size=16, kind="hog").dim)
    # a crop whose left half is the bright square: grey thumbnail bright on the left, HOG dominated by the
    # horizontal-gradient (vertical edge) orientation bin
    x1, y1, x2, y2 = clip.box(1)
    half = ObjectTable.build(np.array([1]), np.array([[x1 + 8, y1, x2 + 8, y2]], np.float32))
    g = extract_features(clip, half, [CropAppearanceFeature(size=8)], progress=False)["appearance"].reshape(8, 8)
    assert g[:, :3].mean() > 0 > g[:, 5:].mean()
    h = extract_features(clip, half, [CropAppearanceFeature(size=16, kind="hog")], progress=False)["appearance"]
    per_bin = h.reshape(-1, 9).sum(0)
    assert per_bin.argmax() in (0, 8)  # gradient direction ~0 or ~pi: a vertical edge


def test_square_appearance_crops_keep_the_object_shape():
    """A dark object 30 px wide and 10 px high on a bright frame: resized as a box it fills the whole thumbnail; as a
    square around its centre (30 x 30) it fills the middle third of the rows, with the bright ground above and
    below. Near the frame's corner the square repeats the border pixels and still has the box's longer side."""
    from tao_lab.features.appearance import _square_crops

    frame = np.full((60, 80), 200, np.uint8)
    frame[25:35, 20:50] = 20
    ctx = FrameContext(0, np.repeat(frame[..., None], 3, axis=2), None, None, None)
    box = np.array([[20, 25, 50, 35]], np.float32)
    stretched = CropAppearanceFeature(size=9).compute(ctx, box).reshape(9, 9)
    assert np.ptp(stretched) < 1e-6  # uniform: the shape is gone
    square = CropAppearanceFeature(size=9, shape="square").compute(ctx, box).reshape(9, 9)
    assert np.all(square[3:6] < 0) and np.all(square[:3] > 0) and np.all(square[6:] > 0)
    ramp = np.tile(np.arange(80, dtype=np.uint8), (60, 1))  # grey level = column
    crop = next(_square_crops(ramp, np.array([[70, 0, 80, 40]], np.float64)))  # 40 x 40 around (75, 20): x 55..94
    assert crop.shape == (40, 40) and np.array_equal(crop[0], np.minimum(np.arange(55, 95), 79))
    with pytest.raises(ValueError, match="crop shape"):
        CropAppearanceFeature(shape="circle")


def test_extract_features_decodes_each_frame_once_and_aligns_rows():
    clip = CountingClip(num_frames=10)
    # rows deliberately out of frame order, with a frame that has two objects and frames with none
    frames = [7, 2, 2, 9, 0]
    objs = ObjectTable.build(np.array(frames), np.stack([clip.box(i) for i in frames]))
    fs = FeatureSet({"velocity": VelocityFeature(bins=4), "geometry": BoxGeometryFeature(),
                     "appearance": CropAppearanceFeature(size=8)})
    feats = fs.extract(clip, objs)
    assert clip.reads == 10
    assert {k: v.shape for k, v in feats.items()} == {"velocity": (5, 7), "geometry": (5, 6), "appearance": (5, 64)}
    np.testing.assert_allclose(feats["geometry"][:, 0], (objs.xyxy[:, 0] + objs.xyxy[:, 2]) / 2 / clip.width)
    assert (feats["velocity"][[0, 1, 3, 4], 0] > 3).all()  # every object moves 5 px/frame, frame 0 included
    empty = fs.extract(clip, ObjectTable.empty())
    assert empty["velocity"].shape == (0, 7)


def test_feature_cost_bench_times_each_extractor_without_changing_its_output():
    """benchmarks/feature_cost.py wraps every extractor (and the shared flow) in a timer: the features it extracts
    equal a plain extraction's, every row's time is positive, and the flow row outputs nothing."""
    from helpers import load_benchmark

    bench = load_benchmark("feature_cost")
    clip = CountingClip(num_frames=10)
    frames = [7, 2, 2, 9, 0]
    objs = ObjectTable.build(np.array(frames), np.stack([clip.box(i) for i in frames]))
    fs = FeatureSet({"velocity": VelocityFeature(bins=4), "appearance": CropAppearanceFeature(size=8)})
    plain = fs.extract(clip, objs)
    flow, timed = bench.FlowFirst(), [bench.Timed(e) for e in fs.extractors.values()]
    out = extract_features(clip, objs, [flow, *timed], progress=False)
    assert out.pop("(optical flow)").shape == (5, 0)
    assert out.keys() == plain.keys() and all(np.array_equal(out[k], plain[k]) for k in plain)
    assert flow.seconds > 0 and all(t.seconds > 0 for t in timed)


def test_flow_estimator_settings():
    with pytest.raises(ValueError, match="DIS preset"):
        FlowEstimator(preset="slow")
    a = np.zeros((32, 48), np.uint8)
    assert FlowEstimator(scale=0.5)(a, a).shape == (32, 48, 2)
    with pytest.raises(ValueError, match="duplicate"):
        extract_features(MovingSquareClip(num_frames=2), ObjectTable.empty(), [VelocityFeature(), VelocityFeature()])


def test_missing_model_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"resnet18\.pth"):
        DeepFeature(weights=str(tmp_path / "resnet18.pth"))
    with pytest.raises(FileNotFoundError, match=r"yolov8n-pose\.pt.*download"):
        PoseFeature(weights=str(tmp_path / "yolov8n-pose.pt"))
    with pytest.raises(FileNotFoundError, match=r"yolov8s\.pt"):
        DeepFeature(weights=str(tmp_path / "yolov8s.pt"), backend="yolo")


def test_deep_feature_torchvision_random_weights(tmp_path):
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    ext = DeepFeature(weights=str(path), arch="resnet18", input_size=32)
    clip = MovingSquareClip(num_frames=3)
    objs = square_objects(clip, [0, 1, 2])
    f = extract_features(clip, objs, [ext], progress=False)["deep"]
    assert f.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match="arch"):
        DeepFeature(weights=str(path))._load()


def test_deep_feature_yolo_roialign_random_weights(tmp_path):
    from tao_lab.no_network import set_offline_env

    set_offline_env(tmp_path / "ultralytics")
    ext = DeepFeature(weights="yolov8n.yaml", backend="yolo", imgsz=96, layer=9)
    clip = MovingSquareClip(num_frames=2)
    objs = square_objects(clip, [0, 1, 1])
    f = extract_features(clip, objs, [ext], progress=False)["deep"]
    assert f.shape == (3, ext.dim) and ext.dim == 256  # SPPF of yolov8n has 256 channels
    assert np.isfinite(f).all()


def test_pose_feature_random_weights_gives_nan_rows(tmp_path):
    from tao_lab.no_network import set_offline_env

    set_offline_env(tmp_path / "ultralytics")
    ext = PoseFeature(weights="yolov8n-pose.yaml", imgsz=64, conf=0.99)
    clip = MovingSquareClip(num_frames=2)
    f = extract_features(clip, square_objects(clip, [0, 1]), [ext], progress=False)["pose"]
    assert f.shape == (2, 34)
    assert np.isnan(f).all()  # random weights find no confident person: rows are NaN, as documented


def test_feature_configs_instantiate(tmp_path):
    from hydra.utils import instantiate

    from helpers import compose_group

    fs = instantiate(compose_group("features", "default"))
    assert isinstance(fs, FeatureSet)
    assert fs.dims == {"velocity": 11, "geometry": 6, "place": 6, "ground": 2, "appearance": 256}
    assert fs.flow_kwargs["preset"] == "fast" and fs.flow_kwargs["finest_scale"] == 1
    for option, name in (("deep", "resnet18.pth"), ("pose", "yolov8n-pose.pt")):
        cfg = compose_group("features", option)
        assert "velocity" in cfg.extractors and option in cfg.extractors
        with pytest.raises(Exception, match=name.replace(".", r"\.")):
            instantiate(cfg)  # weights are not shipped: a clear error naming the file


def test_place_feature_gives_the_footprint_relative_to_the_frame():
    from tao_lab.features import PlaceFeature

    ctx = type("Ctx", (), {"frame": np.zeros((240, 360, 3), np.uint8)})()
    out = PlaceFeature().compute(ctx, np.array([[90, 40, 130, 120], [350, 200, 380, 250]], np.float32))
    # bottom centre (110, 120) / (360, 240); size 40x80 / frame; the second box is clipped to the frame for its foot
    assert np.allclose(out[0], [110 / 360, 0.5, 40 / 360, 80 / 240, 360, 240])
    assert np.allclose(out[1, :2], [1.0, 1.0])


def test_ground_feature_reads_the_strip_below_the_box():
    from tao_lab.features import GroundFeature

    grey = np.full((40, 50), 100, np.uint8)
    grey[20:] = np.tile(np.array([0, 50], np.uint8), (20, 25))  # a flat bright ground above row 20, stripes below
    ctx = type("Ctx", (), {"grey": grey})()
    boxes = np.array([[10, 0, 20, 10],     # strip rows 10-11: flat 100
                      [10, 5, 20, 19],     # rows 19-20: one flat row (100), one striped row (0/50)
                      [10, 0, 20, 30],     # 30 rows high: strip 0.15 x 30 = 4 or 5 rows deep, all striped
                      [10, 30, 20, 39.5],  # one row left below it: no ground to read
                      [49.2, 10, 55, 20]], np.float32)  # one column left in the frame
    out = GroundFeature().compute(ctx, boxes)
    assert np.allclose(out[0], [100, 0])
    # grey: (10 x 100 + 10 x 25) / 20; texture: mean |dy| 75 (the two rows differ by 100 or 50), |dx| 0 and 50
    assert np.allclose(out[1], [62.5, 0.5 * (75 + 25)])
    assert np.allclose(out[2], [25, 0.5 * (0 + 50)])
    assert np.isnan(out[3]).all() and np.isnan(out[4]).all()
    with pytest.raises(ValueError, match="depth"):
        GroundFeature(depth=0)


def test_strip_cover_is_the_share_of_the_strip_inside_other_boxes():
    from tao_lab.features.ground import strip_cover

    strips = np.array([[0, 10, 10, 12],    # 10 x 2 px below box 0
                       [20, 30, 30, 34],   # below box 1
                       [0, 0, 0, 0]])      # an empty strip
    boxes = np.array([[0, 0, 10, 10],      # its own box never counts
                      [0, 0, 5, 40],       # covers columns 0-4 of strip 0 (half), not strip 1
                      [22, 32, 26, 50]], np.float64)  # 4 of strip 1's 10 columns, 2 of its 4 rows: 8 of 40 px
    np.testing.assert_allclose(strip_cover(strips, boxes), [0.5, 0.2, 0.0])
    # two overlapping boxes count their union once: columns 0-7 of strip 0
    np.testing.assert_allclose(strip_cover(strips[:1], np.array([[0, 0, 10, 10], [0, 0, 5, 40], [3, 5, 8, 20]])),
                               [0.8])


def test_ground_cover_leaves_out_a_strip_that_another_object_covers():
    """A person standing right behind another (the strip below the far one is the near one's body) gets no ground
    value with cover=0.5; the near one and a lone object keep theirs, as without the option."""
    from tao_lab.features import GroundFeature

    grey = np.full((60, 60), 200, np.uint8)
    ctx = type("Ctx", (), {"grey": grey})()
    boxes = np.array([[10, 0, 20, 20],    # far person: strip rows 20-22, columns 10-19
                      [8, 18, 22, 50],    # near person, its box covers that strip whole
                      [40, 10, 50, 30]], np.float32)  # alone
    plain, covered = GroundFeature().compute(ctx, boxes), GroundFeature(cover=0.5).compute(ctx, boxes)
    assert np.isfinite(plain).all()
    assert np.isnan(covered[0]).all()
    np.testing.assert_allclose(covered[1:], plain[1:])
    # one box alone in its frame is never covered
    np.testing.assert_allclose(GroundFeature(cover=0.5).compute(ctx, boxes[:1]), plain[:1])
    with pytest.raises(ValueError, match="cover must be a share"):
        GroundFeature(cover=0)


def walkway_clip(num_frames: int = 20):
    """Frames of a flat walkway (grey 200) above a striped lawn (rows 40-59), with a dark person (grey 30, rows 10-38,
    6 px wide) walking right 4 px a frame on the walkway."""
    from tao_lab.streaming import BufferClip

    frames = []
    for i in range(num_frames):
        f = np.full((60, 100, 3), 200, np.uint8)
        f[40:] = np.tile(np.array([0, 80], np.uint8), (20, 50))[..., None]
        f[10:39, 4 * i:4 * i + 6] = 30
        frames.append(f)
    return BufferClip(frames, fps=25.0, clip_id="walkway")


def test_ground_from_the_background_sees_the_ground_where_the_frame_shows_the_person():
    """A box that is the person's upper half (a fragment: its bottom is not at the feet) has the person's own body in
    the frame's strip; the clip's background shows the walkway there. A box standing on the lawn reads the lawn either
    way. Offline the background is the median over the clip, on a stream the median over the frames seen so far."""
    from tao_lab.features import GroundFeature
    from tao_lab.streaming import StreamInfo

    clip = walkway_clip()
    i = 5  # the person spans columns 20-25
    upper_half = np.array([[20, 10, 26, 24]], np.float32)  # strip rows 24-25 (2 rows): the person's body
    on_lawn = np.array([[60, 20, 70, 40]], np.float32)  # strip rows 40-42: stripes 0 / 80 along x
    objects = ObjectTable.build(np.array([i, i]), np.concatenate([upper_half, on_lawn]))
    frame_src = extract_features(clip, objects, [GroundFeature()], progress=False)["ground"]
    background = extract_features(clip, objects, [GroundFeature(source="background")], progress=False)["ground"]
    np.testing.assert_allclose(frame_src[0], [30, 0])  # the person's body, flat dark
    np.testing.assert_allclose(background[0], [200, 0])  # the walkway: the person is there in 1-2 of 20 frames
    np.testing.assert_allclose(frame_src[1], [40, 40])  # the lawn: stripes 0 / 80, |dx| 80 along x, 0 along y
    np.testing.assert_allclose(background[1], frame_src[1])
    # a stream: before it has seen more than the current frame, its background is that frame; later, the median of
    # the frames seen so far, one every `stride`
    ext = GroundFeature(source="background", stride=1)
    ext.begin(StreamInfo(60, 100, 25.0, "stream"))
    first = FrameContext(0, clip.frame(0), FlowEstimator(), None, None)
    np.testing.assert_allclose(ext.compute(first, np.array([[0, 10, 6, 24]], np.float32))[0], [30, 0])
    for k in range(1, 6):
        out = ext.compute(FrameContext(k, clip.frame(k), FlowEstimator(), None, None), upper_half)
    np.testing.assert_allclose(out[0], [200, 0])  # frames 0-5: the person over columns 20-25 in frame 5 alone
    with pytest.raises(ValueError, match="source must be one of"):
        GroundFeature(source="sky")


def test_deep_feature_refuses_a_pickled_model_unless_allowed(tmp_path):
    """A whole pickled model can only be restored by an unpickle that runs code from the file: refused by default,
    with the file's name and the two ways out; a trusted file loads with allow_pickle=True."""
    import torch
    import torchvision

    from tao_lab.checkpoints import CheckpointError, PickledObjectsError

    torch.manual_seed(0)
    path = tmp_path / "whole_model.pth"
    torch.save(torchvision.models.resnet18(weights=None), path)
    with pytest.raises(PickledObjectsError, match=r"whole_model\.pth.*state_dict.*allow_pickle=true"):
        DeepFeature(weights=str(path), input_size=32)._load()
    ext = DeepFeature(weights=str(path), input_size=32, allow_pickle=True)
    clip = MovingSquareClip(num_frames=2)
    assert extract_features(clip, square_objects(clip, [0, 1]), [ext], progress=False)["deep"].shape == (2, 512)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"junk\.pth is not a file written by torch.save.*state dict"):
        DeepFeature(weights=str(junk), arch="resnet18", allow_pickle=True)._load()


def test_flow_min_rows_keeps_the_flow_image_at_least_that_tall_on_every_frame_size():
    """min_rows picks, per frame height, the coarsest DIS pyramid level whose image keeps >= min_rows rows: Ped2's
    240 rows -> level 1 (its validated setting), 160 rows -> full resolution, 480 rows -> level 2; the level follows
    the frame size from call to call, and the flow stays in original px/frame (a 2 px shift reads as 2 px)."""
    import cv2

    flow = FlowEstimator(min_rows=120)
    assert [flow.level_for(r) for r in (120, 158, 160, 239, 240, 360, 480, 960)] == [0, 0, 0, 0, 1, 1, 2, 3]
    rng = np.random.default_rng(0)
    for rows, level in ((160, 0), (240, 1), (480, 2), (160, 0)):
        texture = cv2.GaussianBlur(rng.integers(0, 255, (rows, 240)).astype(np.uint8), (5, 5), 0)
        moved = np.roll(texture, 2, axis=1)
        out = flow(moved, texture)  # pixels of `moved` come from 2 px to their left in `texture`
        assert flow._dis.getFinestScale() == level
        assert np.median(out[20:-20, 20:-20, 0]) == pytest.approx(-2.0, abs=0.3)
    with pytest.raises(ValueError, match="min_rows must be >= 8"):
        FlowEstimator(min_rows=4)


def test_flow_estimator_pickles_and_its_copy_computes_the_same_flow():
    import pickle

    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (60, 80), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    est = FlowEstimator(preset="fast", finest_scale=1, min_rows=30)
    copy = pickle.loads(pickle.dumps(est))
    assert copy.signature == est.signature
    np.testing.assert_array_equal(copy(a, b), est(a, b))


def test_velocity_edge_band_leaves_the_border_flow_out():
    """A flow of 1 px/frame to the right with a 6 px/frame artefact in the 16 px next to the left edge: a box touching
    the edge reads the artefact with every pixel counted and the object's own motion with edge_band=16; a box wholly
    inside the band has no reliable pixel (zeros); a box away from the edges reads the same either way."""
    from types import SimpleNamespace

    flow = np.zeros((60, 80, 2), np.float32)
    flow[..., 0] = 1.0
    flow[:, :16, 0] = 6.0
    ctx = SimpleNamespace(flow=flow)
    boxes = np.array([[0, 10, 30, 50], [2, 20, 12, 40], [30, 20, 50, 40]], np.float32)
    every = VelocityFeature(bins=4).compute(ctx, boxes)
    band = VelocityFeature(bins=4, edge_band=16).compute(ctx, boxes)
    assert every[0, 1] == pytest.approx(6.0) and every[0, 2] == pytest.approx(6.0)
    np.testing.assert_allclose(band[0], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], atol=1e-6)
    assert every[1, 0] == pytest.approx(6.0) and not band[1].any()
    np.testing.assert_array_equal(band[2], every[2])
    # every edge counts: the same artefact along the bottom edge
    flow_b = np.zeros((60, 80, 2), np.float32)
    flow_b[..., 0] = 1.0
    flow_b[44:, :, 0] = 6.0
    bottom = VelocityFeature(bins=4, edge_band=16).compute(SimpleNamespace(flow=flow_b), np.array([[30, 20, 50, 60.0]]))
    np.testing.assert_allclose(bottom[0, :3], [1.0, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="edge_band"):
        VelocityFeature(edge_band=-1)


def test_velocity_edge_fallback_whole_reads_a_box_with_too_little_inside():
    """edge_fallback=whole: a box with at least one cell (8 px) on both axes inside the 16 px band reads only those
    pixels (as zeros mode); a box with less inside reads its whole box, artefact included, where zeros mode reads
    zeros; the boundary is exactly one cell; a bad value is refused."""
    from types import SimpleNamespace

    flow = np.zeros((60, 80, 2), np.float32)
    flow[..., 0] = 1.0
    flow[:, :16, 0] = 6.0
    ctx = SimpleNamespace(flow=flow)
    # 0: 14 px inside the band (x 16..30); 1: wholly in the band; 2: 7 px inside (< one cell); 3: exactly 8 px inside
    boxes = np.array([[0, 20, 30, 40], [2, 20, 12, 40], [0, 20, 23, 40], [0, 20, 24, 40]], np.float32)
    every = VelocityFeature(bins=4).compute(ctx, boxes)
    zeros = VelocityFeature(bins=4, edge_band=16).compute(ctx, boxes)
    whole = VelocityFeature(bins=4, edge_band=16, edge_fallback="whole").compute(ctx, boxes)
    np.testing.assert_array_equal(whole[0], zeros[0])
    assert whole[0, 2] == pytest.approx(1.0)
    assert not zeros[1].any()
    np.testing.assert_array_equal(whole[1], every[1])
    assert whole[1, 0] == pytest.approx(6.0)
    np.testing.assert_array_equal(whole[2], every[2])
    assert whole[2, 2] == pytest.approx(6.0) and zeros[2, 2] < 2.0  # zeros mode: a cell mostly inside the band
    np.testing.assert_allclose(whole[3, :3], [1.0, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="edge_fallback"):
        VelocityFeature(edge_band=16, edge_fallback="nearest")
