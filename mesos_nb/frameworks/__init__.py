"""Frameworks on mesos-nb: Dask (``dask.MesosCluster``), Spark (``spark``), ipyparallel
launchers (``ipyparallel``), all on the shared ``launcher.TaskPool``. See README.md.

Nothing here imports distributed, pyspark or ipyparallel until its module is imported.
"""
