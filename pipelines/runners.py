"""Where the Beam TFRecord build runs: this machine's processes, or a Dask cluster.

The build is one Beam pipeline (`build._run_pipeline`); the runner is a matter of options. The
DirectRunner uses local processes. Beam's DaskRunner (not registered by a short name in Beam
2.77) sends the same transforms to a `distributed` scheduler: a cluster's, or a LocalCluster of
worker processes talking over TCP on loopback that this module starts and stops. Workers must
import this package and read the photos and the output folder at the same paths (shared storage
on a real cluster).
"""

import contextlib
import logging
from typing import Iterator, List, Optional

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNERS = ("direct", "dask")


@contextlib.contextmanager
def beam_args(runner: str, workers: int, scheduler: Optional[str] = None) -> Iterator[List[str]]:
    """The Beam options for `runner`; for "dask" without `scheduler`, a LocalCluster of `workers`
    single-threaded worker processes lives for the duration of the block."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}; received {runner!r}.")
    if runner == "direct":
        yield []
        return
    try:
        import distributed
    except ImportError as error:
        raise ImportError("The Dask runner needs `dask` and `distributed`: pip install 'keras-alage[data]'.") from error
    if scheduler:
        yield [f"--runner={DASK_RUNNER}", f"--dask_client_address={scheduler}"]
        return
    with distributed.LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        yield [f"--runner={DASK_RUNNER}", f"--dask_client_address={cluster.scheduler_address}"]
