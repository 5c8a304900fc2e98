"""Soak and service-CPU benchmarks of the real ``shadowd run`` process, and its process helpers.

``shadowd bench soak --json [--hours H --speed X]`` (mode ``soak``, the default): hours of
driving -- the bundled RAV4 minute looped by a ``shadowd produce --loops`` process -- played at
``X`` times real time into the rings of a real ``shadowd run`` process (factory config:
reference model, built-in triggers, clips into its spool). Every ``--sample-s`` it samples the
service's resident memory (VmRSS from /proc/<pid>/status), its CPU (utime+stime from
/proc/<pid>/stat) and ``shadowd status`` (frames, ring drops, frames_late). Reported: RSS at
start/mid/end of the drive, the RSS slope over the drive after the warm-up (least squares, MB
per hour of driving; Theil-Sen, least squares beside it) with pass/fail against ``--max-growth-mb-per-h``, CPU as % of one core
at the accelerated pace and divided by the speed (≈ the real-time cost), and dropped frames.

``--mode realtime``: the issue-3 service-overhead target on the real process: the RAV4 drive at
real-time pace (vehicle 100 Hz, IMU ~200 Hz, radar perception 20 Hz, model requests 20 Hz;
no raw CAN ring) for ``--seconds``; CPU of the whole process, of the model worker thread
(``shadowd-model``) and everything besides the model (the < 2 % of one core target), from the
per-thread CPU the service reports in status (``cpu_s``).

The helpers (``ServiceProcess``, ``start_producer``, ``write_settings``, ``wait_for``) are shared
with ``shadowd bench fleet --real-services`` and tests/service, so all start the service the same
way. Everything runs on loopback and in a temporary directory; processes started are stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRIVE = Path(__file__).resolve().parents[1] / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"
DRIVE_S = 60.0
"""Length of the bundled RAV4 drive (one loop of the producer)."""
ALL_TOPICS = ("vehicle", "imu", "perception", "can_raw")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll ``predicate`` until it returns a truthy value (returned); exceptions count as not
    yet. Raises TimeoutError naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:  # noqa: BLE001 - the thing polled is still starting
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}; last: {last!r}")


def ring_names(tag: str, topics=ALL_TOPICS) -> dict[str, str]:
    return {t: f"s{tag}.{t}" for t in topics}


def write_settings(work: Path, tag: str, *, topics=ALL_TOPICS, upload: dict | None = None,
                   mqtt: dict | None = None, shutdown_grace_s: float = 5.0, extra: str = "") -> Path:
    """A settings TOML for one service instance under ``work`` (state, keys, socket, rings)."""
    lines = [f'vehicle_id = "veh-{tag}"', 'fleet = "bench"', f'state_dir = "{work / "state"}"',
             f'trust_dir = "{work / "keys"}"', f'control_socket = "{work / "run" / "control.sock"}"',
             f"shutdown_grace_s = {shutdown_grace_s}", extra, "[rings]"]
    lines += [f'{t} = "{n}"' for t, n in ring_names(tag, topics).items()]
    for section, table in (("upload", upload), ("mqtt", mqtt)):
        if table:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    (work / "keys").mkdir(parents=True, exist_ok=True)
    path = work / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_producer(tag: str, *, speed: float, loops: int = 1, topics=ALL_TOPICS,
                   drive: Path = DRIVE, log_path: Path | None = None) -> subprocess.Popen:
    """``shadowd produce`` of the drive into the rings of instance ``tag``, as its own process."""
    rings = [f"--ring={t}={n}" for t, n in ring_names(tag, topics).items()]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "shadowd", "produce", str(drive), "--speed", str(speed),
                             "--loops", str(loops), *rings], stdout=subprocess.PIPE, stderr=out)


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class ServiceProcess:
    """A real ``shadowd run --platform desktop`` subprocess with its own state, socket and log."""

    def __init__(self, work: Path, tag: str, *, platform: str = "desktop", **settings_kw):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.tag = tag
        self.platform = platform
        self.settings = write_settings(self.work, tag, **settings_kw)
        self.socket = self.work / "run" / "control.sock"
        self.log_path = self.work / "service.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shadowd", "run", "--platform", self.platform,
                                      "--config", str(self.settings)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self.proc.poll() is None and self.status(), timeout_s,
                 f"shadowd run ({self.tag}) to answer on {self.socket}; log: {self.log_path}")
        return self

    def status(self) -> dict:
        from ..edges.control import request

        return request(self.socket, "status")

    def request(self, command: str):
        from ..edges.control import request

        return request(self.socket, command)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_bytes(self) -> dict[str, int]:
        """Resident memory now from /proc/<pid>/status: ``VmRSS`` (all), ``RssAnon`` (heap: where
        a leak shows), ``RssShmem`` (the rings' shared memory as the service touches it)."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "RssAnon", "RssShmem"):
                    out[key] = int(line.split()[1]) * 1024
        return out

    def rss_bytes(self) -> int:
        """Resident memory now (VmRSS of /proc/<pid>/status)."""
        return self.memory_bytes()["VmRSS"]

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the service used so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> int | None:
        return stop_process(self.proc, timeout_s)

    def __enter__(self) -> "ServiceProcess":
        if self.proc is None or self.proc.poll() is not None:
            self.start()  # (re)start unless already running
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _dropped(status: dict) -> dict[str, int]:
    ingest = status.get("ingest", {})
    drops = {k: int(v) for k, v in ingest.get("dropped", {}).items() if k != "__label__"}
    return {"ring_dropped": sum(drops.values()), "frames_late": int(ingest.get("frames_late", 0))}


def _slope_per_x(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def _theil_sen(xs: list[float], ys: list[float]) -> float:
    """Median of the pairwise slopes: robust to the transient spikes of clip building (tens of
    MB for a moment) that tilt a least-squares fit over a short run."""
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
                    if xs[j] != xs[i])
    return slopes[len(slopes) // 2] if slopes else 0.0


def _window_growth(xs: list[float], ys: list[float]) -> float:
    """Growth per unit of x between the median of the first and of the last third of the
    samples. RSS saws by ±10 MB (clip building, malloc trims); medians of windows see the level
    under the saw, which is what a leak moves."""
    n = len(xs) // 3
    if n < 2:
        return 0.0
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    dx = med(xs[-n:]) - med(xs[:n])
    return (med(ys[-n:]) - med(ys[:n])) / dx if dx else 0.0


def run_soak(work: Path, *, hours: float, speed: float, sample_s: float = 1.0, warmup_frac: float = 0.25,
             max_growth_mb_per_h: float = 2.0, upload: bool = True, tag: str | None = None) -> dict:
    """Play ``hours`` of driving at ``speed`` x through a real service; see the module docstring.

    ``upload``: clips go on to a loopback nginx, as on a vehicle with a link, so the spool (and
    its in-memory index, ~30 objects per clip) stays small; without it the spool fills by
    design (up to its quota) and its index grows with it."""
    from contextlib import ExitStack

    tag = tag or f"soak{os.getpid()}"
    loops = max(1, math.ceil(hours * 3600 / DRIVE_S))
    driving_s = loops * DRIVE_S
    samples: list[dict] = []
    with ExitStack() as stack:
        upload_section = None
        if upload:
            from ._nginx import LoopbackNginx

            server = stack.enter_context(LoopbackNginx(work / "nginx"))
            upload_section = {"endpoint_url_template": server.url + "/{vehicle_id}/{clip_id}.shdc",
                              "backoff_base_s": 0.2}
        svc = stack.enter_context(ServiceProcess(work / "svc", tag, upload=upload_section))
        base_status = svc.status()
        prod = start_producer(tag, speed=speed, loops=loops, log_path=work / "producer.log")
        w0 = time.monotonic()
        c0 = svc.cpu_s()
        try:
            while True:
                done = prod.poll() is not None
                wall = time.monotonic() - w0
                st = svc.status()
                mem = svc.memory_bytes()
                samples.append({"wall_s": round(wall, 2), "driving_h": round(min(wall * speed, driving_s) / 3600, 4),
                                "rss_mb": round(mem["VmRSS"] / 2**20, 2), "anon_mb": round(mem.get("RssAnon", 0) / 2**20, 2),
                                "shmem_mb": round(mem.get("RssShmem", 0) / 2**20, 2), "cpu_s": round(svc.cpu_s() - c0, 3),
                                "vehicle_frames": int(st["ingest"]["frames"].get("vehicle", 0)), **_dropped(st)})
                if done:
                    break
                time.sleep(sample_s)
            out, err = prod.communicate(timeout=10)
            if prod.returncode != 0:
                raise RuntimeError(f"producer failed (exit {prod.returncode}); see {work / 'producer.log'}")
            written = json.loads(out)["written"]
            wall = time.monotonic() - w0
            cpu = svc.cpu_s() - c0
            final = wait_for(lambda: (s := svc.status())["ingest"]["frames"].get("vehicle", 0)
                             >= written["vehicle"] and s, 30, "the service to read the last vehicle frame")
        finally:
            stop_process(prod)
        rc = svc.stop()
        log = svc.log_text()
    steady = [s for s in samples if s["driving_h"] >= warmup_frac * driving_s / 3600]
    hours_x = [s["driving_h"] for s in steady]
    slope = _theil_sen(hours_x, [s["rss_mb"] for s in steady])
    lsq_slope = _slope_per_x(hours_x, [s["rss_mb"] for s in steady])
    anon_slope = _theil_sen(hours_x, [s["anon_mb"] for s in steady])
    growth = _window_growth(hours_x, [s["rss_mb"] for s in steady])
    mid = samples[len(samples) // 2]
    d0, d1 = _dropped(base_status), _dropped(final)
    return {
        "driving_h": round(driving_s / 3600, 3), "speed": speed, "wall_s": round(wall, 1), "samples": len(samples),
        "rss_mb": {"start": samples[0]["rss_mb"], "after_warmup": steady[0]["rss_mb"] if steady else None,
                   "mid": mid["rss_mb"], "end": samples[-1]["rss_mb"], "max": max(s["rss_mb"] for s in samples)},
        "anon_mb": {"start": samples[0]["anon_mb"], "end": samples[-1]["anon_mb"]},
        "shmem_mb": {"start": samples[0]["shmem_mb"], "end": samples[-1]["shmem_mb"]},
        "warmup_driving_h": round(warmup_frac * driving_s / 3600, 3),
        "rss_growth_mb_per_driving_h": round(slope, 3),
        "rss_growth_least_squares_mb_per_driving_h": round(lsq_slope, 3),
        "anon_growth_mb_per_driving_h": round(anon_slope, 3),
        "rss_growth_first_to_last_third_mb_per_driving_h": round(growth, 3),
        "rss_flat": {"threshold_mb_per_h": max_growth_mb_per_h, "judged_on": "first_to_last_third",
                     "pass": bool(growth <= max_growth_mb_per_h)},
        "cpu_pct_of_one_core": round(100 * cpu / wall, 2),
        "cpu_pct_per_realtime_drive": round(100 * cpu / wall / speed, 3),
        "cpu_note": (f"at {speed:g}x the model answers only some requests (the rest are shed or superseded) "
                     "and the pipeline drains bigger batches, so this is no real-time figure: see --mode realtime"),
        "model": {k: int(final["model"].get(k, 0)) for k in ("inferences", "shed", "superseded", "errors")},
        "frames": {"written": written, "read": {k: v for k, v in final["ingest"]["frames"].items() if k != "__label__"}},
        "dropped": {k: d1[k] - d0[k] for k in d1},
        "clips_spooled": int(final["clips"]["clips_spooled"]),
        "clips_uploaded": int(final["upload"].get("uploaded", 0)) if upload else None,
        "clips_in_spool_at_end": int(final["spool"].get("count", 0)),
        "stage_restarts": {k: v["restarts"] for k, v in final["stages"].items()},
        "service_exit_code": rc, "tracebacks_in_log": log.count("Traceback"),
        "timeline": samples[:: max(1, len(samples) // 20)],
    }


def run_realtime(work: Path, *, seconds: float, warmup_s: float = 5.0, tag: str | None = None) -> dict:
    """The real service at real-time pace, no raw CAN: CPU in total, of the model, and besides it."""
    tag = tag or f"rt{os.getpid()}"
    topics = ("vehicle", "imu", "perception")
    loops = max(1, math.ceil((seconds + warmup_s + 2) / DRIVE_S))
    with ServiceProcess(work / "svc", tag, topics=topics) as svc:
        prod = start_producer(tag, speed=1.0, loops=loops, topics=topics, log_path=work / "producer.log")
        try:
            time.sleep(warmup_s)
            s0, c0, w0 = svc.status(), svc.cpu_s(), time.monotonic()
            time.sleep(seconds)
            s1, c1, w1 = svc.status(), svc.cpu_s(), time.monotonic()
        finally:
            stop_process(prod)
        svc.stop()
    wall = w1 - w0

    def thread_cpu(st: dict) -> dict[str, float]:
        return {k: v for k, v in st.get("cpu_s", {}).items() if k != "__label__"}

    t0, t1 = thread_cpu(s0), thread_cpu(s1)
    t1.pop("process", None)
    per_thread = {k: round(100 * (t1[k] - t0.get(k, 0.0)) / wall, 3) for k in t1}
    total = 100 * (c1 - c0) / wall
    model = per_thread.get("shadowd-model", 0.0)
    rates = {k: v for k, v in s1["ingest"]["rate_hz"].items() if k != "__label__"}
    return {
        "seconds": round(wall, 2), "rate_hz": rates,
        "model_inferences_per_s": round((s1["model"].get("inferences", 0) - s0["model"].get("inferences", 0)) / wall, 1),
        "cpu_pct_of_one_core": {"process": round(total, 3), "model_thread": model,
                                "besides_model": round(total - model, 3), "by_thread": per_thread},
        "dropped": {k: _dropped(s1)[k] - _dropped(s0)[k] for k in ("ring_dropped", "frames_late")},
        "target_besides_model_pct": 2.0, "met": bool(total - model < 2.0),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("soak", "realtime", "both"), default="soak",
                        help="soak: hours of driving accelerated (default); realtime: real-time CPU of the service")
    parser.add_argument("--hours", type=float, default=2.0, help="hours of driving to replay (default 2)")
    parser.add_argument("--speed", type=float, default=90.0, help="playback speed, x real time (default 90)")
    parser.add_argument("--sample-s", type=float, default=1.0, help="sampling period in wall seconds (default 1)")
    parser.add_argument("--max-growth-mb-per-h", type=float, default=2.0,
                        help="RSS growth per hour of driving that still passes as flat (default 2 MB/h)")
    parser.add_argument("--no-upload", action="store_true",
                        help="soak: keep clips in the spool instead of uploading them to a loopback nginx")
    parser.add_argument("--seconds", type=float, default=30.0, help="realtime mode: seconds measured (default 30)")


def run(args: argparse.Namespace) -> dict:
    mode = getattr(args, "mode", "soak")
    out: dict = {"drive": DRIVE.name, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="shadowd-soak-") as tmp:
        if mode in ("soak", "both"):
            out["soak"] = run_soak(Path(tmp) / "soak", hours=float(getattr(args, "hours", 2.0)),
                                   speed=float(getattr(args, "speed", 90.0)),
                                   sample_s=float(getattr(args, "sample_s", 1.0)),
                                   max_growth_mb_per_h=float(getattr(args, "max_growth_mb_per_h", 2.0)),
                                   upload=not getattr(args, "no_upload", False))
        if mode in ("realtime", "both"):
            out["realtime"] = run_realtime(Path(tmp) / "rt", seconds=float(getattr(args, "seconds", 30.0)))
    return out
