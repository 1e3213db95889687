"""Deployment artefacts: Kubernetes manifests for a Tusk server and the worker Jobs of
pipelines (:mod:`tusk.deploy.kubernetes`, ``tusk deploy kubernetes``).

An edge like the REST API, but one that serves nothing: it reads pipeline specs with
:mod:`tusk.pps.spec` and writes text. It opens no store and talks to no Tusk server, so it
needs neither a home nor a client; only the CLI imports it (import-linter checks both). The
one thing it asks the outside is the registries of the pipelines' images, for their digests
and Entrypoints (:mod:`tusk.deploy.resolve`, with skopeo; ``--no-resolve-images`` skips it).
"""
