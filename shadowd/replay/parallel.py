"""Spread replay inputs over workers: this process, local processes, or a Ray cluster.

Owns scheduling only. Each input is one task ``runner.replay_input(index, path, options)``;
results come back in any order and are returned sorted by input index, so the report does
not depend on the worker count. Largest inputs start first (fewer stragglers). A
``WorkerPool`` stays up for a whole job (candidate, baseline, every sweep point), so workers
start and load the model once.

Rules: local workers use the ``forkserver`` start method (``spawn`` where it is missing), never
``fork``: onnxruntime's thread pools do not survive a fork. Ray is an optional extra
(``pip install 'shadowd[ray]'``); ``--ray local`` starts a private local instance and stops it
afterwards, any other address joins that cluster (shadowd must be importable on its nodes).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from ..errors import ReplayError
from .runner import ReplayOptions, replay_input

Progress = Callable[[dict[str, Any]], None]
"""Called with each finished input's result (for progress bars)."""

# Imported once by the forkserver, so each worker forks with them loaded instead of importing
# them again (onnxruntime starts no thread before a session exists, so this fork is safe).
_PRELOAD = ["numpy", "onnxruntime", "cantools", "shadowd.replay.runner", "shadowd.edges.can_ingest",
            "shadowd.core.pipeline", "shadowd.clip"]

# One worker = one core: keep numpy's BLAS / OpenMP pools from starting a thread per core in
# every worker (oversubscription). Measured on 16 cores: within noise (+2%), but never worse.
_SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _schedule(paths: list[Path]) -> list[tuple[int, str]]:
    tasks = list(enumerate(str(p) for p in paths))
    return sorted(tasks, key=lambda t: (-_size(t[1]), t[0]))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def ray_available() -> str | None:
    """None when Ray can be used, else the reason it cannot."""
    try:
        import ray  # noqa: F401
    except ImportError as err:
        return f"ray is not installed ({err}); pip install 'shadowd[ray]'"
    return None


class WorkerPool:
    """Where inputs run: this process (``workers=1``), local processes, or a Ray cluster.

    Use as a context manager; ``replay`` may be called any number of times. Raises
    ReplayError for a broken worker process or an unreachable Ray cluster (a bad input is an
    ``"error"`` result, never an exception).
    """

    def __init__(self, workers: int = 1, ray_address: str | None = None):
        self.workers = max(1, workers)
        self.ray_address = ray_address
        self._pool: Executor | None = None
        self._ray_started = False

    def __enter__(self) -> "WorkerPool":
        if self.ray_address:
            self._start_ray()
        elif self.workers > 1:
            for var in _SINGLE_THREAD_ENV:  # read by the forkserver when it starts
                os.environ.setdefault(var, "1")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    def replay(self, paths: list[Path], opts: ReplayOptions, progress: Progress | None = None
               ) -> list[dict[str, Any]]:
        """Replay every input; returns one result per input, in input order."""
        tasks = _schedule(paths)
        if self.ray_address:
            results = self._run_ray(tasks, opts, progress)
        elif self._pool is None or len(tasks) == 1:
            results = []
            for index, path in tasks:
                results.append(replay_input(index, path, opts))
                if progress:
                    progress(results[-1])
        else:
            results = self._run_local(tasks, opts, progress)
        return sorted(results, key=lambda r: r["index"])

    def _run_local(self, tasks, opts, progress) -> list[dict[str, Any]]:
        results = []
        pending = {self._pool.submit(replay_input, i, p, opts) for i, p in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    results.append(fut.result())
                except Exception as err:  # a worker died (OOM, signal): name it, keep nothing silent
                    raise ReplayError(f"a replay worker process failed ({type(err).__name__}: {err}); "
                                      f"rerun with --workers 1 to see the failing input") from err
                if progress:
                    progress(results[-1])
        return results

    def _start_ray(self) -> None:
        reason = ray_available()
        if reason:
            raise ReplayError(f"--ray {self.ray_address}: {reason}")
        import ray

        if ray.is_initialized():
            return
        try:
            if self.ray_address == "local":
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.ray_address, log_to_driver=False, configure_logging=False)
        except Exception as err:  # ray raises ConnectionError, RuntimeError, ...
            raise ReplayError(f"--ray {self.ray_address}: cannot join the Ray cluster ({err}); check the "
                              f"address (ray://host:10001 or host:6379) or use --ray local") from err
        self._ray_started = True

    def _run_ray(self, tasks, opts, progress) -> list[dict[str, Any]]:
        import ray

        remote = ray.remote(num_cpus=1)(replay_input)
        pending = [remote.remote(i, p, opts) for i, p in tasks]
        results = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(done[0]))
            if progress:
                progress(results[-1])
        return results


def replay_all(paths: list[Path], opts: ReplayOptions, *, workers: int = 1, ray_address: str | None = None,
               progress: Progress | None = None) -> list[dict[str, Any]]:
    """One-shot ``WorkerPool(workers, ray_address).replay(paths, opts)``."""
    with WorkerPool(workers, ray_address) as pool:
        return pool.replay(paths, opts, progress)


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")
