"""Asset outputs kept per request, not per partition.

Dagster's file-system IO manager keeps one output per asset and partition
(``storage/<asset>/<user_id>``): two runs of one user — overlapping ``avgen generate``s, a
retry, a re-execution from the UI — would read and overwrite each other's manifests. This IO
manager is Dagster's own pickling ``UPathIOManager`` with one change: the path of a partition's
output is ``<content root>/<user_id>/<request_id>/.outputs/<asset>``, the request read from the
run's tags (:func:`~avgen_dagster.runs.request_id_of_run`). So a run only ever reads and writes
its own request's outputs; they live beside that request's files (on the local folder or the
object store), are never served (hidden), and are erased with the request's folder.

Why not a second partition dimension (``user_id`` × ``request_id``)? The catalog stays one
partition per user (the portal and the UI read a user's history in one query), and the number
of partitions grows with users, not with every request ever made — see the README.

An input marked ``AssetIn(metadata={"allow_missing_partitions": True})`` (Dagster's own flag)
loads as None when this request has no such output (``content_record`` in the talking-head job,
where images and music are not made).
"""

from __future__ import annotations

import pickle
import uuid
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from avgen_dagster.outputs import ASSET_OUTPUTS_DIR
from avgen_dagster.runs import request_id_of_run
from avgen_dagster.settings import get_settings
from avgen_dagster.validation import validate_user_id


class _RequestPickleIOManager(dg.UPathIOManager):
    extension = ".pickle"

    def get_path_for_partition(
        self, context: dg.InputContext | dg.OutputContext, path: UPath, partition: str
    ) -> UPath:
        step = context.step_context
        request_id = request_id_of_run(step.instance, step.dagster_run)
        asset = context.asset_key.to_python_identifier()
        return (
            self._base_path / validate_user_id(partition) / request_id / ASSET_OUTPUTS_DIR / asset
        )

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        if path.protocol in ("", "file", "local"):
            # Temporary name, then rename: a crash never leaves half an output to load.
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
            tmp.write_bytes(data)
            tmp.rename(path)
        else:
            path.write_bytes(data)  # one PUT: an object appears whole

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        return pickle.loads(path.read_bytes())


class RequestOutputsIOManager(dg.ConfigurableIOManagerFactory):
    """Pickled asset outputs under ``<root>/<user_id>/<request_id>/.outputs/<asset>.pickle``.

    ``root`` is the content root (a folder, or an object-store URL such as
    ``s3://bucket/prefix`` with the standard AWS environment for credentials).
    """

    root: str = Field(
        default_factory=lambda: get_settings().content_location,
        description="Content root (AVGEN_CONTENT_URL, else AVGEN_CONTENT_DIR).",
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.UPathIOManager:
        """The IO manager for one run."""
        return _RequestPickleIOManager(base_path=UPath(self.root))
