"""Thin Dagster assets: read inputs, call media/ or a backend, write files, return a manifest."""
