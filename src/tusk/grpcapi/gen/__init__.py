"""Tusk's .proto files and protoc's output from them (*_pb2.py: ./dev.sh protos; do not edit)."""
