"""``tusk deploy kubernetes``: manifests for a Tusk server and its pipelines' worker Jobs.

Offline: nothing is read from a home or a server, so the command needs neither. The work is
:mod:`tusk.deploy` (imported when the command runs, so ``--help`` stays quick).
"""

from __future__ import annotations

from pathlib import Path

import click

from tusk.cli.core import CliError, State


@click.group("deploy")
def deploy() -> None:
    """Write Kubernetes manifests: the server and pipeline workers."""


@deploy.command("kubernetes")
@click.option(
    "-f",
    "--file",
    "paths",
    multiple=True,
    metavar="SPECS",
    help="A pipeline spec file or a folder of them (*.yaml, *.yml, *.json; - for stdin): "
    "each pipeline gets a worker Job. Repeat for more; none: the server alone.",
)
@click.option(
    "--namespace",
    default="default",
    show_default=True,
    metavar="NS",
    help="The namespace of every object (it must exist).",
)
@click.option(
    "--tusk-image",
    default=None,
    metavar="IMAGE",
    help="Tusk's image, for the server and the worker and init containers "
    "(default: ghcr.io/tusk-data/tusk:<this version>).",
)
@click.option(
    "--secret",
    "stores_secret",
    default="tusk-stores",
    show_default=True,
    metavar="NAME",
    help="The Secret holding metadata_url and storage_url (optional: aws_access_key_id, "
    "aws_secret_access_key); it is named, never written.",
)
@click.option(
    "--worker-secret",
    default="tusk-worker-token",
    show_default=True,
    metavar="NAME",
    help="The Secret whose key 'token' is a pipelineWorker robot's token: worker pods reach "
    "the server's API with it and hold no store credentials.",
)
@click.option(
    "--service-type",
    type=click.Choice(["ClusterIP", "NodePort", "LoadBalancer"]),
    default="ClusterIP",
    show_default=True,
    help="How the server's Service is reached.",
)
@click.option(
    "--home-claim",
    default=None,
    metavar="PVC",
    help="Keep the server's home on this PersistentVolumeClaim (default: an emptyDir).",
)
@click.option(
    "--no-resolve-images",
    "no_resolve",
    is_flag=True,
    help="Do not ask registries about images (offline): Jobs name them as written, by tag, "
    "and every pipeline must give transform.cmd.",
)
@click.option(
    "--authfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="A Docker config.json with credentials for the registries of the images "
    "(default: skopeo's, e.g. ~/.docker/config.json).",
)
@click.option(
    "--output",
    default="-",
    show_default=True,
    metavar="DIR|-",
    help="A folder to write one file per object into, or - for one YAML stream on stdout.",
)
@click.pass_context
def kubernetes(
    ctx: click.Context,
    paths: tuple[str, ...],
    namespace: str,
    tusk_image: str | None,
    stores_secret: str,
    worker_secret: str,
    service_type: str,
    home_claim: str | None,
    no_resolve: bool,
    authfile: Path | None,
    output: str,
) -> None:
    """Write Kubernetes manifests: the Tusk server and a worker Job per pipeline.

    The server is a Deployment running tusk up --executor workers, with its Service (API on
    7800, S3 gateway on 30600) and ServiceAccount. Each pipeline of the specs gets a Job
    whose pods run its datums in the spec's image, next to a tusk worker container that
    reaches the server's API with a token (--worker-secret). The stores' URLs come from a
    Secret (--secret) that you create first. Nothing is sent to a cluster: apply the output
    with kubectl apply -f (see docs/kubernetes.md).

    Each image is resolved with skopeo (manifests only, no layer): the Job names it by digest,
    and a pipeline without transform.cmd runs the image's Entrypoint and Cmd. Images in a local
    layout or archive (oci:, docker-archive:) are refused: push them to a registry first.
    """
    from tusk.deploy.kubernetes import (
        DEFAULT_IMAGE,
        KubernetesSettings,
        kubernetes_manifests,
        to_yaml_stream,
        write_manifests,
    )
    from tusk.deploy.resolve import ImageResolver
    from tusk.deploy.specs import read_pipeline_specs
    from tusk.sdk.projects import current_project

    state = ctx.find_root().ensure_object(State)
    settings = KubernetesSettings(
        namespace=namespace,
        tusk_image=tusk_image or DEFAULT_IMAGE,
        stores_secret=stores_secret,
        worker_secret=worker_secret,
        service_type=service_type,
        home_claim=home_claim,
    )
    settings.check()
    if no_resolve and authfile is not None:
        raise CliError("--authfile is for resolving images: drop --no-resolve-images", 2)
    resolver = None if no_resolve else ImageResolver(authfile)
    specs = read_pipeline_specs(paths, current_project(state.project)) if paths else []
    manifests = kubernetes_manifests(((s.spec, s.source) for s in specs), settings, resolver)
    for warning in manifests.warnings:
        click.echo(f"warning: {warning}", err=True)
    if output == "-":
        click.echo(to_yaml_stream(manifests.objects), nl=False)
        return
    written = write_manifests(manifests.objects, Path(output))
    click.echo(
        f"wrote {len(written)} manifests to {output}; create the Secrets {stores_secret} and "
        f"{worker_secret} in namespace {namespace} first (docs/kubernetes.md), then: "
        f"kubectl apply -f {output}",
        err=True,
    )
