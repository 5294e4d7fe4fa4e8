"""Which backend serves a model: numpy when every network in it has a numpy forward, else torch.

Importing torch costs ~0.5 GB of resident memory, several times the rest of the operator; the numpy
backend (mesp_core.forecasting.numpy_nets and each family's numpy_forward) serves N-BEATS, LSTM,
DLinear, the non-trainable experts, blends of them and the floor stage's demand head without it.
"""

from __future__ import annotations

from mesp_core.forecasting.artifact import ArtifactError
from mesp_core.forecasting.experts import NUMPY_FAMILIES
from mesp_core.forecasting.numpy_nets import check_backend

__all__ = ["check_backend", "choose_backend", "expert_configs", "torch_families"]


def expert_configs(manifest: dict) -> list[dict]:
    """Every expert config of a manifest: the clusters', the dense models' and the naive floor."""
    configs = [entry["expert"]["config"] for entry in manifest.get("clusters", [])]
    configs += [entry["config"] for entry in manifest.get("dense", {}).get("models", {}).values()]
    if "naive" in manifest:
        configs.append(manifest["naive"]["config"])
    return configs


def torch_families(manifest: dict) -> list[str]:
    """The families of a manifest's experts (blend members included) that have no numpy forward."""
    needed: set[str] = set()
    pending = expert_configs(manifest)
    while pending:
        config = pending.pop()
        family = config.get("family")
        if family == "blend":
            pending += list(config.get("members", []))
        elif family not in NUMPY_FAMILIES:
            needed.add(str(family))
    return sorted(needed)


def choose_backend(manifest: dict, backend: str = "auto", model_dir="model") -> str:
    """"numpy" or "torch" for this manifest: `auto` picks numpy when every family has a numpy forward;
    asking for numpy when one has none is an ArtifactError that names it."""
    check_backend(backend)
    if backend == "torch":
        return "torch"
    missing = torch_families(manifest)
    if not missing:
        return "numpy"
    if backend == "numpy":
        raise ArtifactError(f"{model_dir}: backend 'numpy' cannot serve this model: {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no numpy forward (use 'auto' or 'torch')")
    return "torch"
