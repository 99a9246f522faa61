"""Pure media code (no Dagster import): audio I/O, loudness, encoding, stitching, HLS, probing."""
