"""The store: catalog (SQLAlchemy), object backends (folder or S3), packs and GC.

Knows repositories, files, objects and where their frames lie; knows nothing of codecs.
"""
from .backends import LocalBackend, ObjectBackend, ObjectMissing, S3Backend
from .config import Settings
from .db import Catalog
from .vault import Vault

__all__ = ["Catalog", "LocalBackend", "ObjectBackend", "ObjectMissing", "S3Backend", "Settings", "Vault"]
