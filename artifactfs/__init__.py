"""artifactfs: StudioML artifacts in S3/MinIO as a read-only FUSE filesystem."""

__version__ = "0.1.0"
