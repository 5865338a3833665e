"""Loading torch files safely: always ``weights_only=True``, and a refusal that names the file and what was expected.

``torch.load`` unpickles; an unrestricted unpickle runs whatever code the file asks for. With ``weights_only=True``
only tensors and plain containers (dict, list, tuple, str, numbers) are restored, whatever torch's default or the
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` environment override say (the override only applies when the argument is not
passed). Every torch file tao_lab writes (scorer checkpoints, Lightning's training checkpoints) needs nothing more.
The one format that truly needs a full unpickle, a whole pickled torchvision model for the deep features, is refused
unless explicitly allowed (:class:`tao_lab.features.DeepFeature` ``allow_pickle``).
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A torch file that cannot be used (the message names the file, the problem and what was expected)."""


class PickledObjectsError(CheckpointError):
    """The file holds Python objects beyond tensors and plain containers: only an unrestricted unpickle, which can
    run code from the file, could restore them."""


def read_bytes(path: PathLike, expected: str) -> bytes:
    """The file's bytes; CheckpointError when it is missing or empty (e.g. a write killed by an old version)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}; expected {expected}")
    data = p.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes: a write that was interrupted?); expected "
                              f"{expected}. Delete it and write it again")
    return data


def load_weights(path: PathLike, expected: str, data: bytes | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name the file.

    expected: what the file should be, for the messages (e.g. "a scorer checkpoint written by train.py").
    data: the file's bytes when already read. Raises PickledObjectsError when the file needs a full unpickle,
    CheckpointError when it is not a torch file at all (random, truncated or foreign bytes).
    """
    import pickle

    import torch

    data = read_bytes(path, expected) if data is None else data
    if data[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(f"{path} is a truncated torch file (its zip archive has no end: a write that was "
                              f"interrupted?); expected {expected}. Delete it and write it again")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise CheckpointError(f"{path} is not a file written by torch.save (random, truncated or foreign "
                                  f"bytes); expected {expected}") from None
        raise PickledObjectsError(
            f"{path} holds Python objects beyond tensors and plain values; restoring them would need an "
            f"unrestricted unpickle, which runs code from the file, so it is refused. Expected {expected}. "
            f"(torch: {str(exc).splitlines()[-1].strip()[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - EOFError, RuntimeError (bad zip member), ...: all mean "unreadable"
        raise CheckpointError(f"{path} is not a readable torch file ({type(exc).__name__}: {exc}); expected "
                              f"{expected}") from None
