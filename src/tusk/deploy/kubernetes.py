"""Kubernetes manifests for Tusk: the server, and one worker Job per pipeline.

The server is a Deployment ``tusk`` running ``tusk up --executor workers`` (it starts and
finishes jobs and serves the REST API and the S3 gateway, but runs no datum), its Service and
ServiceAccount. The stores' URLs come from a Secret the manifests name and never contain.

A pipeline's datums run in Job pods of two containers, as Pachyderm runs them in the spec's
own image: ``worker`` (Tusk's image, ``tusk worker --pipeline NAME --handoff /tusk --once``)
claims a datum, lays its inputs out under ``/pfs`` and hands it over through files in
``/tusk``; ``user`` (the spec's image) runs :data:`tusk.pps.handoff.HANDOFF_LOOP`, which runs
the command and answers with its exit code; the worker then stores ``/pfs/out``. Workers exit
when the pipeline has no job left, so a Job completes.

Any image runs, as in Pachyderm (whose init container copies its worker binary in): an init
container of Tusk's image copies its static busybox into the emptyDir ``/tusk-bin``, and the
user container runs the loop with ``/tusk-bin/busybox sh``, so the image needs no shell and no
tool. Images are resolved first (:mod:`tusk.deploy.resolve`): the Job names each by digest,
and a spec without ``transform.cmd`` runs the image's Entrypoint + Cmd, handed to the loop as
its arguments.

Objects are plain dicts in the API's wire form (camelCase): what ``kubectl apply`` reads.
``deploy/helm/tusk`` templates the same server objects; a test checks they stay equal.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tusk._version import __version__
from tusk.deploy.resolve import ImageResolver, ResolvedImage, cluster_image
from tusk.errors import InvalidArgument, InvalidSpec, TuskError
from tusk.pps.spec import PipelineSpec, Resources, parse_quantity, spec_hash
from tusk.values import frozen

DEFAULT_IMAGE = f"ghcr.io/tusk-data/tusk:{__version__}"
API_PORT = 7800  # tusk.server.DEFAULT_PORT
S3_PORT = 30600  # the S3 gateway's default (Pachyderm's)
HOME = "/var/lib/tusk"
HEALTH_PATH = "/api/v1/health"  # 200 while the metadata store answers, else 503
LIVE_PATH = "/api/v1/version"  # answers without a store: a restart would not mend a store
GPU_RESOURCE = "nvidia.com/gpu"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")

NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
VERSION_LABEL = "app.kubernetes.io/version"
PIPELINE_LABEL = "tusk.dev/pipeline"
PIPELINE_ANNOTATION = "tusk.dev/pipeline"
HASH_ANNOTATION = "tusk.dev/spec-hash"
VERSION_ANNOTATION = "tusk.dev/version"
IMAGE_ANNOTATION = "tusk.dev/image"  # transform.image as the spec wrote it, when pinned
# Where the init container puts Tusk's static busybox (Debian's busybox-static) for the loop.
BUSYBOX_DIR = "/tusk-bin"
BUSYBOX = f"{BUSYBOX_DIR}/busybox"
TUSK_BUSYBOX = "/bin/busybox"  # in Tusk's image (deploy/Containerfile)
NOT_RESOLVED = (
    "images are not resolved (--no-resolve-images): Jobs name them by tag, not by digest, so a "
    "moved tag changes what runs, and every pipeline must give transform.cmd"
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# A Kubernetes quantity (k8s.io/apimachinery resource.Quantity): a number and one suffix.
_K8S_QUANTITY = re.compile(
    r"^[+]?(\d+(\.\d*)?|\.\d+)((Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE][+-]?\d+)?$"
)
# Pachyderm's own examples write byte units Kubernetes does not know (e.g. "256MB").
_BYTE_UNITS = {"KB": "k", "kB": "k", "MB": "M", "GB": "G", "TB": "T",
               "KiB": "Ki", "MiB": "Mi", "GiB": "Gi", "TiB": "Ti"}  # fmt: skip


@frozen
class KubernetesSettings:
    """What ``tusk deploy kubernetes`` takes besides specs; the Helm chart's values mirror it
    (``image.repository:image.tag``, ``stores.secretName``, ``service.type``, ``resources``).
    """

    namespace: str = "default"
    tusk_image: str = DEFAULT_IMAGE
    stores_secret: str = "tusk-stores"
    # Worker pods reach the server with a pipelineWorker robot's token kept in this Secret
    # (key "token"); they hold no store credentials (docs/kubernetes.md).
    worker_secret: str = "tusk-worker-token"
    service_type: str = "ClusterIP"
    home_claim: str | None = None  # a PersistentVolumeClaim for the server's home; else emptyDir
    server_requests: Mapping[str, str] = field(
        default_factory=lambda: {"cpu": "250m", "memory": "512Mi"}
    )
    server_limits: Mapping[str, str] = field(default_factory=lambda: {"memory": "2Gi"})

    def check(self) -> None:
        """Raise InvalidArgument (one line) for a setting Kubernetes would refuse."""
        if not _DNS_LABEL.match(self.namespace):
            raise InvalidArgument(
                f"invalid namespace {self.namespace!r}: use lower-case letters, digits and '-' "
                "(at most 63, starting and ending with a letter or digit)"
            )
        if not self.tusk_image or any(c.isspace() for c in self.tusk_image):
            raise InvalidArgument(f"invalid image reference {self.tusk_image!r}")
        for what, name in (
            ("secret", self.stores_secret),
            ("secret", self.worker_secret),
            ("claim", self.home_claim),
        ):
            if name is not None and not _DNS_SUBDOMAIN.match(name):
                raise InvalidArgument(
                    f"invalid {what} name {name!r}: use lower-case letters, digits, '-' and '.'"
                )
        if self.service_type not in SERVICE_TYPES:
            raise InvalidArgument(
                f"invalid service type {self.service_type!r}; use one of "
                + ", ".join(SERVICE_TYPES)
            )
        for kind, values in (("request", self.server_requests), ("limit", self.server_limits)):
            for key, value in values.items():
                if not _K8S_QUANTITY.match(value):
                    raise InvalidArgument(f"server {kind} {key}={value!r} is not a quantity")


@dataclass
class Manifests:
    """The objects to apply, in the order to apply them, and warnings for the user."""

    objects: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


# Server


def _server_labels() -> dict[str, str]:
    return {NAME_LABEL: "tusk", COMPONENT_LABEL: "server"}


def _meta(name: str, settings: KubernetesSettings, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": labels}


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def store_env(secret: str) -> list[dict[str, Any]]:
    """The stores' URLs (and S3 keys, when the Secret has them) from the Secret."""
    return [
        _secret_env("TUSK_METADATA_URL", secret, "metadata_url"),
        _secret_env("TUSK_STORAGE_URL", secret, "storage_url"),
        # Optional: without them boto3 looks further (a role of the node or the pod).
        _secret_env("AWS_ACCESS_KEY_ID", secret, "aws_access_key_id", optional=True),
        _secret_env("AWS_SECRET_ACCESS_KEY", secret, "aws_secret_access_key", optional=True),
    ]


def server_objects(settings: KubernetesSettings) -> list[dict[str, Any]]:
    """ServiceAccount, Service and Deployment ``tusk``, in the order to apply them."""
    labels = {**_server_labels(), VERSION_LABEL: __version__}
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta("tusk", settings, labels),
        # Tusk never calls the Kubernetes API: no token in its pods.
        "automountServiceAccountToken": False,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("tusk", settings, labels),
        "spec": {
            "type": settings.service_type,
            "selector": _server_labels(),
            "ports": [
                {"name": "http", "port": API_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "s3", "port": S3_PORT, "targetPort": "s3", "protocol": "TCP"},
            ],
        },
    }
    home: dict[str, Any] = (
        {"name": "home", "persistentVolumeClaim": {"claimName": settings.home_claim}}
        if settings.home_claim
        else {"name": "home", "emptyDir": {}}
    )
    container = {
        "name": "server",
        "image": settings.tusk_image,
        "command": [
            "tusk",
            "up",
            "--host",
            "0.0.0.0",
            "--port",
            str(API_PORT),
            "--s3-port",
            str(S3_PORT),
            "--executor",
            "workers",
        ],
        "ports": [
            {"name": "http", "containerPort": API_PORT, "protocol": "TCP"},
            {"name": "s3", "containerPort": S3_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "TUSK_HOME", "value": HOME}, *store_env(settings.stores_secret)],
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "initialDelaySeconds": 30,  # the first open may migrate the metadata schema
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": dict(settings.server_requests),
            "limits": dict(settings.server_limits),
        },
        "volumeMounts": [{"name": "home", "mountPath": HOME}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("tusk", settings, labels),
        "spec": {
            "replicas": 1,
            # One scheduler at a time, and a claim that mounts on one node only.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _server_labels()},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "tusk",
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [home],
                },
            },
        },
    }
    return [account, service, deployment]


# Worker Jobs


def dns_label(name: str, prefix: str = "") -> str:
    """``prefix + name`` as a DNS-1123 label (at most 63 characters). A name that had to be
    changed (case, '_', '/', length) gets a hash of the original, so two never meet."""
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if base == name and _DNS_LABEL.match(prefix + base):
        return prefix + base
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    room = 63 - len(prefix) - len(digest) - 1
    base = base[:room].rstrip("-")
    return f"{prefix}{base}-{digest}" if base else f"{prefix}{digest}"


def job_name(pipeline: str) -> str:
    """The worker Job of a pipeline (``project/name`` outside the default project)."""
    return dns_label(pipeline, "tusk-worker-")


def _pipeline_label(pipeline: str) -> str:
    value = pipeline.replace("/", ".")
    return value if _LABEL_VALUE.match(value) else job_name(pipeline)[len("tusk-worker-") :]


def handoff_loop() -> str:
    """The user container's shell loop, from the worker's own module (one source for both)."""
    from tusk.pps.handoff import HANDOFF_LOOP

    return HANDOFF_LOOP


class _Problems:
    """The problems of one pipeline, raised as one line naming it and its file."""

    def __init__(self, spec: PipelineSpec, source: str) -> None:
        self.where = f"{source}: pipeline {spec.name}" if source else f"pipeline {spec.name}"
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def raise_any(self) -> None:
        if self.items:
            raise InvalidSpec(f"{self.where}: {'; '.join(self.items)}")


def _quantity(value: str) -> str:
    """A size as Kubernetes writes it (``256MB`` -> ``256M``); plain bytes if need be."""
    text = value.strip()
    if _K8S_QUANTITY.match(text):
        return text
    m = re.match(r"^(.*?)(KiB|MiB|GiB|TiB|KB|kB|MB|GB|TB)$", text)
    if m and _K8S_QUANTITY.match(m.group(1) + _BYTE_UNITS[m.group(2)]):
        return m.group(1) + _BYTE_UNITS[m.group(2)]
    return str(math.ceil(parse_quantity(text)))


def _cpu(cores: float) -> str:
    milli = max(1, round(cores * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _gpu_name(gpu_type: str, what: str, problems: _Problems) -> str:
    name = gpu_type or GPU_RESOURCE
    if "/" not in name or not _QUALIFIED_NAME.match(name):
        problems.add(
            f"{what}.gpu.type {gpu_type!r} is not a Kubernetes resource name; use the "
            f"device plugin's, e.g. {GPU_RESOURCE}"
        )
    return name


def _resources(
    requests: Resources | None, limits: Resources | None, prefix: str, problems: _Problems
) -> dict[str, dict[str, str]]:
    """A container's resources from a spec's ``<prefix>resource_requests``/``_limits``."""
    out: dict[str, dict[str, str]] = {}
    for key, res in (("requests", requests), ("limits", limits)):
        if res is None:
            continue
        values: dict[str, str] = {}
        if res.cpu is not None:
            values["cpu"] = _cpu(res.cpu)
        if res.memory is not None:
            values["memory"] = _quantity(res.memory)
        if res.disk is not None:
            values["ephemeral-storage"] = _quantity(res.disk)
        if values:
            out[key] = values
    for name in ("cpu", "memory", "ephemeral-storage"):
        low = out.get("requests", {}).get(name)
        high = out.get("limits", {}).get(name)
        if low is not None and high is not None and parse_quantity(low) > parse_quantity(high):
            problems.add(
                f"{prefix}resource_requests asks for more {name} ({low}) than "
                f"{prefix}resource_limits allows ({high}); Kubernetes refuses such a pod"
            )
    # A GPU is an extended resource: Kubernetes wants it in limits (requests, if given, equal).
    asked = requests.gpu if requests is not None and requests.gpu else None
    capped = limits.gpu if limits is not None and limits.gpu else None
    if (
        asked is not None
        and capped is not None
        and asked.number
        and capped.number
        and (asked.number, asked.type or GPU_RESOURCE)
        != (capped.number, capped.type or GPU_RESOURCE)
    ):
        problems.add(
            f"{prefix}resource_requests.gpu and {prefix}resource_limits.gpu differ; "
            "Kubernetes needs a GPU request equal to its limit"
        )
    gpu = capped if capped is not None and capped.number else asked
    if gpu is not None and gpu.number:
        where = f"{prefix}resource_{'limits' if gpu is capped else 'requests'}"
        name = _gpu_name(gpu.type, where, problems)
        out.setdefault("limits", {})[name] = str(gpu.number)
        if asked is not None and asked.number:
            out.setdefault("requests", {})[name] = str(gpu.number)
    return out


def _security_context(user: str | None, spec: PipelineSpec, warnings: list[str]) -> Any:
    if not user:
        return None
    m = re.match(r"^(\d+)(?::(\d+))?$", user.strip())
    if m is None:
        warnings.append(
            f"pipeline {spec.name}: transform.user {user!r} is not numeric; Kubernetes runs "
            "the image's own user (give a UID, or UID:GID, to choose)"
        )
        return None
    context: dict[str, int] = {"runAsUser": int(m.group(1))}
    if m.group(2) is not None:
        context["runAsGroup"] = int(m.group(2))
    return context


def _scheduling(spec: PipelineSpec, problems: _Problems) -> dict[str, Any]:
    """Pod fields from ``scheduling_spec`` and ``tolerations`` (Pachyderm's names or the
    Kubernetes ones)."""
    out: dict[str, Any] = {}
    for key, value in (spec.scheduling_spec or {}).items():
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
        if (
            snake == "node_selector"
            and isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            out["nodeSelector"] = dict(value)
        elif snake == "priority_class_name" and isinstance(value, str):
            out["priorityClassName"] = value
        elif snake in ("node_selector", "priority_class_name"):
            problems.add(
                f"scheduling_spec.{key}: give a mapping of strings (node_selector) "
                "or a string (priority_class_name)"
            )
        else:
            problems.add(
                f"scheduling_spec.{key}: unknown; use node_selector or priority_class_name"
            )
    operators = {"EXISTS": "Exists", "EQUAL": "Equal", "Exists": "Exists", "Equal": "Equal"}
    effects = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule",
               "NO_EXECUTE": "NoExecute", "NoSchedule": "NoSchedule",
               "PreferNoSchedule": "PreferNoSchedule", "NoExecute": "NoExecute"}  # fmt: skip
    tolerations: list[dict[str, Any]] = []
    for i, raw in enumerate(spec.tolerations or []):
        where = f"tolerations[{i}]"
        item: dict[str, Any] = {}
        for key, value in raw.items():
            snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
            if snake in ("key", "value") and isinstance(value, str):
                item[snake] = value
            elif snake == "operator" and value in (*operators, "EMPTY", ""):
                if operators.get(value):
                    item["operator"] = operators[value]
            elif snake == "effect" and value in (*effects, "ALL_EFFECTS", ""):
                if effects.get(value):
                    item["effect"] = effects[value]
            elif snake == "toleration_seconds" and isinstance(value, int | str):
                try:
                    item["tolerationSeconds"] = int(value)
                except ValueError:
                    problems.add(f"{where}.{key}: {value!r} is not a number of seconds")
            else:
                problems.add(f"{where}.{key}: {value!r} is not a toleration's {snake}")
        tolerations.append(item)
    if tolerations:
        out["tolerations"] = tolerations
    return out


def _json_field(text: str, what: str, problems: _Problems) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(f"{what}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})")
        return None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (Pachyderm's ``pod_spec``): null removes a key. This is the
    RFC's own ten-line algorithm (its section 2); the jsonpatch library does RFC 6902 only."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON Patch (Pachyderm's ``pod_patch``) on a copy of ``doc``, applied by the
    ``jsonpatch`` library; ValueError says what cannot apply."""
    import jsonpatch
    import jsonpointer

    if not isinstance(operations, list):
        raise ValueError("give a list of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(doc)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise ValueError(str(exc)) from None
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"an operation does not apply ({type(exc).__name__}: {exc})") from None


def worker_job(
    spec: PipelineSpec,
    settings: KubernetesSettings,
    source: str = "",
    warnings: list[str] | None = None,
    image: ResolvedImage | None = None,
    require_cmd: bool = True,
) -> dict[str, Any]:
    """The Job whose pods run ``spec``'s datums; InvalidSpec (naming the pipeline and
    ``source``) when Kubernetes could not run it as written.

    ``image``: ``transform.image`` resolved (the Job names it by digest; without
    ``transform.cmd`` the loop runs its Entrypoint + Cmd); None: named as written, and
    ``transform.cmd`` is needed unless ``require_cmd`` is False (a check before resolving).
    """
    warnings = warnings if warnings is not None else []
    problems = _Problems(spec, source)
    t = spec.transform
    if spec.uses_s3():
        problems.add(
            "it reads or writes through the S3 gateway (input.pfs.s3 or s3_out), which worker "
            "pods do not serve yet; run this pipeline under tusk up, or read its inputs from /pfs"
        )
    if not t.image:
        problems.add(
            "transform.image is not set; on Kubernetes a pipeline's datums run in its image, "
            "so add image: <reference> (e.g. python:3.12-slim)"
        )
    image_name = ""
    if t.image:
        try:
            image_name = image.image if image is not None else cluster_image(t.image)
        except TuskError as exc:
            problems.add(exc.message)
    default: list[str] = []  # the command the loop runs when the worker hands none
    if not t.cmd and image is not None:
        # Kubernetes expands $(VAR) in a command and turns $$ into $; Docker does neither.
        default = [arg.replace("$", "$$") for arg in image.command]
        if not default:
            problems.add(
                f"transform.cmd is not set and image {t.image} has no Entrypoint or Cmd; "
                "give transform.cmd"
            )
    elif not t.cmd and require_cmd:
        problems.add(
            "transform.cmd is not set; without image resolution (--no-resolve-images) the "
            "image's Entrypoint is not read, so give the command"
        )
    name = job_name(spec.name)
    labels = {
        NAME_LABEL: "tusk",
        COMPONENT_LABEL: "worker",
        PIPELINE_LABEL: _pipeline_label(spec.name),
    }
    pod_labels = dict(spec.metadata.labels)
    for key, value in pod_labels.items():
        if not _QUALIFIED_NAME.match(key) or not _LABEL_VALUE.match(value):
            problems.add(f"metadata.labels: {key}={value!r} is not a valid Kubernetes label")
        elif key in labels and labels[key] != value:
            problems.add(f"metadata.labels.{key} is set by tusk deploy; remove it")
    for key in spec.metadata.annotations:
        if not _QUALIFIED_NAME.match(key):
            problems.add(f"metadata.annotations: {key!r} is not a valid annotation key")
    pod_labels.update(labels)

    secret_names = [s.name for s in t.secrets] + list(t.image_pull_secrets)
    for secret in dict.fromkeys(secret_names):
        if not _DNS_SUBDOMAIN.match(secret):
            problems.add(
                f"secret {secret!r} cannot be a Kubernetes Secret's name (lower-case letters, "
                "digits, '-' and '.'); rename it"
            )
    env = [{"name": k, "value": v} for k, v in t.env.items()]
    mounts: list[dict[str, Any]] = [
        {"name": "pfs", "mountPath": "/pfs"},
        {"name": "tusk", "mountPath": "/tusk"},
    ]
    pfs_volume: dict[str, Any] = {"medium": "Memory"} if t.memory_volume else {}
    volumes: list[dict[str, Any]] = [
        {"name": "pfs", "emptyDir": pfs_volume},
        {"name": "tusk", "emptyDir": {}},
        {"name": "tusk-bin", "emptyDir": {}},
    ]
    secret_volumes: dict[str, str] = {}
    for mount in t.secrets:
        if mount.env_var:
            env.append(_secret_env(mount.env_var, mount.name, mount.key))
            continue
        if mount.name not in secret_volumes:
            secret_volumes[mount.name] = dns_label(mount.name, "secret-")
            volumes.append(
                {"name": secret_volumes[mount.name], "secret": {"secretName": mount.name}}
            )
        mounts.append(
            {"name": secret_volumes[mount.name], "mountPath": mount.mount_path, "readOnly": True}
        )

    worker: dict[str, Any] = {
        "name": "worker",
        "image": settings.tusk_image,
        # --once: exit when the pipeline has no job left, so the Job completes.
        "command": ["tusk", "worker", "--pipeline", spec.name, "--handoff", "/tusk", "--once"],
        # Through the server's API only (tusk.pps.remote_worker): its Service, and a token.
        "env": [
            {"name": "TUSK_ADDRESS", "value": f"http://tusk.{settings.namespace}.svc:{API_PORT}"},
            _secret_env("TUSK_TOKEN", settings.worker_secret, "token"),
        ],
        "volumeMounts": [
            {"name": "pfs", "mountPath": "/pfs"},
            {"name": "tusk", "mountPath": "/tusk"},
        ],
    }
    # Pachyderm's sidecar (its storage container) is what the worker container is here.
    sidecar = _resources(
        spec.sidecar_resource_requests, spec.sidecar_resource_limits, "sidecar_", problems
    )
    if sidecar:
        worker["resources"] = sidecar
    # Pachyderm's init container copies its worker binary into the user container; here a
    # static busybox, so an image without a shell (distroless, FROM scratch) runs too.
    init = {
        "name": "tusk-init",
        "image": settings.tusk_image,
        "command": [TUSK_BUSYBOX, "cp", TUSK_BUSYBOX, BUSYBOX],
        "volumeMounts": [{"name": "tusk-bin", "mountPath": BUSYBOX_DIR}],
    }
    user: dict[str, Any] = {
        "name": "user",
        "image": image_name,
        # $0 names the busybox the loop runs its tools through; then the default command.
        "command": [BUSYBOX, "sh", "-c", handoff_loop(), BUSYBOX, *default],
    }
    if env:
        user["env"] = env
    user["volumeMounts"] = [
        *mounts,
        {"name": "tusk-bin", "mountPath": BUSYBOX_DIR, "readOnly": True},
    ]
    resources = _resources(spec.resource_requests, spec.resource_limits, "", problems)
    if resources:
        user["resources"] = resources
    context = _security_context(t.user, spec, warnings)
    if context is not None:
        user["securityContext"] = context

    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": "tusk",
        "automountServiceAccountToken": False,
        "initContainers": [init],
        "containers": [worker, user],
        "volumes": volumes,
    }
    if t.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in t.image_pull_secrets]
    pod.update(_scheduling(spec, problems))
    if spec.pod_spec:
        patch = _json_field(spec.pod_spec, "pod_spec", problems)
        if patch is not None and not isinstance(patch, dict):
            problems.add("pod_spec: give a JSON object to merge into the pod spec")
        elif patch is not None:
            pod = merge_patch(pod, patch)
    if spec.pod_patch:
        operations = _json_field(spec.pod_patch, "pod_patch", problems)
        if operations is not None:
            try:
                pod = json_patch(pod, operations)
            except ValueError as exc:
                problems.add(f"pod_patch: {exc}")
    problems.raise_any()

    template_meta: dict[str, Any] = {"labels": pod_labels}
    if spec.metadata.annotations:
        template_meta["annotations"] = dict(spec.metadata.annotations)
    job_spec: dict[str, Any] = {
        "parallelism": spec.parallelism_spec.constant,
        # A worker pod fails only when the worker itself does: a datum's own failures are
        # retried by the worker, datum_tries times, and fail the Tusk job, not the pod.
        "backoffLimit": spec.datum_tries,
    }
    if spec.job_timeout is not None:
        job_spec["activeDeadlineSeconds"] = max(1, math.ceil(spec.job_timeout))
    job_spec["template"] = {"metadata": template_meta, "spec": pod}
    annotations = {
        PIPELINE_ANNOTATION: spec.name,
        HASH_ANNOTATION: spec_hash(spec),
        VERSION_ANNOTATION: __version__,
    }
    if image is not None:
        annotations[IMAGE_ANNOTATION] = image.reference
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def kubernetes_manifests(
    specs: Iterable[tuple[PipelineSpec, str]],
    settings: KubernetesSettings,
    resolver: ImageResolver | None = None,
) -> Manifests:
    """The server's objects, then a worker Job for each (spec, source); every pipeline's
    problems raised together (InvalidSpec, one line) before anything is returned.

    With a ``resolver`` each image is then resolved (after the specs are found sound, so no
    registry is asked about a spec that is refused anyway) and the Jobs name them by digest;
    the first image that fails raises its error, prefixed with the pipeline and its file.
    Without one, images are named as written and a warning says so.
    """
    settings.check()
    out = Manifests(server_objects(settings))
    problems: list[str] = []
    names: dict[str, str] = {}
    checked: list[tuple[PipelineSpec, str, dict[str, Any]]] = []
    for spec, source in specs:
        try:
            job = worker_job(spec, settings, source, out.warnings, require_cmd=resolver is None)
        except InvalidSpec as exc:
            problems.append(exc.message)
            continue
        name = job["metadata"]["name"]
        if name in names:
            problems.append(f"pipelines {names[name]} and {spec.name} both make Job {name}")
            continue
        names[name] = spec.name
        checked.append((spec, source, job))
    if len(problems) == 1:
        raise InvalidSpec(problems[0])
    if problems:
        listed = " | ".join(f"[{i}] {p}" for i, p in enumerate(problems, 1))
        raise InvalidSpec(f"{len(problems)} problems: {listed}")
    if resolver is None:
        out.objects.extend(job for _, _, job in checked)
        if checked:
            out.warnings.append(NOT_RESOLVED)
        return out
    for spec, source, _ in checked:
        where = f"{source}: pipeline {spec.name}" if source else f"pipeline {spec.name}"
        try:
            image = resolver.resolve(spec.transform.image or "", not spec.transform.cmd)
        except TuskError as exc:  # the same class (its exit code), naming the pipeline
            raise type(exc)(f"{where}: {exc.message}") from None
        out.objects.append(worker_job(spec, settings, source, [], image))
    return out


# Output


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors; a multi-line string (the handoff loop) as a literal block."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Mapping[str, Any]) -> str:
    """One object as a YAML document (keys in the order built)."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def to_yaml_stream(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as one multi-document YAML stream, as ``kubectl apply -f -`` reads."""
    return "".join(f"---\n{to_yaml(obj)}" for obj in objects)


def file_names(objects: list[dict[str, Any]]) -> list[str]:
    """``NN-kind-name.yaml`` for each object; the number keeps ``kubectl apply -f DIR``
    in the order of the list (a ServiceAccount before the pods that use it)."""
    return [
        f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        for i, obj in enumerate(objects)
    ]


def write_manifests(objects: list[dict[str, Any]], folder: Path) -> list[Path]:
    """One file per object into ``folder`` (made if missing); the paths written."""
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{str(folder)!r} is a file; give a folder (or - for stdout)")
    texts = [to_yaml(obj) for obj in objects]  # all rendered before the first write
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in zip(file_names(objects), texts, strict=True):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
