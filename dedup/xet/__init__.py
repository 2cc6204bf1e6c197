"""The Xet CAS protocol's data formats, as clients send them: hashes, xorbs, shards, and the staging of both.

Public specification: huggingface/xet-core ``spec/`` (hashing.md, xorb.md,
shard.md, upload_protocol.md). Everything here parses hostile client input:
sizes are bounded before anything is allocated, and every hash a client
states is recomputed. Xorbs are staging, never storage: a committed file is
rebuilt from them and stored like any other upload (see ``staging``).
"""
