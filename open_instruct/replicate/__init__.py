"""``python -m open_instruct.replicate ...``: the old name of ``python -m replication ...`` (the replication harness,
its own top-level package), kept so that recorded commands keep working."""
