"""avgen's HTTP API (FastAPI): ``/v1/…`` and the signed media URLs in one ASGI app.

Import :func:`avgen_dagster.api.app.create_api_app` for the app; this package's ``__init__``
stays free of FastAPI so that :mod:`avgen_dagster.api.links` can be used from Dagster runs.
"""
