"""Pachyderm's gRPC API, served by ``tusk up --grpc-port`` for pachyderm-sdk and pachctl.

The messages are Tusk's own definitions of the part of Pachyderm 2.12's protocol it serves
(``gen/*.proto``, compiled beside them with grpcio-tools: ``./dev.sh protos``); every RPC passes
the same permission check as the other edges (:mod:`tusk.auth`), as ``grpc.<service>/<rpc>``.
"""
