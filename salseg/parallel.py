"""Running one function over many items in worker processes, results in order (fingerprinting, preprocessing)."""

from __future__ import annotations

import contextlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence

Progress = Callable[[str, int, int], None]


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
