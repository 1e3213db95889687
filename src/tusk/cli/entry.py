"""The ``tusk`` command's entry point: Python's cyclic collector is paused before the CLI
loads (click, the command table), not only once ``main()`` runs: ~20 collections, a few
milliseconds of every command (see tusk.gcpause). A program importing ``tusk.cli.main``
runs ``main()`` without this, as before."""

from __future__ import annotations


def main() -> None:
    from tusk.gcpause import pause_start_up

    pause_start_up()
    from tusk.cli.main import main as run

    run()
