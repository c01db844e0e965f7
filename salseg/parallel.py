"""Running one function over many items in worker processes, results in order (fingerprinting, preprocessing)."""

from __future__ import annotations

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
