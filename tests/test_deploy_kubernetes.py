"""``tusk deploy kubernetes`` and the Helm chart: every object written is checked against the
Kubernetes API's models (the ``kubernetes`` Python client's, strictly: an unknown field, a
wrong type or a missing required field fails), plus the rules the API server adds that the
models cannot say (names, labels, quantities, references between fields and objects).

No cluster is involved: none can be started where these tests run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from click.testing import CliRunner

from tusk._version import __version__
from tusk.cli.main import cli
from tusk.deploy.kubernetes import (
    KubernetesSettings,
    json_patch,
    merge_patch,
    server_objects,
    worker_job,
)
from tusk.deploy.resolve import ResolvedImage
from tusk.polling import poll_until
from tusk.pps.executor import bwrap_works
from tusk.pps.handoff import HANDOFF_LOOP
from tusk.pps.images import ImageCache, make_mount_point
from tusk.pps.spec import load_spec, parse_specs, spec_hash

sys.path.insert(0, str(Path(__file__).parent / "pps"))
from imagekit import add_layer, busybox_image, local_registry, push

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = "--no-resolve-images"  # the specs below name Docker Hub images
CHART = ROOT / "deploy" / "helm" / "tusk"
CORPUS = Path(__file__).parent / "pps" / "corpus"
CI = os.environ.get("CI") == "true"

# Strict validation against the models


MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
}
_LIST = re.compile(r"^(?:List\[(.+)\]|list\[(.+)\])$")
_DICT = re.compile(r"^(?:Dict\[str, (.+)\]|dict\(str, (.+)\))$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
# k8s.io/apimachinery resource.Quantity, and its suffixes' factors.
_QUANTITY = re.compile(
    r"^[+]?(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_FACTORS = {"": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "P": 1e15, "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
            "Pi": 2.0**50, "Ei": 2.0**60}  # fmt: skip


def check_against_model(data: Any, type_name: str, path: str, errors: list[str]) -> None:
    """Walk ``data`` (wire form) along the client's ``openapi_types``/``attribute_map``:
    every key must be a field's JSON name, every value of the field's type, every required
    field present."""
    if m := _LIST.match(type_name):
        if not isinstance(data, list):
            errors.append(f"{path}: {type(data).__name__}, not a list")
            return
        for i, item in enumerate(data):
            check_against_model(item, m.group(1) or m.group(2), f"{path}[{i}]", errors)
        return
    if m := _DICT.match(type_name):
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            errors.append(f"{path}: {type(data).__name__}, not a mapping of strings")
            return
        for key, value in data.items():
            check_against_model(value, m.group(1) or m.group(2), f"{path}.{key}", errors)
        return
    scalars: dict[str, tuple[type, ...]] = {
        "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
        "datetime": (str,), "date": (str,),
        "object": (int, str),  # IntOrString, the only 'object' these manifests use
    }  # fmt: skip
    if type_name in scalars:
        ok = isinstance(data, scalars[type_name])
        if type_name != "bool" and isinstance(data, bool):
            ok = False
        if not ok:
            errors.append(f"{path}: {data!r} is not of type {type_name}")
        return
    model = getattr(k8s, type_name)
    if not isinstance(data, dict):
        errors.append(f"{path}: {type(data).__name__}, not an object ({type_name})")
        return
    wire = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, value in data.items():
        if key not in wire:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        check_against_model(value, model.openapi_types[wire[key]], f"{path}.{key}", errors)
    for attr, info in model.model_fields.items():
        if info.is_required() and model.attribute_map[attr] not in data:
            errors.append(f"{path}.{model.attribute_map[attr]}: required by {type_name}")


def _quantity(text: str) -> float:
    m = _QUANTITY.match(text)
    assert m is not None, text
    suffix = m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(m.group(1) + suffix)
    return float(m.group(1)) * _FACTORS[suffix]


def _check_meta(meta: dict[str, Any], kind: str, errors: list[str]) -> None:
    name = meta.get("name", "")
    rule = _DNS_LABEL if kind in ("Service", "Job") else _DNS_SUBDOMAIN
    if not rule.match(name):
        errors.append(f"{kind} name {name!r} is not a DNS-1123 name")
    if not _DNS_LABEL.match(meta.get("namespace", "")):
        errors.append(f"{kind} {name}: namespace {meta.get('namespace')!r}")
    _check_labels(meta.get("labels", {}), f"{kind} {name}", errors)
    for key in meta.get("annotations", {}):
        if not _qualified(key):
            errors.append(f"{kind} {name}: annotation key {key!r}")


def _qualified(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(_NAME_PART.match(name)) and (not prefix or bool(_DNS_SUBDOMAIN.match(prefix)))


def _check_labels(labels: dict[str, str], where: str, errors: list[str]) -> None:
    for key, value in labels.items():
        if not _qualified(key) or not _LABEL_VALUE.match(value):
            errors.append(f"{where}: label {key}={value!r}")


def _check_resources(res: dict[str, dict[str, str]], where: str, errors: list[str]) -> None:
    for part in ("requests", "limits"):
        for name, value in res.get(part, {}).items():
            if not _QUANTITY.match(value):
                errors.append(f"{where}: {part}.{name} {value!r} is not a quantity")
                return
    low, high = res.get("requests", {}), res.get("limits", {})
    for name in set(low) & set(high):
        if _quantity(low[name]) > _quantity(high[name]):
            errors.append(f"{where}: requests.{name} over limits.{name}")
    for name, value in low.items():
        if "/" in name and high.get(name) != value:  # extended resources: requests == limits
            errors.append(f"{where}: extended resource {name} requested without equal limit")


def _check_pod(pod: dict[str, Any], labels: dict[str, str], where: str, errors: list[str]) -> None:
    _check_labels(labels, where, errors)
    volumes = [v["name"] for v in pod.get("volumes", [])]
    if len(set(volumes)) != len(volumes):
        errors.append(f"{where}: volume names repeat: {volumes}")
    for v in pod.get("volumes", []):
        if not _DNS_LABEL.match(v["name"]):
            errors.append(f"{where}: volume name {v['name']!r}")
        if "secret" in v and not _DNS_SUBDOMAIN.match(v["secret"].get("secretName", "")):
            errors.append(f"{where}: secret volume {v}")
        sources = [k for k in v if k != "name"]
        if len(sources) > 1:
            errors.append(f"{where}: volume {v['name']} has sources {sources}")
    every = pod["containers"] + pod.get("initContainers", [])
    names = [c["name"] for c in every]
    if len(set(names)) != len(names):
        errors.append(f"{where}: container names repeat: {names}")
    for s in pod.get("imagePullSecrets", []):
        if not _DNS_SUBDOMAIN.match(s["name"]):
            errors.append(f"{where}: imagePullSecret {s['name']!r}")
    for c in every:
        at = f"{where} container {c['name']}"
        if not _DNS_LABEL.match(c["name"]):
            errors.append(f"{at}: name is not a DNS label")
        if not c.get("image"):
            errors.append(f"{at}: no image")
        ports = [p.get("name") for p in c.get("ports", [])]
        for p in ports:
            if p is not None and not _IANA_SVC_NAME.match(p):
                errors.append(f"{at}: port name {p!r}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                errors.append(f"{at}: {probe} names port {port!r}, which it does not have")
        paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if len(set(paths)) != len(paths):
            errors.append(f"{at}: mount paths repeat: {paths}")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                errors.append(f"{at}: mounts volume {m['name']!r}, which the pod lacks")
            if not m["mountPath"].startswith("/"):
                errors.append(f"{at}: mount path {m['mountPath']!r} is not absolute")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and not _DNS_SUBDOMAIN.match(ref["name"]):
                errors.append(f"{at}: env {e['name']} from secret {ref['name']!r}")
        _check_resources(c.get("resources", {}), at, errors)


def validate(objects: list[dict[str, Any]]) -> list[str]:
    """Every problem of the objects, as ``kind name: ...`` lines (empty: all valid)."""
    errors: list[str] = []
    pods: dict[str, dict[str, Any]] = {}
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in MODELS:
            errors.append(f"unknown kind {key}")
            continue
        where = f"{obj['kind']} {obj.get('metadata', {}).get('name')}"
        model = getattr(k8s, MODELS[key])
        found: list[str] = []
        check_against_model(obj, MODELS[key], where, found)
        try:  # the model's own (pydantic, strict) validation: types and required fields
            model.model_validate(obj)
        except Exception as exc:
            found.append(f"{where}: {' '.join(str(exc).split())}")
        errors.extend(found)
        if found:  # the rules below read fields the models have vouched for
            continue
        _check_meta(obj.get("metadata", {}), obj["kind"], errors)
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "Job"):
            template = spec["template"]
            labels = template.get("metadata", {}).get("labels", {})
            _check_pod(template["spec"], labels, where, errors)
            pods[where] = template
        if obj["kind"] == "Deployment":
            wanted = spec["selector"]["matchLabels"]
            if any(labels.get(k) != v for k, v in wanted.items()):
                errors.append(f"{where}: the selector does not select the template's pods")
        if obj["kind"] == "Job":
            if spec["template"]["spec"].get("restartPolicy") not in ("Never", "OnFailure"):
                errors.append(f"{where}: a Job's pods need restartPolicy Never or OnFailure")
            if "selector" in spec:
                errors.append(f"{where}: a Job's selector is generated by Kubernetes")
    for obj in objects:
        if obj.get("kind") != "Service":
            continue
        spec = obj["spec"]
        chosen = [
            t
            for t in pods.values()
            if all(t["metadata"]["labels"].get(k) == v for k, v in spec["selector"].items())
        ]
        if not chosen:
            errors.append(f"Service {obj['metadata']['name']}: selects no pod written")
        for port in spec["ports"]:
            target = port.get("targetPort")
            named = {
                p.get("name")
                for t in chosen
                for c in t["spec"]["containers"]
                for p in c.get("ports", [])
            }
            if isinstance(target, str) and target not in named:
                errors.append(f"Service: targetPort {target!r} is no port of its pods")
    return errors


# Running the command


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``tusk ...`` in-process; (exit code, stdout, stderr). No TUSK_* of the caller leaks in."""
    for name in ("TUSK_PROJECT", "TUSK_ADDRESS", "TUSK_HOME", "TUSK_METADATA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUSK_CONFIG", str(tmp_path / "no-config.yaml"))

    def _run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        r = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    return _run


def deploy(run: Any, *args: str) -> list[dict[str, Any]]:
    """The objects ``tusk deploy kubernetes ARGS`` writes (add OFFLINE for Docker Hub images:
    no registry is reached from here)."""
    code, out, err = run("deploy", "kubernetes", *args)
    assert code == 0, err
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


EDGES = """
pipeline: {name: edges}
description: Pachyderm's opencv tutorial, edges step
transform:
  image: pachyderm/opencv:1.0
  cmd: [python3, /edges.py]
parallelism_spec: {constant: 2}
input: {pfs: {repo: images, glob: "/*"}}
"""
MONTAGE = """
pipeline: {name: montage}
transform:
  image: dpokidov/imagemagick:7.1.0-62
  cmd: [sh]
  stdin:
    - montage -shadow -background SkyBlue -geometry 300x300+2+2
      $(find /pfs -type f | sort) /pfs/out/montage.png
input:
  cross:
    - pfs: {repo: images, glob: "/"}
    - pfs: {repo: edges, glob: "/"}
"""
REPOS = """
kind: repo
name: images
"""
TRAIN = """
pipeline: {name: train}
transform:
  image: registry.example.com/ml/train:3
  cmd: [python3, train.py]
  user: "1000:2000"
  env: {EPOCHS: "10"}
  secrets:
    - {name: wandb, key: token, env_var: WANDB_API_KEY}
    - {name: gcs-creds, mount_path: /var/secrets/gcs}
    - {name: gcs-creds, mount_path: /etc/gcs}
  image_pull_secrets: [regcred]
resource_requests: {cpu: 1.5, memory: 2Gi, disk: 10GB}
resource_limits: {cpu: 4, memory: 8Gi, gpu: {type: nvidia.com/gpu, number: 2}}
datum_tries: 5
job_timeout: 1h30m
metadata:
  labels: {team: ml}
  annotations: {example.com/owner: alice}
input: {pfs: {repo: features, glob: "/*"}}
"""


def jobs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Job"}


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in job["spec"]["template"]["spec"]["containers"]}


# The tests


def test_the_server_alone_is_valid_and_runs_the_scheduler_without_datums(run: Any) -> None:
    objects = deploy(run, "--namespace", "tusk")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("ServiceAccount", "tusk"),
        ("Service", "tusk"),
        ("Deployment", "tusk"),
    ]
    assert validate(objects) == []
    assert {o["metadata"]["namespace"] for o in objects} == {"tusk"}
    deployment = objects[2]
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["image"] == f"ghcr.io/tusk-data/tusk:{__version__}"
    assert server["command"][:4] == ["tusk", "up", "--host", "0.0.0.0"]
    assert server["command"][-2:] == ["--executor", "workers"]
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"http": 7800, "s3": 30600}
    env = {e["name"]: e for e in server["env"]}
    for name, key in (("TUSK_METADATA_URL", "metadata_url"), ("TUSK_STORAGE_URL", "storage_url")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "tusk-stores", "key": key}
    assert all("value" not in e for n, e in env.items() if n != "TUSK_HOME")  # no URL written
    assert server["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert pod["volumes"] == [{"name": "home", "emptyDir": {}}]
    assert deployment["spec"]["replicas"] == 1
    service = objects[1]["spec"]
    assert service["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["ports"]} == {"http": 7800, "s3": 30600}
    claimed = deploy(run, "--home-claim", "tusk-home", "--service-type", "NodePort")
    assert validate(claimed) == []
    assert claimed[2]["spec"]["template"]["spec"]["volumes"] == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "tusk-home"}}
    ]
    assert claimed[1]["spec"]["type"] == "NodePort"


def test_specs_from_stdin(run: Any) -> None:
    code, out, err = run(
        "deploy", "kubernetes", OFFLINE, "-f", "-", input=EDGES + "---\n" + MONTAGE
    )
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    assert validate(objects) == []
    assert sorted(jobs(objects)) == ["tusk-worker-edges", "tusk-worker-montage"]


def test_ports_and_the_validating_client_are_the_ones_documented() -> None:
    from tusk.cli.commands.pipeline import DEFAULT_S3_PORT
    from tusk.deploy.kubernetes import API_PORT, S3_PORT
    from tusk.server import DEFAULT_PORT

    assert (API_PORT, S3_PORT) == (DEFAULT_PORT, DEFAULT_S3_PORT)
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    major = k8s.__version__.split(".")[0]
    assert f"`kubernetes` Python client version {major} " in docs


def test_the_probes_use_the_apis_own_routes(tmp_path: Path) -> None:
    """The probes' paths are GET routes of the API (not a guess that drifts)."""
    from tusk.api.app import create_app
    from tusk.server import Services

    services = Services.open(tmp_path / "home")
    try:
        app = create_app(services.pfs, services.pps)
        gets = {r.path for r in app.routes if "GET" in (getattr(r, "methods", None) or ())}
    finally:
        services.close()
    (deployment,) = [o for o in server_objects(KubernetesSettings()) if o["kind"] == "Deployment"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] in gets, probe


def test_edges_and_montage_get_valid_worker_jobs(run: Any, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "edges.yaml", EDGES)
    write(specs, "montage.yaml", MONTAGE)
    write(specs, "repos.yaml", REPOS)  # tusk apply's folder: the repo needs no manifest
    write(specs, ".hidden/ignored.yaml", "not: a spec")
    objects = deploy(run, OFFLINE, "-f", str(specs), "--namespace", "data")
    assert validate(objects) == []
    found = jobs(objects)
    assert sorted(found) == ["tusk-worker-edges", "tusk-worker-montage"]
    edges = found["tusk-worker-edges"]
    assert edges["metadata"]["labels"] == {
        "app.kubernetes.io/name": "tusk",
        "app.kubernetes.io/component": "worker",
        "tusk.dev/pipeline": "edges",
    }
    spec = load_spec(parse_specs(EDGES)[0])
    assert edges["metadata"]["annotations"] == {
        "tusk.dev/pipeline": "edges",
        "tusk.dev/spec-hash": spec_hash(spec),
        "tusk.dev/version": __version__,
    }
    job = edges["spec"]
    assert job["parallelism"] == 2
    assert "completions" not in job  # workers exit when no datum is left
    assert job["backoffLimit"] == 3  # datum_tries' default
    assert "activeDeadlineSeconds" not in job
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert {v["name"]: v for v in pod["volumes"]}["pfs"] == {"name": "pfs", "emptyDir": {}}
    c = containers(edges)
    assert list(c) == ["worker", "user"]
    assert c["worker"]["image"] == f"ghcr.io/tusk-data/tusk:{__version__}"
    assert c["worker"]["command"] == [
        "tusk",
        "worker",
        "--pipeline",
        "edges",
        "--handoff",
        "/tusk",
        "--once",
    ]
    assert c["user"]["image"] == "pachyderm/opencv:1.0"
    # The loop runs in the copied busybox: no shell or tool of the image is needed.
    bb = "/tusk-bin/busybox"
    assert c["user"]["command"] == [bb, "sh", "-c", HANDOFF_LOOP, bb]
    (init,) = pod["initContainers"]
    assert init["image"] == c["worker"]["image"]
    assert init["command"] == ["/bin/busybox", "cp", "/bin/busybox", bb]
    assert init["volumeMounts"] == [{"name": "tusk-bin", "mountPath": "/tusk-bin"}]
    assert {"name": "tusk-bin", "mountPath": "/tusk-bin", "readOnly": True} in c["user"][
        "volumeMounts"
    ]
    for name in ("worker", "user"):
        mounts = {m["mountPath"]: m["name"] for m in c[name]["volumeMounts"]}
        assert mounts["/pfs"] == "pfs" and mounts["/tusk"] == "tusk"
    # The worker reaches the server's API (its Service) with a token from a Secret; no store
    # credentials and no home anywhere in a worker pod.
    worker_env = {e["name"]: e for e in c["worker"]["env"]}
    assert worker_env == {
        "TUSK_ADDRESS": {"name": "TUSK_ADDRESS", "value": "http://tusk.data.svc:7800"},
        "TUSK_TOKEN": {
            "name": "TUSK_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "tusk-worker-token", "key": "token"}},
        },
    }
    assert "home" not in {v["name"] for v in pod["volumes"]}
    assert "env" not in c["user"]  # the token stays with the worker
    montage = found["tusk-worker-montage"]
    assert montage["spec"]["parallelism"] == 1
    assert containers(montage)["user"]["image"] == "dpokidov/imagemagick:7.1.0-62"


def test_resources_gpu_secrets_pull_secrets_and_user_map_to_the_pod(
    run: Any, tmp_path: Path
) -> None:
    objects = deploy(run, OFFLINE, "-f", str(write(tmp_path, "train.yaml", TRAIN)))
    assert validate(objects) == []
    train = jobs(objects)["tusk-worker-train"]
    pod = train["spec"]["template"]["spec"]
    user = containers(train)["user"]
    assert user["resources"] == {
        "requests": {"cpu": "1500m", "memory": "2Gi", "ephemeral-storage": "10G"},
        "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"},
    }
    assert "resources" not in containers(train)["worker"]
    assert user["securityContext"] == {"runAsUser": 1000, "runAsGroup": 2000}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    env = {e["name"]: e for e in user["env"]}
    assert env["EPOCHS"] == {"name": "EPOCHS", "value": "10"}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb", "key": "token"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volumes = [v for v in volumes.values() if "secret" in v]
    assert [v["secret"] for v in secret_volumes] == [{"secretName": "gcs-creds"}]  # one volume
    mounts = {m["mountPath"]: m for m in user["volumeMounts"]}
    for path in ("/var/secrets/gcs", "/etc/gcs"):
        assert mounts[path]["name"] == secret_volumes[0]["name"]
        assert mounts[path]["readOnly"] is True
    assert train["spec"]["backoffLimit"] == 5
    assert train["spec"]["activeDeadlineSeconds"] == 5400
    template = train["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "ml"
    assert template["labels"]["tusk.dev/pipeline"] == "train"
    assert template["annotations"] == {"example.com/owner": "alice"}


def test_pachydermss_kubernetes_fields_are_honoured_not_dropped(run: Any) -> None:
    """The corpus' camelCase spec: memory_volume, sidecar resources, scheduling_spec,
    tolerations, pod_patch, Pachyderm's "256MB", durations."""
    objects = deploy(run, OFFLINE, "-f", str(CORPUS / "edges.json"))
    assert validate(objects) == []
    edges = jobs(objects)["tusk-worker-edges"]
    pod = edges["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["pfs"]["emptyDir"] == {"medium": "Memory"}
    assert {"name": "cache"} in pod["volumes"]  # from pod_patch
    assert pod["nodeSelector"] == {"disktype": "ssd"}
    assert pod["priorityClassName"] == "high"
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    c = containers(edges)
    assert c["user"]["resources"] == {
        "requests": {"cpu": "500m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "256M"},
    }
    assert c["worker"]["resources"] == {"limits": {"cpu": "500m", "memory": "1Gi"}}
    assert edges["spec"]["activeDeadlineSeconds"] == 600
    assert edges["spec"]["backoffLimit"] == 2


def test_pod_spec_merges_and_a_bad_pod_patch_is_one_line(run: Any, tmp_path: Path) -> None:
    merged = EDGES + 'pod_spec: \'{"hostNetwork": false, "dnsPolicy": "ClusterFirst"}\'\n'
    objects = deploy(run, OFFLINE, "-f", str(write(tmp_path, "a.yaml", merged)))
    assert validate(objects) == []
    pod = jobs(objects)["tusk-worker-edges"]["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (False, "ClusterFirst")
    bad = EDGES + 'pod_patch: \'[{"op": "remove", "path": "/nope"}]\'\n'
    code, out, err = run("deploy", "kubernetes", "-f", str(write(tmp_path, "b.yaml", bad)))
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: {tmp_path / 'b.yaml'}: pipeline edges: pod_patch: "
        "can't remove a non-existent object 'nope'"
    ]


def test_output_dir_gets_one_file_per_object_equal_to_the_stream(run: Any, tmp_path: Path) -> None:
    spec = write(tmp_path, "specs/edges.yaml", EDGES)
    streamed = deploy(run, OFFLINE, "-f", str(spec))
    out = tmp_path / "out"
    code, stdout, err = run("deploy", "kubernetes", OFFLINE, "-f", str(spec), "--output", str(out))
    assert code == 0 and stdout == ""
    assert "kubectl apply -f" in err and "tusk-stores and tusk-worker-token" in err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [
        "00-serviceaccount-tusk.yaml",
        "01-service-tusk.yaml",
        "02-deployment-tusk.yaml",
        "03-job-tusk-worker-edges.yaml",
    ]
    assert [yaml.safe_load(f.read_text()) for f in files] == streamed


def test_a_spec_without_an_image_is_refused_in_one_line_and_nothing_is_written(
    run: Any, tmp_path: Path
) -> None:
    good = write(tmp_path, "specs/edges.yaml", EDGES)
    bare = write(
        tmp_path,
        "specs/local.yaml",
        EDGES.replace("edges", "local").replace("  image: pachyderm/opencv:1.0\n", ""),
    )
    out = tmp_path / "out"
    for target in ("-", str(out)):
        code, stdout, err = run(
            "deploy", "kubernetes", "-f", str(good), "-f", str(bare), "--output", target
        )
        assert code == 2 and stdout == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {bare}: pipeline local: transform.image is not set")
    assert not out.exists()


def test_a_pipeline_using_the_s3_gateway_is_refused_in_one_line(run: Any, tmp_path: Path) -> None:
    """Worker pods claim datums through the API, which does not hand out S3 sessions: a spec
    with s3_out (or an s3 input) is refused before anything is written, saying what to do."""
    spec = write(tmp_path, "s3.yaml", EDGES + "s3_out: true\n")
    out = tmp_path / "out"
    code, stdout, err = run("deploy", "kubernetes", OFFLINE, "-f", str(spec), "--output", str(out))
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: pipeline edges: ")
    assert "S3 gateway (input.pfs.s3 or s3_out)" in lines[0] and "tusk up" in lines[0]
    assert not out.exists()


def test_an_invalid_spec_gives_the_message_tusk_create_pipeline_gives(
    run: Any, tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.yaml", EDGES.replace("glob:", "glbo:"))
    two = write(
        tmp_path, "two.yaml", EDGES + "---\n" + EDGES.replace("/*", "[").replace("edges", "other")
    )
    home = tmp_path / "home"
    for spec in (bad, two):
        want = run("--home", str(home), "create", "pipeline", "-f", str(spec))
        out = tmp_path / "out"
        got = run("deploy", "kubernetes", "-f", str(spec), "--output", str(out))
        assert got[0] == want[0] == 2
        assert got[2] == want[2]
        assert len(got[2].strip().splitlines()) == 1
        assert "invalid pipeline spec" in got[2]
        assert not out.exists()


def test_names_become_dns_labels_and_the_project_is_kept(run: Any, tmp_path: Path) -> None:
    spec = write(tmp_path, "s.yaml", EDGES.replace("name: edges", "name: Edge_Detect"))
    code, out, err = run("--project", "vision", "deploy", "kubernetes", OFFLINE, "-f", str(spec))
    assert code == 0, err
    objects = list(yaml.safe_load_all(out))
    assert validate(objects) == []
    (job,) = jobs(objects).values()
    assert re.fullmatch(r"tusk-worker-vision-edge-detect-[0-9a-f]{8}", job["metadata"]["name"])
    assert job["metadata"]["labels"]["tusk.dev/pipeline"] == "vision.Edge_Detect"
    assert job["metadata"]["annotations"]["tusk.dev/pipeline"] == "vision/Edge_Detect"
    worker = containers(job)["worker"]
    assert worker["command"][3] == "vision/Edge_Detect"


def test_kubernetes_refusals_are_one_line(run: Any, tmp_path: Path) -> None:
    cases = {
        "secret": EDGES.replace(
            "  cmd:", "  secrets: [{name: my_secret, key: k, env_var: K}]\n  cmd:"
        ),
        "gpu": EDGES + "resource_limits: {gpu: {type: nvidia, number: 1}}\n",
        "more": EDGES + "resource_requests: {memory: 2Gi}\nresource_limits: {memory: 1Gi}\n",
        "sched": EDGES + "scheduling_spec: {nodeName: a}\n",
        "nocmd": EDGES.replace("  cmd: [python3, /edges.py]\n", ""),
    }
    wants = {
        "secret": "'my_secret' cannot be a Kubernetes Secret's name",
        "gpu": "gpu.type 'nvidia' is not a Kubernetes resource name",
        "more": "asks for more memory (2Gi) than resource_limits allows (1Gi)",
        "sched": "scheduling_spec.nodeName: unknown",
        "nocmd": "transform.cmd is not set",
    }
    for key, text in cases.items():
        code, out, err = run(
            "deploy", "kubernetes", OFFLINE, "-f", str(write(tmp_path, f"{key}.yaml", text))
        )
        assert code == 2 and out == "", (key, err)
        assert len(err.strip().splitlines()) == 1 and wants[key] in err, (key, err)
    for args, want in (
        (["--namespace", "Bad_NS"], "invalid namespace 'Bad_NS'"),
        (["--secret", "Stores!"], "invalid secret name"),
        (["-f", str(tmp_path / "missing")], "no such spec file or folder"),
        (
            [
                "-f",
                str(write(tmp_path, "e1.yaml", EDGES)),
                "-f",
                str(write(tmp_path, "e2.yaml", EDGES)),
            ],
            "pipeline edges is defined twice",
        ),
        (["-f", str(write(tmp_path, "t.jsonnet", "{}"))], "Jsonnet templates are not read"),
    ):
        code, out, err = run("deploy", "kubernetes", *args)
        assert code != 0 and out == "" and len(err.strip().splitlines()) == 1, err
        assert want in err, err


def test_a_non_numeric_user_is_a_warning_not_a_silent_drop(run: Any, tmp_path: Path) -> None:
    spec = write(tmp_path, "u.yaml", EDGES.replace("  cmd:", "  user: alice\n  cmd:"))
    code, out, err = run("deploy", "kubernetes", OFFLINE, "-f", str(spec))
    assert code == 0
    assert err.startswith("warning: pipeline edges: transform.user 'alice' is not numeric")
    (job,) = jobs(list(yaml.safe_load_all(out))).values()
    assert "securityContext" not in containers(job)["user"]


# The Helm chart


_PLACEHOLDER = re.compile(r"\{\{-?\s*(\.[A-Za-z][A-Za-z0-9_.]*)\s*-?\}\}")


def render_chart(values: dict[str, Any], namespace: str) -> tuple[list[dict[str, Any]], str]:
    """The chart's templates with their placeholders filled (the only template syntax they
    may use: Helm cannot be installed here, so this stands in for ``helm template``)."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    def value(match: re.Match[str]) -> str:
        path = match.group(1)
        if path == ".Release.Namespace":
            return namespace
        if path == ".Chart.AppVersion":
            return str(chart["appVersion"])
        assert path.startswith(".Values."), f"unsupported placeholder {path}"
        node: Any = values
        for part in path[len(".Values.") :].split("."):
            node = node[part]
        assert isinstance(node, str | int), path
        return str(node)

    objects = []
    notes = ""
    for template in sorted((CHART / "templates").iterdir()):
        text = _PLACEHOLDER.sub(value, template.read_text())
        assert "{{" not in text and "}}" not in text, f"{template.name}: template logic"
        if template.name == "NOTES.txt":
            notes = text
        else:
            objects.extend(d for d in yaml.safe_load_all(text) if d is not None)
    order = {"ServiceAccount": 0, "Service": 1, "Deployment": 2}  # Helm's install order
    return sorted(objects, key=lambda o: order[o["kind"]]), notes


def test_the_helm_chart_renders_what_tusk_deploy_writes(run: Any) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rendered, notes = render_chart(values, "default")
    assert rendered == deploy(run)  # the defaults of both
    assert validate(rendered) == []
    assert "kubectl create secret generic tusk-stores -n default" in notes
    # Every value reaches the object the command's option does.
    values["image"] = {"repository": "registry.local/tusk", "tag": "dev"}
    values["stores"]["secretName"] = "prod-stores"
    values["service"]["type"] = "LoadBalancer"
    values["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    rendered, _ = render_chart(values, "data")
    settings = KubernetesSettings(
        namespace="data",
        tusk_image="registry.local/tusk:dev",
        stores_secret="prod-stores",
        service_type="LoadBalancer",
        server_requests={"cpu": "1", "memory": "1Gi"},
        server_limits={"memory": "4Gi"},
    )
    assert rendered == server_objects(settings)
    assert validate(rendered) == []
    # ... and the command's options reach the same function (resources are the chart's only).
    defaults = KubernetesSettings()
    same = replace(
        settings, server_requests=defaults.server_requests, server_limits=defaults.server_limits
    )
    assert deploy(
        run,
        "--namespace",
        "data",
        "--tusk-image",
        "registry.local/tusk:dev",
        "--secret",
        "prod-stores",
        "--service-type",
        "LoadBalancer",
    ) == server_objects(same)


def test_the_chart_follows_tusks_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__
    assert values["image"]["tag"] == __version__


# The validator and the patches themselves


def _pod(o: dict[str, Any]) -> dict[str, Any]:
    return o["spec"]["template"]["spec"]


def _container(o: dict[str, Any]) -> dict[str, Any]:
    return _pod(o)["containers"][0]


BREAKAGES = [
    ("unknown field", lambda o: o["spec"].update(replica=1)),
    ("container_port: unknown", lambda o: _container(o)["ports"][0].update(container_port=1)),
    ("not of type int", lambda o: o["spec"].update(replicas="1")),
    ("not of type bool", lambda o: _pod(o).update(automountServiceAccountToken="no")),
    ("required", lambda o: _container(o).pop("name")),
    ("label", lambda o: o["metadata"]["labels"].update(bad="no spaces")),
    ("lacks", lambda o: _pod(o).pop("volumes")),
    ("quantity", lambda o: _container(o)["resources"]["limits"].update(memory="2GB")),
    ("over limits", lambda o: _container(o)["resources"]["requests"].update(memory="3Gi")),
    ("selector", lambda o: o["spec"]["selector"]["matchLabels"].update(x="y")),
    ("does not have", lambda o: _container(o)["readinessProbe"]["httpGet"].update(port="api")),
]


@pytest.mark.parametrize(("want", "change"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_the_validator_refuses_what_the_api_would(want: str, change: Any) -> None:
    (good,) = [o for o in server_objects(KubernetesSettings()) if o["kind"] == "Deployment"]
    assert validate([good]) == []
    broken = json.loads(json.dumps(good))
    change(broken)
    errors = validate([broken])
    assert any(want in e for e in errors), errors


def test_json_patch_and_merge_patch_follow_their_rfcs() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    assert json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}])["a"] == [1, 2, 3]
    assert json_patch(doc, [{"op": "add", "path": "/a/0", "value": 0}])["a"] == [0, 1, 2]
    assert json_patch(doc, [{"op": "remove", "path": "/b/c"}])["b"] == {}
    assert json_patch(doc, [{"op": "replace", "path": "/a/1", "value": 9}])["a"] == [1, 9]
    assert json_patch(doc, [{"op": "move", "from": "/b/c", "path": "/d"}]) == {
        "a": [1, 2],
        "b": {},
        "d": 1,
    }
    assert json_patch(doc, [{"op": "copy", "from": "/a", "path": "/b/a"}])["b"]["a"] == [1, 2]
    assert json_patch({"a/b": {"~": 1}}, [{"op": "remove", "path": "/a~1b/~0"}]) == {"a/b": {}}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # on a copy
    bad_patches: list[Any] = [
        [{"op": "test", "path": "/b/c", "value": 2}],
        [{"op": "replace", "path": "/a/2", "value": 0}],
        [{"op": "jump", "path": "/a"}],
        {"op": "add"},
    ]
    for bad in bad_patches:
        with pytest.raises(ValueError):
            json_patch(doc, bad)
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"a": None, "b": {"c": 3}}) == {
        "b": {"c": 3, "d": 2}
    }


# Images resolved in a registry: pinned by digest, the Entrypoint as the command, any image runs

HAVE_TOOLS = all(shutil.which(t) for t in ("skopeo", "umoci", "docker-registry", "htpasswd"))
needs_registry = pytest.mark.skipif(
    not (HAVE_TOOLS and os.path.exists("/bin/busybox")) and not CI,
    reason="skopeo, umoci, docker-registry, htpasswd or busybox-static is missing",
)
USER, PASSWORD = "alice", "s3cret-pw"
BB = "/tusk-bin/busybox"


@dataclass
class Registries:
    host: str  # entry:1 (Entrypoint only), bare:1 (no shell, no applet), plain:1 (no command)
    auth: str  # entry:1, behind USER:PASSWORD
    digests: dict[str, str]  # name -> the digest skopeo inspect reports
    layout: Path  # the images' OCI layout (bare: tag bare)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    if not (HAVE_TOOLS and os.path.exists("/bin/busybox")):
        pytest.fail("skopeo, umoci, docker-registry, htpasswd and busybox-static are needed")
    base = tmp_path_factory.mktemp("deploy-images")
    entry = busybox_image(base, "entry", entrypoint=["/bin/echo", "from-entrypoint"])
    shelled = busybox_image(base, "shelled", entrypoint=["/bin/busybox", "echo"], cmd=["a", "b"])
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    gone = [f"bin/{a}" for a in applets.split() if a != "busybox"]
    bare = add_layer(shelled, "bare", deleted=gone)  # /bin/busybox alone: no sh, no tool
    plain = busybox_image(base, "plain")
    with (
        local_registry(base / "open") as host,
        local_registry(base / "auth", (USER, PASSWORD)) as auth,
    ):
        digests = {
            "entry": push(entry, f"{host}/entry:1"),
            "bare": push(bare, f"{host}/bare:1"),
            "plain": push(plain, f"{host}/plain:1"),
            "auth": push(entry, f"{auth}/entry:1", (USER, PASSWORD)),
        }
        yield Registries(host, auth, digests, base / "layout")


@pytest.fixture
def no_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials of this machine reach skopeo."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def pipeline(name: str, image: str, cmd: list[str] | None = None) -> str:
    transform: dict[str, Any] = {"image": image}
    if cmd is not None:
        transform["cmd"] = cmd
    spec = {"pipeline": {"name": name}, "transform": transform,
            "input": {"pfs": {"repo": "in", "glob": "/*"}}}  # fmt: skip
    return json.dumps(spec) + "\n"


@needs_registry
def test_images_are_pinned_by_digest_and_an_empty_cmd_runs_the_entrypoint(
    run: Any, registries: Registries, tmp_path: Path, no_auth: None
) -> None:
    r = registries
    entry = f"{r.host}/entry@{r.digests['entry']}"
    specs = {
        "entry": pipeline("entry", f"{r.host}/entry:1"),  # Entrypoint only
        "both": pipeline("both", f"docker://{r.host}/bare:1"),  # Entrypoint + Cmd
        "given": pipeline("given", f"{r.host}/entry:1", ["/bin/echo", "mine"]),
        "pinned": pipeline("pinned", entry),  # already by digest: kept
    }
    for name, text in specs.items():
        write(tmp_path / "specs", f"{name}.json", text)
    objects = deploy(run, "-f", str(tmp_path / "specs"))
    assert validate(objects) == []
    found = {
        name[len("tusk-worker-") :]: containers(job)["user"] for name, job in jobs(objects).items()
    }
    loop = [BB, "sh", "-c", HANDOFF_LOOP, BB]
    assert found["entry"]["image"] == entry  # the digest skopeo inspect reports
    assert found["entry"]["command"] == [*loop, "/bin/echo", "from-entrypoint"]
    assert found["both"]["image"] == f"{r.host}/bare@{r.digests['bare']}"
    assert found["both"]["command"] == [*loop, "/bin/busybox", "echo", "a", "b"]
    assert found["given"]["image"] == entry
    assert found["given"]["command"] == loop  # transform.cmd replaces Entrypoint and Cmd
    assert found["pinned"]["image"] == entry
    annotations = jobs(objects)["tusk-worker-both"]["metadata"]["annotations"]
    assert annotations["tusk.dev/image"] == f"docker://{r.host}/bare:1"


def test_tusks_image_has_the_busybox_the_init_container_copies() -> None:
    """deploy/Containerfile (not built here: no container engine) installs Debian's
    busybox-static, whose binary is /bin/busybox, and tusk-data."""
    from tusk.deploy.kubernetes import TUSK_BUSYBOX

    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert "busybox-static" in text and '"tusk-data==${TUSK_VERSION}"' in text
    assert TUSK_BUSYBOX == "/bin/busybox" and f"&& {TUSK_BUSYBOX} true" in text


def test_the_image_command_reaches_the_loop_as_docker_runs_it() -> None:
    """Kubernetes expands $(VAR) and $$ in a container's command: the image's Entrypoint and
    Cmd are escaped (Docker runs them as written), and the loop holds neither."""
    assert "$(" not in HANDOFF_LOOP and "$$" not in HANDOFF_LOOP
    spec = load_spec(parse_specs(pipeline("p", "registry.local/app:1"))[0])
    command = ["sh", "-c", "echo $(HOME) $$ $PATH"]
    image = ResolvedImage("registry.local/app:1", "registry.local/app@sha256:" + "a" * 64,
                          "sha256:" + "a" * 64, command)  # fmt: skip
    job = worker_job(spec, KubernetesSettings(), image=image)
    assert validate([job]) == []
    user = containers(job)["user"]
    assert user["image"] == image.image
    assert user["command"][5:] == ["sh", "-c", "echo $$(HOME) $$$$ $$PATH"]


@needs_registry
def test_an_image_without_a_shell_runs_the_loop_with_the_copied_busybox(
    run: Any, registries: Registries, tmp_path: Path, no_auth: None
) -> None:
    """The user container as the Job writes it, played with bubblewrap in the rootfs of an
    image that holds /bin/busybox and nothing else: the init container's copy runs the loop."""
    if not bwrap_works():
        pytest.skip("bubblewrap does not work here") if not CI else pytest.fail("no bubblewrap")
    spec = write(tmp_path, "bare.json", pipeline("bare", f"{registries.host}/bare:1"))
    (job,) = jobs(deploy(run, "-f", str(spec))).values()
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    user = containers(job)["user"]
    cache = ImageCache(tmp_path / "cache")
    rootfs = cache.rootfs(cache.resolve(f"oci:{registries.layout}:bare"))
    assert not (rootfs / "bin" / "sh").exists() and not (rootfs / "bin" / "rm").exists()
    for inside in ("/tusk", "/tusk-bin", "/pfs"):  # a container runtime makes mount points
        assert make_mount_point(rootfs, inside)
    copied, handoff = tmp_path / "tusk-bin", tmp_path / "tusk"
    copied.mkdir()
    handoff.mkdir()
    assert init["command"][1:3] == ["cp", "/bin/busybox"]  # what the init container does:
    shutil.copy2("/bin/busybox", copied / "busybox")  # Tusk's image has it (busybox-static)
    proc = subprocess.Popen(
        ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
         "--tmpfs", "/tmp", "--bind", str(handoff), "/tusk", "--ro-bind", str(copied),
         "/tusk-bin", "--unshare-all", "--die-with-parent", "--clearenv",
         "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--", *user["command"]],
    )  # fmt: skip
    try:
        assert hand(handoff, []) == (0, "a b\n", "")  # no cmd handed: Entrypoint + Cmd
        assert hand(handoff, ["busybox", "echo", "found"]) == (0, "found\n", "")  # via PATH
        # busybox's own awk does not stand in for a program the image lacks
        assert hand(handoff, ["awk", "BEGIN {}"]) == (127, "", "awk: not found\n")
        (handoff / "exit").touch()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def hand(folder: Path, argv: list[str]) -> tuple[int, str, str]:
    """One request to the loop, as the worker writes it (tusk.pps.handoff); its answer."""
    for name in ("rc", "stdout", "stderr"):
        (folder / name).unlink(missing_ok=True)
    (folder / "argv").write_text("".join(a + "\n" for a in argv))
    (folder / "env").write_text("export TUSK_JOB_ID='j'\n")
    (folder / "stdin").write_text("")
    (folder / "cwd").write_text("")
    (folder / "go.part").touch()
    os.replace(folder / "go.part", folder / "go")
    poll_until(lambda: ((folder / "rc").exists(), None), 10, lambda _: "the loop did not answer")
    out, err = folder / "stdout", folder / "stderr"
    return (
        int((folder / "rc").read_text()),
        out.read_text() if out.exists() else "",
        err.read_text() if err.exists() else "",
    )


@needs_registry
def test_no_resolve_images_names_the_tag_and_needs_a_cmd(
    run: Any, registries: Registries, tmp_path: Path
) -> None:
    ref = f"{registries.host}/entry:1"
    spec = write(tmp_path, "given.json", pipeline("given", ref, ["/bin/echo"]))
    code, out, err = run("deploy", "kubernetes", OFFLINE, "-f", str(spec))
    assert code == 0, err
    assert err.startswith("warning: images are not resolved (--no-resolve-images)")
    assert len(err.strip().splitlines()) == 1
    (job,) = jobs(list(yaml.safe_load_all(out))).values()
    assert containers(job)["user"]["image"] == ref
    assert containers(job)["user"]["command"] == [BB, "sh", "-c", HANDOFF_LOOP, BB]
    assert "tusk.dev/image" not in job["metadata"]["annotations"]
    bare = write(tmp_path, "bare.json", pipeline("bare", ref))
    code, out, err = run("deploy", "kubernetes", OFFLINE, "-f", str(bare))
    assert code == 2 and out == "" and "transform.cmd is not set" in err


@needs_registry
def test_images_that_cannot_be_resolved_are_one_line_and_nothing_is_written(
    run: Any, registries: Registries, tmp_path: Path, no_auth: None
) -> None:
    r = registries
    good = write(tmp_path, "good.json", pipeline("good", f"{r.host}/entry:1", ["/bin/echo"]))
    zero = "sha256:" + "0" * 64
    cases = {
        "missing": (f"{r.host}/entry:nope", f"image {r.host}/entry:nope not found: "),
        "digest": (f"{r.host}/entry@{zero}", f"image {r.host}/entry@{zero} not found: "),
        "denied": (f"{r.auth}/entry:1", f"pull denied for image {r.auth}/entry:1: "),
        "nobody": ("127.0.0.1:1/app:1", "image 127.0.0.1:1/app:1 cannot be resolved: "),
        "nocmd": (f"{r.host}/plain:1", "transform.cmd is not set and image"),
        "layout": (f"oci:{r.layout}:bare", "push it to a registry"),
        "archive": ("docker-archive:/tmp/x.tar", "push it to a registry"),
    }
    out = tmp_path / "out"
    for key, (image, want) in cases.items():
        spec = write(tmp_path, f"{key}.json", pipeline(key, image))
        for args in ([], [OFFLINE]) if key in ("layout", "archive") else ([],):
            code, stdout, err = run(
                "deploy", "kubernetes", *args, "-f", str(good), "-f", str(spec),
                "--output", str(out),
            )  # fmt: skip
            assert code != 0 and stdout == "", (key, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: pipeline {key}: ")
            assert want in lines[0], (key, lines)
            assert not out.exists()
    # The registry's credentials, from a Docker config.json
    authfile = tmp_path / "config.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    authfile.write_text(json.dumps({"auths": {r.auth: {"auth": token}}}))
    spec = write(tmp_path, "authed.json", pipeline("authed", f"{r.auth}/entry:1"))
    (job,) = jobs(deploy(run, "-f", str(spec), "--authfile", str(authfile))).values()
    assert containers(job)["user"]["image"] == f"{r.auth}/entry@{r.digests['auth']}"
    code, _, err = run("deploy", "kubernetes", "-f", str(spec), "--authfile", str(tmp_path / "no"))
    assert code == 2 and err.strip() == f"error: auth file {tmp_path / 'no'} does not exist"
