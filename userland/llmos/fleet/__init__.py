"""A fleet of appliances on existing engines (docs/fleet.md).

Batch work runs on Dask distributed, *off* the appliances: each Dask worker stands for one
appliance and calls its inference API with an API key (``worker``); a job (``job``) is
partitioned by Dask and its partitions go to workers whose appliance serves the model,
as Dask ``resources=`` say (``runner``). Online traffic goes through HAProxy (``haproxy``).

Only ``worker`` and ``runner`` import Dask; the appliance never imports this package.
"""
