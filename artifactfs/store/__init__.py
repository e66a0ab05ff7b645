"""Object stores: where the bytes live (S3-compatible servers or a local folder)."""

from artifactfs.store.base import ListPage, ObjectInfo, ObjectStore, ObjectVersion, list_all

__all__ = ["ListPage", "ObjectInfo", "ObjectStore", "ObjectVersion", "list_all"]
