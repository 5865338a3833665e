"""sam2 segmenter: randomly initialised tiny weights at a small image size on CPU (no download), the chunking /
carrying / ending logic with a fake sam2, the missing-checkpoint error, and use inside a Hydra job."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import ROOT, ArrayClip, square_clip
from helpers import SQUARE_PROMPTS as PROMPTS
from tao_lab.segmenter import Sam2Segmenter, mask_box
from tao_lab.types import Prompts

IMAGE_SIZE = 64  # the smallest input sam2 accepts here: fast on CPU, exercises every code path


@pytest.fixture(scope="module")
def clip():
    return square_clip()


def test_missing_checkpoint_names_file_and_source(tmp_path):
    seg = Sam2Segmenter(version="sam2", backbone="tiny", weights_dir=str(tmp_path))  # construction needs no weights
    with pytest.raises(FileNotFoundError) as err:
        seg.segment(square_clip(T=2), PROMPTS)
    msg = str(err.value)
    assert str(tmp_path / "sam2_hiera_tiny.pt") in msg
    assert "download_ckpts.sh" in msg and "github.com/facebookresearch/sam2" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt" in msg
    with pytest.raises(FileNotFoundError, match="sam2.1_hiera_large.pt"):
        Sam2Segmenter(backbone="large", weights_dir=str(tmp_path)).build_model()
    with pytest.raises(FileNotFoundError, match="my.pt"):
        Sam2Segmenter(checkpoint=str(tmp_path / "my.pt")).build_model()
    with pytest.raises(ValueError):
        Sam2Segmenter(random_init=True, backbone="huge")


def test_unreadable_checkpoint_names_file_and_what_was_expected(tmp_path):
    from tao_lab.checkpoints import CheckpointError

    bad = tmp_path / "sam2_hiera_tiny.pt"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"sam2_hiera_tiny\.pt is not a file written by torch\.save.*"
                                              r"official sam2 checkpoint"):
        Sam2Segmenter(version="sam2", backbone="tiny", weights_dir=str(tmp_path)).build_model()


def test_video_mode_random_weights(tmp_path):
    from hydra.core.global_hydra import GlobalHydra

    clip = square_clip(T=5)
    seg = Sam2Segmenter(mode="video", backbone="tiny", random_init=True, image_size=IMAGE_SIZE, chunk_size=3,
                        num_threads=1, tmp_dir=str(tmp_path))
    recorded = []
    iter_logits = seg.iter_logits
    seg.iter_logits = lambda c, p: (recorded.append(x) or x for x in iter_logits(c, p))
    seg_out = seg.segment(clip, PROMPTS)
    assert not GlobalHydra.instance().is_initialized()  # importing sam2 left no Hydra state behind
    # forward from the earliest prompt to the clip end, through two chunks ([1, 4) and [3, 5))
    assert [t for t, _, _ in recorded] == list(range(1, clip.num_frames))
    for t, ids, logits in recorded:
        assert logits.shape == (len(ids), clip.height, clip.width) and logits.dtype == np.float32
        assert set(ids.tolist()) == {1, 2}  # sam2 also masks object 2 before its prompt (all prompts first)
    assert os.listdir(tmp_path) == []  # temporary chunk folders are removed
    assert seg_out.score_maps.shape == (clip.num_frames, clip.height, clip.width)
    assert seg_out.score_maps.dtype == np.float16 and seg_out.instance_maps.dtype == np.int32
    assert set(np.unique(seg_out.instance_maps).tolist()) <= {0, 1, 2}
    assert not seg_out.instance_maps[0].any()  # nothing before the first prompt (forward only)
    # logits -> masks: the Segmentation is exactly what the logits say
    for t, ids, logits in recorded:
        fg = (logits > 0).any(0)
        np.testing.assert_array_equal(seg_out.instance_maps[t] > 0, fg)
        np.testing.assert_array_equal(seg_out.score_maps[t] > 0, fg)
        rows = seg_out.objects.frame == t
        assert set(seg_out.objects.track_id[rows].tolist()) == {i for i, lg in zip(ids, logits) if (lg > 0).any()}
        for oid, box in zip(seg_out.objects.track_id[rows], seg_out.objects.xyxy[rows]):
            np.testing.assert_array_equal(box, mask_box(logits[list(ids).index(oid)] > 0))
    # backward propagation also covers the frames before the first prompt
    seg.reverse = True
    assert [t for t, _, _ in iter_logits(clip, PROMPTS)] == list(range(clip.num_frames))


def test_image_mode_random_weights_and_checkpoint_loading(clip, tmp_path):
    import torch

    seg = Sam2Segmenter(mode="image", backbone="tiny", random_init=True, image_size=IMAGE_SIZE, num_threads=1)
    out = list(seg.iter_logits(clip, PROMPTS))
    assert [t for t, _, _ in out] == [1, 3]  # only the prompted frames
    assert out[0][1].tolist() == [1] and out[1][1].tolist() == [1, 2]
    assert out[1][2].shape == (2, clip.height, clip.width)
    seg_out = seg.segment(clip, PROMPTS)
    assert set(seg_out.objects.frame.tolist()) <= {1, 3}
    assert not seg_out.instance_maps[[0, 2, 4, 5, 6]].any()
    # the official checkpoint layout ({"model": state_dict}) loads with weights_only=True and gives the same logits
    torch.save({"model": seg.build_model().state_dict()}, tmp_path / "sam2.1_hiera_tiny.pt")
    loaded = Sam2Segmenter(mode="image", backbone="tiny", weights_dir=str(tmp_path), image_size=IMAGE_SIZE)
    for (t1, i1, l1), (t2, i2, l2) in zip(out, loaded.iter_logits(clip, PROMPTS)):
        assert t1 == t2 and (i1 == i2).all()
        np.testing.assert_allclose(l1, l2, atol=1e-4)
    torch.save({"model": {"bogus": torch.zeros(1)}}, tmp_path / "sam2.1_hiera_small.pt")
    with pytest.raises(RuntimeError, match="does not fit"):
        Sam2Segmenter(mode="image", backbone="small", weights_dir=str(tmp_path), image_size=IMAGE_SIZE).build_model()


def test_frame_output_logits_to_masks_and_pixel_scores():
    logits = np.array([[[-2.0, 0.5], [3.0, 0.0]]], np.float32)
    scores = np.array([2.0], np.float32)
    for mode, expected in (("object", [[2, 2], [2, 2]]), ("logit", [[0, 0.5], [3, 0]]),
                           ("object_x_probability", 2 / (1 + np.exp(-logits[0])))):
        seg = Sam2Segmenter(random_init=True, pixel_score=mode)
        masks, pix = seg.frame_output(np.array([1]), logits, scores)
        np.testing.assert_array_equal(masks[0], [[False, True], [True, False]])
        np.testing.assert_allclose(pix[0], np.where(masks[0], expected, 0), rtol=1e-5)
    soft = Sam2Segmenter(random_init=True, soft_logit_min=-1.0)
    masks, pix = soft.frame_output(np.array([1]), logits, scores)
    assert pix[0, 1, 1] == pytest.approx(1.0) and pix[0, 0, 0] == 0.0  # logit 0 is in the margin, -2 is not


class FakeSam2:
    """Replaces sam2 in Sam2Segmenter to test chunking, carrying and ending: every object present in a chunk
    (carried or prompted) gets output on every frame from the chunk's earliest conditioning frame (like sam2);
    object 2's mask is empty on the frames in ``empty``."""

    def __init__(self, seg, T, H, W, empty):
        self.T, self.H, self.W, self.empty = T, H, W, set(empty)
        self.calls = []
        seg.build_model = lambda: None
        seg._write_chunk = self._write
        seg._run_chunk = self._run

    def _write(self, clip, start, stop, folder):
        os.makedirs(folder)
        self.bounds = (start, stop)

    def _run(self, predictor, folder, s, prompts, rows, carried):
        start, stop = self.bounds
        assert os.path.isdir(folder)
        objs = set(carried) | {int(prompts.obj_id[r]) for r in rows}
        conds = [0] * bool(carried) + [int(prompts.frame[r]) - s for r in rows]
        self.calls.append((start, stop, sorted(carried)))
        out = {}
        for local in range(min(conds), stop - start):
            out[local] = {}
            for oid in objs:
                lg = np.full((self.H, self.W), -5.0, np.float32)
                if not (oid == 2 and s + local in self.empty):
                    lg[oid, oid] = 5.0
                out[local][oid] = lg
        return out


def test_chunking_carry_and_end_on_vanish(tmp_path):
    T, H, W = 10, 8, 8
    clip = ArrayClip(np.zeros((T, H, W, 3), np.uint8))
    prompts = Prompts([1, 1, 8], [1, 2, 2], [[0, 0, 4, 4]] * 3, [[1, 1]] * 3, [1.0, 2.0, 2.0])
    for end_on_vanish in (False, True):
        seg = Sam2Segmenter(random_init=True, chunk_size=4, end_on_vanish=end_on_vanish, vanish_frames=2,
                            tmp_dir=str(tmp_path))
        fake = FakeSam2(seg, T, H, W, empty={2, 3})
        got = {t: ids.tolist() for t, ids, _ in seg.iter_logits(clip, prompts)}
        # chunks [1,5), [4,8), [7,10) overlap by one frame; live objects are carried by their last mask
        assert fake.calls == [(1, 5, []), (4, 8, [1] if end_on_vanish else [1, 2]), (7, 10, [1])] or \
            fake.calls == [(1, 5, []), (4, 8, [1, 2]), (7, 10, [1, 2])]
        assert sorted(got) == list(range(1, T))
        if end_on_vanish:
            # object 2: empty on frames 2 and 3 -> ended at frame 3 (2 empty frames) until its prompt at frame 8
            assert [t for t in got if 2 in got[t]] == [1, 2, 3, 8, 9]
        else:
            assert [t for t in got if 2 in got[t]] == list(range(1, T))
        assert os.listdir(tmp_path) == []


def test_sam2_segmenter_inside_a_hydra_job(tmp_path):
    """A real @hydra.main app instantiates configs/segmenter/sam2.yaml and runs it in video and image mode (the
    GlobalHydra clash of STACK.md: sam2 must not be imported at module top nor build through Hydra's compose)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.yaml").write_text(textwrap.dedent(f"""
        defaults:
          - segmenter: sam2
          - _self_
        hydra:
          searchpath: [file://{ROOT / 'configs'}]
          run:
            dir: {tmp_path / 'run'}
        paths:
          weights_dir: {tmp_path}
        """))
    (tmp_path / "app.py").write_text(textwrap.dedent(f"""
        import hydra, numpy as np
        from hydra.utils import instantiate
        import sys; sys.path.insert(0, {str(ROOT / 'tests')!r})
        from helpers import square_clip, SQUARE_PROMPTS as PROMPTS

        @hydra.main(version_base=None, config_path="conf", config_name="app")
        def main(cfg):
            for mode in ("video", "image"):
                seg = instantiate(cfg.segmenter, mode=mode)
                out = seg.segment(square_clip(T=3), PROMPTS)
                print("OK", seg.mode, out.score_maps.shape, sorted(set(out.objects.frame.tolist())))

        main()
        """))
    args = [sys.executable, str(tmp_path / "app.py"), "segmenter.random_init=true", "segmenter.backbone=tiny",
            f"segmenter.image_size={IMAGE_SIZE}", "segmenter.num_threads=1"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if line.startswith("OK")]
    assert len(lines) == 2 and all("(3, 72, 96)" in line for line in lines), res.stdout
