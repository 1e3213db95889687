"""Storage: object backends, content-defined chunks in packs, and the metadata store.

This layer knows bytes, digests and rows; it knows nothing of repos' semantics.
"""
