"""manifests/kuberay/rayjob-train.yaml: a KubeRay RayJob whose entrypoint is a `mesp train --ray auto`
that mesp's own parser accepts, on a cluster whose every node sees the trace volume."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

import yaml

from mesp_core.cli import build_parser
from tests.unit.test_layers import ROOT

RAYJOB = ROOT / "manifests" / "kuberay" / "rayjob-train.yaml"


def _mounts(pod_spec: dict) -> dict[str, str]:
    """mountPath -> claim name, for the first container of a pod template's spec."""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"]}
    return {m["mountPath"]: claims[m["name"]] for m in pod_spec["containers"][0]["volumeMounts"]}


def test_the_rayjob_trains_with_ray_on_the_trace_volume_and_writes_the_model_on_the_head():
    (job,) = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True  # the Ray cluster goes away with the job

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["mesp", "train"]
    args = build_parser().parse_args(argv[1:])
    assert args.ray == "auto" and args.trace and args.out

    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    workers = [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    assert workers and all(group["replicas"] >= 1 for group in cluster["workerGroupSpecs"])
    images = {head["containers"][0]["image"]} | {w["containers"][0]["image"] for w in workers}
    assert len(images) == 1, images  # head and workers run the same MESP code
    trace_dir = PurePosixPath(args.trace[0])
    # Ray tasks on any node read the day files: the trace is mounted everywhere at the same path
    for pod in [head, *workers]:
        assert str(trace_dir) in _mounts(pod), _mounts(pod)
    # the driver (on the head) writes the model folder onto a volume that outlives the job
    head_mounts = _mounts(head)
    assert any(PurePosixPath(args.out).is_relative_to(path) for path in head_mounts if path != str(trace_dir)), head_mounts
    major, minor = (int(x) for x in cluster["rayVersion"].split(".")[:2])
    assert (major, minor) >= (2, 40)  # pyproject's ray extra: ray[default]>=2.40
