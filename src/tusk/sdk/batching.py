"""``tusk next datum`` from the code of a ``datum_batching`` pipeline (``tusk.pps.batching``).

Python code calls :func:`next_datum` in-process (a Unix-socket round trip, no process start);
shell code runs ``tusk next datum``. Nothing heavy is imported here: the CLI command stays as
quick as ``tusk --help``.
"""

from __future__ import annotations

import json
import os
import socket

from tusk.errors import InvalidArgument, Unavailable

SOCKET_ENV = "TUSK_NEXT_DATUM"


def next_datum(error: str = "") -> dict[str, str]:
    """Say the current datum is done (failed, with ``error``) and wait for the next one; its
    inputs are then at ``/pfs/<input>`` (``$TUSK_PFS``) and its output folder at ``/pfs/out``.

    Returns the next datum's environment (``PACH_DATUM_ID``, ``<input>``, ...). After the last
    datum the call does not return: Tusk stops the process while it waits.
    """
    path = os.environ.get(SOCKET_ENV)
    if not path:
        raise InvalidArgument(
            "tusk next datum works only in the code of a pipeline with "
            "transform.datum_batching: true (TUSK_NEXT_DATUM is not set)"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            s.sendall(json.dumps({"error": error}).encode() + b"\n")
            answer = s.makefile("rb").readline()
        except OSError as exc:
            raise Unavailable(f"the worker at {path} does not answer ({exc})") from None
    if not answer:
        raise Unavailable("the worker ended the batch")
    data = json.loads(answer)
    env = data.get("env") or {}
    os.environ.update(env)  # PACH_DATUM_ID and the inputs' paths of the datum now current
    return {str(k): str(v) for k, v in env.items()}
