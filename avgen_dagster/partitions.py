"""Partitions: every avgen asset is partitioned by the user it was made for."""

import dagster as dg

user_partitions = dg.DynamicPartitionsDefinition(name="user_id")
