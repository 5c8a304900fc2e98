"""Uploader throughput and CPU against curl to a loopback nginx (plain and TLS), and cap accuracy.

Figures (one JSON object):
- per transport (``plain``, ``tls``): MB/s of the uploader (single PUT per clip, HEAD first, as
  in service, durable spool ack included) and of the uploader in multipart mode (8 MiB parts,
  3 per clip, manifest last), and of ``curl`` PUTting the same files over
  one kept-alive connection in the same run; the ratio uploader/curl (target >= 0.8); CPU
  seconds per MB of each (getrusage: the uploader's own process, curl as a waited child).
- ``cap``: a bandwidth cap (default 2 MB/s) and the rate achieved over one clip of
  ``cap_seconds`` worth of bytes; ``cap_error_pct`` (target within 5 %).

Rounds alternate uploader and curl; the headline ratio is the median of the per-round ratios
(each round's two runs are back to back), because this machine is shared and noisy. nginx serves from /dev/shm when it can, so the server's disk does not hide
the client's cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ..core.upload_policy import UploadConfig
from ..edges.spool import Spool
from ..edges.uploader import Uploader
from ..errors import ShadowdError
from ._nginx import LoopbackNginx, make_pki

_MB = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", type=int, default=12, help="clips per round")
    parser.add_argument("--file-mb", type=float, default=8.0, help="size of each clip, MB")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median reported)")
    parser.add_argument("--cap-bytes-per-s", type=int, default=2_000_000, help="bandwidth cap to check")
    parser.add_argument("--cap-seconds", type=float, default=5.0, help="length of the cap run")


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _scratch_root() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="shadowd-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="shadowd-bench-"))


def _curl(files: list[Path], base_url: str, ca: Path | None) -> tuple[float, float]:
    cmd = ["curl", "-sS", "--fail", "-o", "/dev/null"]
    if ca:
        cmd += ["--cacert", str(ca)]
    for i, f in enumerate(files):
        cmd += ["-T", str(f), f"{base_url}/curl/{i}-{f.name}"]
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise ShadowdError(f"curl failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return wall, _cpu_children() - cpu0


def _uploader(spool_dir: Path, blobs: list[bytes], cfg: UploadConfig) -> tuple[float, float, dict]:
    shutil.rmtree(spool_dir, ignore_errors=True)
    spool = Spool(spool_dir, quota_bytes=1 << 40)
    try:
        for i, blob in enumerate(blobs):
            spool.put(blob, priority=0, t_ns=i)
        up = Uploader(spool, cfg)
        cpu0, t0 = _cpu_self(), time.perf_counter()
        while True:
            r = up.run_once()
            if r.action == "idle":
                break
            if r.action not in ("uploaded", "part_sent", "deduped"):
                raise ShadowdError(f"benchmark upload failed: {r}")
        wall = time.perf_counter() - t0
        cpu = _cpu_self() - cpu0
        metrics = up.metrics()
        up.close()
        return wall, cpu, metrics
    finally:
        spool.close()


def run(args: argparse.Namespace) -> dict:
    if shutil.which("curl") is None:
        raise ShadowdError("curl is not installed; the benchmark compares against it (apt-get install curl)")
    n_files = getattr(args, "files", 12)
    file_bytes = int(getattr(args, "file_mb", 8.0) * _MB)
    rounds = getattr(args, "rounds", 5)
    cap = getattr(args, "cap_bytes_per_s", 2_000_000)
    cap_seconds = getattr(args, "cap_seconds", 5.0)

    scratch = _scratch_root()
    work = Path(tempfile.mkdtemp(prefix="shadowd-bench-work-"))
    servers: list[LoopbackNginx] = []
    try:
        pki = make_pki(work / "pki")
        blobs = [os.urandom(file_bytes) for _ in range(n_files)]
        # multipart: the default 8 MiB parts, 3 parts per clip, about the same total bytes
        part_bytes = 8 * 1024 * 1024
        n_multi = max(1, round(n_files * file_bytes / (3 * part_bytes)))
        multi_blobs = [os.urandom(3 * part_bytes) for _ in range(n_multi)]
        multi_mb = n_multi * 3 * part_bytes / _MB
        files = []
        for i, blob in enumerate(blobs):
            p = work / "files" / f"clip{i:03d}.bin"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(blob)
            files.append(p)
        total_mb = n_files * file_bytes / _MB
        out: dict = {"files": n_files, "file_bytes": file_bytes, "rounds": rounds,
                     "server_root": "tmpfs (/dev/shm)" if str(scratch).startswith("/dev/shm") else "disk"}
        for transport in ("plain", "tls"):
            server = LoopbackNginx(work / f"nginx-{transport}", tls=pki if transport == "tls" else None,
                                   root=scratch / transport).start()
            servers.append(server)
            common = {"endpoint_url_template": server.url + "/up/{clip_id}.shdc",
                      "ca_file": str(pki.ca_cert) if transport == "tls" else None}
            single = UploadConfig.from_dict({**common, "multipart_threshold_bytes": file_bytes * 2})
            multi = UploadConfig.from_dict({**common, "part_size_bytes": part_bytes,
                                            "multipart_threshold_bytes": part_bytes})
            up_mbps, multi_mbps, curl_mbps, up_cpu, curl_cpu = [], [], [], [], []
            for r in range(rounds):
                order = ("uploader", "curl") if r % 2 == 0 else ("curl", "uploader")
                for who in order:
                    shutil.rmtree(server.root / "up", ignore_errors=True)
                    shutil.rmtree(server.root / "curl", ignore_errors=True)
                    if who == "curl":
                        wall, cpu = _curl(files, server.url, pki.ca_cert if transport == "tls" else None)
                        curl_mbps.append(total_mb / wall)
                        curl_cpu.append(cpu / total_mb)
                    else:
                        wall, cpu, _ = _uploader(work / "spool", blobs, single)
                        up_mbps.append(total_mb / wall)
                        up_cpu.append(cpu / total_mb)
                shutil.rmtree(server.root / "up", ignore_errors=True)
                wall, _, m = _uploader(work / "spool", multi_blobs, multi)
                assert m["parts_sent"] == 3 * n_multi, m
                multi_mbps.append(multi_mb / wall)
            med_up, med_curl = statistics.median(up_mbps), statistics.median(curl_mbps)
            # each round's uploader and curl runs are back to back, so their ratio cancels the
            # slow swings of a shared machine; the median of those ratios is the headline
            ratios = [u / c for u, c in zip(up_mbps, curl_mbps)]
            ratio = statistics.median(ratios)
            out[transport] = {
                "uploader_mb_per_s": round(med_up, 1),
                "uploader_multipart_mb_per_s": round(statistics.median(multi_mbps), 1),
                "curl_mb_per_s": round(med_curl, 1),
                "multipart_ratio_vs_curl": round(statistics.median(m / c for m, c in zip(multi_mbps, curl_mbps)), 3),
                "ratio_vs_curl": round(ratio, 3),
                "ratio_vs_curl_per_round": [round(r, 2) for r in ratios],
                "uploader_cpu_ms_per_mb": round(1000 * statistics.median(up_cpu), 3),
                "curl_cpu_ms_per_mb": round(1000 * statistics.median(curl_cpu), 3),
                "target_ratio": 0.8,
                "meets_target": ratio >= 0.8,
            }
            shutil.rmtree(server.root / "up", ignore_errors=True)
            shutil.rmtree(server.root / "curl", ignore_errors=True)

        # bandwidth cap accuracy over TLS: one clip of cap_seconds worth of bytes
        server = servers[-1]
        cap_bytes = int(cap * cap_seconds)
        cap_cfg = UploadConfig.from_dict({"endpoint_url_template": server.url + "/cap/{clip_id}.shdc",
                                          "ca_file": str(pki.ca_cert), "bandwidth_bytes_per_s": cap,
                                          "multipart_threshold_bytes": cap_bytes * 2})
        wall, cpu, m = _uploader(work / "spool", [os.urandom(cap_bytes)], cap_cfg)
        achieved = m["bytes_sent"] / wall
        out["cap"] = {
            "cap_bytes_per_s": cap,
            "bytes": m["bytes_sent"],
            "seconds": round(wall, 3),
            "achieved_bytes_per_s": round(achieved),
            "cap_error_pct": round(100 * (achieved - cap) / cap, 2),
            "target_pct": 5.0,
            "meets_target": abs(achieved - cap) / cap <= 0.05,
        }
        return out
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
