"""Running one function over many items in worker processes, results in order (fingerprinting, preprocessing);
the cores this process may use, and torch's threads on a machine other processes keep busy."""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # the user chose the threads: they are left alone
NUM_THREADS_ENV = "SALSEG_NUM_THREADS"  # salseg's own: fixes a prediction's thread count (salseg.infer.threads)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, e.g. a Slurm or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_for_load(cores: int, threads: int, load: float) -> int:
    """torch's intra-op threads when other processes keep ``load`` (the 1-minute load average) of ``cores`` busy:
    the cores they leave free, at least 1 and at most ``threads``. On oversubscribed cores the threads of one
    parallel region wait on each other: on 2 cores beside 3 busy processes a training step of the quickstart's
    network took 3.5 s on 1 thread and 3.9 to 15.5 s on 2."""
    if load < 1.0:
        return threads
    return max(1, min(threads, cores - int(load)))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside the block (None: unchanged), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def threads_for_busy_machine(what: str = "this run"):
    """Within the block, torch uses :func:`threads_for_load` threads (said in one line when fewer than before);
    the previous count is restored after. Nothing changes when the user chose the threads ($OMP_NUM_THREADS,
    $MKL_NUM_THREADS or $SALSEG_NUM_THREADS)."""
    import torch

    before = torch.get_num_threads()
    if any(os.environ.get(k) for k in (*THREAD_ENV, NUM_THREADS_ENV)) or not hasattr(os, "getloadavg"):
        yield before
        return
    load, cores = os.getloadavg()[0], available_cores()
    threads = threads_for_load(cores, before, load)
    if threads < before:
        log.info("busy machine (load average %.1f on %d cores): torch uses %d thread(s) instead of %d for %s "
                 "(set OMP_NUM_THREADS to choose)", load, cores, threads, before, what)
    with torch_threads(threads):
        yield threads


def map_parallel(fn: Callable, items: Sequence, *, num_workers: int = 1, progress: Progress | None = None,
                 description: str = "working") -> list:
    """``[fn(item) for item in items]``, over ``num_workers`` processes (1 = in this process), results in order.

    One progress callback per finished item. On an error or Ctrl-C, pending items are cancelled and the first
    error is raised once running ones have stopped (their atomic writes leave no partial file).
    """
    items = list(items)
    total = len(items)
    results: list = [None] * total
    if progress:
        progress(description, 0, total)
    if num_workers <= 1 or total <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if progress:
                progress(description, i + 1, total)
        return results
    ex = ProcessPoolExecutor(max_workers=min(int(num_workers), total))
    try:
        futures = {ex.submit(fn, item): i for i, item in enumerate(items)}
        for done, fut in enumerate(as_completed(futures), 1):
            results[futures[fut]] = fut.result()
            if progress:
                progress(description, done, total)
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return results


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray, initialised for the block: joins the cluster at ``address`` or starts a local one with ``num_cpus``
    (a Ray already initialised by the caller is used as it is and left running). Yields the ``ray`` module."""
    from salseg.errors import SalsegError

    try:
        import ray
    except ImportError:
        raise SalsegError("the Ray executor needs Ray: pip install 'salseg[ray]' (or pip install ray)") from None
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SalsegError(f"could not start or join Ray{f' at {address}' if address else ''}: {e}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def ray_failure(e: BaseException) -> BaseException:
    """The exception to report for a failed Ray task: the task's own (RayTaskError.cause), else the Ray error
    itself (a worker that died: WorkerCrashedError, OutOfMemoryError, NodeDiedError, ...)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e
