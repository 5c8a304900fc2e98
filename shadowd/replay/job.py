"""One ``shadowd replay`` job from inputs to ``--out DIR``: the function the CLI and bench call.

Owns the order of work: discover inputs, replay them (candidate, then baseline for A/B, then
each sweep point), compare, score labels, and write the outputs. Nothing here decodes, runs a
model or formats plots: it composes ``runner``, ``parallel``, ``ab``, ``labels``, ``report``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..errors import ReplayError
from . import ab as ab_mod
from . import labels as labels_mod
from .inputs import discover_inputs
from .parallel import WorkerPool
from .report import build_report, build_timing, write_outputs
from .runner import (
    ReplayOptions,
    apply_overrides,
    default_model_path,
    file_sha256,
    load_model,
    load_platform,
    load_trigger_config,
)


@dataclass
class ReplayJob:
    inputs: list[str]
    out_dir: Path | None
    options: ReplayOptions = field(default_factory=ReplayOptions)
    workers: int = 1
    ray_address: str | None = None
    baseline_path: str | None = None
    sweep: list[str] = field(default_factory=list)
    target_upload_share: float = 0.05
    progress: bool = False
    html: bool = True


class ProgressBar:
    """A one-line progress bar on stderr: inputs done, driving time replayed, x real time."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.done, self.driven_s, self.t0 = 0, 0.0, time.perf_counter()

    def __call__(self, result: dict[str, Any]) -> None:
        self.done += 1
        self.driven_s += result.get("duration_s") or 0.0
        wall = max(time.perf_counter() - self.t0, 1e-9)
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"inputs, {self.driven_s / 60:.1f} min driven, {self.driven_s / wall:.0f}x real time ")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def check_setup(opts: ReplayOptions, baseline_path: str | None) -> None:
    """Refuse what would fail every input (platform, models, triggers) before any work starts:
    one clear error and exit status 1, instead of the same error once per input."""
    from ..core.triggers import compile_triggers

    platform = load_platform(opts.platform)
    for path in (opts.model_path, baseline_path):
        if path is not None:
            load_model(path, platform)
    compile_triggers(apply_overrides(load_trigger_config(opts.config_path).defs, opts.trigger_overrides))


def run_job(job: ReplayJob) -> tuple[dict[str, Any], dict[str, Any], dict[str, Path]]:
    """Run the job; returns (report, timing, written paths). Bad inputs are in the report.

    Raises ShadowdError (nothing written) for an unknown platform, an unloadable model or
    baseline, or an invalid trigger config or sweep.
    """
    paths = discover_inputs(job.inputs)
    if job.out_dir is not None:
        clip_dir = (Path(job.out_dir) / "clips").resolve()
        inside = [p for p in paths if p.resolve().is_relative_to(clip_dir)]
        if inside:
            raise ReplayError(f"--out {job.out_dir} would replace the clips being replayed ({inside[0]}); "
                              f"copy them elsewhere or pick another --out")
    model_path = job.options.model_path or str(default_model_path())
    opts = dataclasses.replace(job.options, model_path=model_path)
    check_setup(opts, job.baseline_path)
    for spec in job.sweep:
        axis = labels_mod.parse_sweep(spec)
        check_setup(dataclasses.replace(opts, trigger_overrides=((axis.trigger, axis.param, axis.values[0]),)), None)
    tc = load_trigger_config(opts.config_path)

    with WorkerPool(job.workers, job.ray_address) as pool:
        return _run(job, paths, opts, tc, pool)


def _run(job: ReplayJob, paths: list[Path], opts: ReplayOptions, tc: Any, pool: WorkerPool
         ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Path]]:
    def replay(o: ReplayOptions, label: str) -> list[dict[str, Any]]:
        bar = ProgressBar(len(paths), label) if job.progress else None
        return pool.replay(paths, o, bar)

    t0 = time.perf_counter()
    results = replay(opts, "candidate")
    wall_s = time.perf_counter() - t0
    provenance = {
        "vehicle_id": opts.vehicle_id,
        "platform": opts.platform,
        "model_sha256": file_sha256(opts.model_path),
        "model_file": Path(opts.model_path).name,
        "config_version": tc.version,
        "config": Path(tc.source).name if tc.source != "builtin" else "builtin",
        "software_version": __version__,
    }
    ab = baseline = None
    if job.baseline_path:
        baseline = replay(dataclasses.replace(opts, model_path=job.baseline_path), "baseline")
        ab = ab_mod.compare(results, baseline)
        provenance["baseline_sha256"] = file_sha256(job.baseline_path)
        provenance["baseline_file"] = Path(job.baseline_path).name
    sweep = None
    if job.sweep:
        axes = [labels_mod.parse_sweep(s) for s in job.sweep]
        light = dataclasses.replace(opts, keep_clip_bytes=False)
        sweep = labels_mod.run_sweep(
            axes, job.target_upload_share,
            lambda overrides: replay(dataclasses.replace(light, trigger_overrides=overrides), "sweep"))
    report = build_report(results, provenance, ab=ab, labels=labels_mod.label_metrics(results), sweep=sweep)
    timing = build_timing(results, wall_s, job.workers, job.ray_address, baseline)
    written = write_outputs(job.out_dir, results, report, timing, html_report=job.html) if job.out_dir else {}
    return report, timing, written
