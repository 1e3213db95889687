"""``next datum``: the call of a ``datum_batching`` pipeline's code (``pachctl next datum``)."""

from __future__ import annotations

import click


@click.command("datum")
@click.option(
    "--error",
    default="",
    metavar="MESSAGE",
    help="The datum just processed failed, with this message (retried like any datum).",
)
def next_datum(error: str) -> None:
    """Finish the current datum and wait for the next one (datum batching).

    Run in a loop by the code of a pipeline with transform.datum_batching: true: each call
    returns once the next datum's inputs are at /pfs/<input> and its output folder at
    /pfs/out; after the last datum, Tusk stops the code while it waits. From Python,
    tusk.sdk.batching.next_datum() does the same without starting a process.
    """
    from tusk.sdk.batching import next_datum as call

    call(error)
