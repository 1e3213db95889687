"""Routes of remote workers (``tusk worker --address URL``): claim datums, renew their
lease, finish each with its outcome and output. The server keeps every datum semantic
(``tusk.pps.workqueue``); the rule (``pipeline.work``: clusterAdmin or pipelineWorker) is in
``tusk.auth.permissions``. A claim's answer holds the values of the secrets the pipeline names.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute

from tusk.api import bodies
from tusk.api.docs import operation_id
from tusk.api.pfs_routes import TAR, ok
from tusk.api.streams import tar_items, with_body
from tusk.api.wire import API_PREFIX, name_param
from tusk.auth.service import AuthService
from tusk.pps.service import PpsService
from tusk.pps.workqueue import WorkQueue

_FINISH = re.compile(rf"^{API_PREFIX}/pipelines/.+/jobs/[^/]+/datums/[^/]+/finish$")


def is_output_upload(method: str, path: str) -> bool:
    """A finish's body is a datum's whole output: no body limit, as for file uploads."""
    return method == "POST" and _FINISH.match(path) is not None


def worker_router(pps: PpsService, auth: AuthService, route_class: type[APIRoute]) -> APIRouter:
    queue = WorkQueue(pps, auth)
    r = APIRouter(
        prefix=API_PREFIX,
        tags=["workers"],
        generate_unique_id_function=operation_id,
        route_class=route_class,
    )

    @r.post("/pipelines/{name}/datums/claim")
    def claim_datums(name: str, body: bodies.DatumClaim) -> Response:
        """Claim datums of the pipeline's oldest running job under a lease: each with its
        input files and its task (command, env, secrets' values, timeout). No datum when
        there is none to run; ``busy`` is false once the pipeline has no job left."""
        return ok(queue.claim(name_param(name), body.worker, body.limit))

    @r.post("/pipelines/{name}/jobs/{job}/renew")
    def renew_lease(name: str, job: str, body: bodies.LeaseRenew) -> Response:
        """Extend a lease (a worker's heartbeat); 409 once it is lost: stop those datums."""
        return ok(queue.renew(name_param(name), job, body.lease, body.datums))

    @r.post("/pipelines/{name}/jobs/{job}/datums/{datum}/finish", openapi_extra=TAR)
    async def finish_datum(
        request: Request,
        name: str,
        job: str,
        datum: str,
        lease: Annotated[str, Query(description="The lease that holds the datum.")],
    ) -> Response:
        """A datum's end: a tar stream of ``outcome.json`` then ``out/<path>`` for each file
        it wrote; stored and recorded as the server's own workers do. 409 when the lease does
        not hold the datum (expired, restarted, another worker's)."""
        pipeline = name_param(name)
        result = await with_body(
            request,
            lambda stream: queue.finish(pipeline, job, datum, lease, tar_items(stream, ())),
        )
        return result if isinstance(result, Response) else ok(result)

    return r
