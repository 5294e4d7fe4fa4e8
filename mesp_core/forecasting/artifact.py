"""Versioned model folder: manifest.json + safetensors weights. Never pickle.

Layout (format_version 1):
    manifest.json               what the model is: clusters, experts, metrics, data fingerprint,
                                and the sha256 of every weights file (so corruption is caught)
    centroids.safetensors       router centroids [K, 1440]
    experts/cluster-<k>.safetensors, dense/<family>.safetensors
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT_NAME = "mesp-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """A model folder that is missing, corrupt or written by an incompatible MESP."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_tensors(path: Path, tensors: Mapping[str, "torch.Tensor"]) -> str:
    """Write tensors with safetensors and return the file's sha256."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors needs contiguous tensors that own their storage; an empty dict is a valid file.
    clean = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    save_file(clean, str(path))
    return sha256_file(path)


def load_tensors(model_dir: Path, relative: str, expected_sha256: str | None) -> dict[str, "torch.Tensor"]:
    """A weights file's tensors as torch tensors (training, the torch backend)."""
    return _load(model_dir, relative, expected_sha256, "torch")


def load_arrays(model_dir: Path, relative: str, expected_sha256: str | None) -> dict[str, "np.ndarray"]:
    """The same file's tensors as numpy arrays: what the numpy backend serves with, read without torch."""
    return _load(model_dir, relative, expected_sha256, "numpy")


def _load(model_dir: Path, relative: str, expected_sha256: str | None, framework: str) -> dict:
    from safetensors import SafetensorError

    if framework == "torch":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file

    path = model_dir / relative
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: weights file {relative} is missing")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise ArtifactError(f"{model_dir}: weights file {relative} is corrupt (sha256 does not match manifest)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{model_dir}: cannot read weights file {relative}: {exc}") from None


def read_manifest(model_dir: str | os.PathLike) -> dict:
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise ArtifactError(f"{model_dir}: model folder does not exist")
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: not a MESP model folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: corrupt manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{path}: not a MESP model manifest (format != {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{path}: manifest has no integer format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version} is newer than this MESP supports ({FORMAT_VERSION}); upgrade mesp"
        )
    return manifest


def write_manifest(model_dir: Path, manifest: dict) -> None:
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}
    text = json.dumps(manifest, indent=2, sort_keys=False, default=_json_default)
    tmp = model_dir / (MANIFEST + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, model_dir / MANIFEST)


def _json_default(value):
    # numpy scalars and arrays end up in metrics; JSON has no such types.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = True) -> Path:
    """Create an empty staging folder beside out_dir; call commit_output_dir to swap it in."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ArtifactError(f"{out_dir}: already exists")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))


def commit_output_dir(staging: Path, out_dir: str | os.PathLike) -> Path:
    """Replace out_dir by the finished staging folder, so a crash never leaves half a model."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / MANIFEST).exists()):
            shutil.rmtree(out_dir)
        else:
            raise ArtifactError(f"{out_dir}: exists and is not a MESP model folder; refusing to overwrite")
    os.replace(staging, out_dir)
    return out_dir
