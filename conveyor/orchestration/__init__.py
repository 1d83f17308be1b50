"""Running pipelines: the local runner, cache keys, step logs, garbage collection."""
