"""Helpers for tests and benchmarks only: tiny random-weight models, the ffmpeg CLI as an
independent meter and decoder. Nothing in the pipeline imports this package."""
