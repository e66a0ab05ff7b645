"""Caches: the persistent block cache on disk and short-lived metadata caches."""
