"""Fleet config push: bundle verify+apply latency, and N vehicles applying one MQTT push.

``shadowd bench fleet --json`` measures, in one run:
1. apply: one ConfigManager applying successive bundles (model already in the store, as after
   delivery): verify / validate / model warm-up / swap / persist / total per bundle, p50 and
   max, while a 100 Hz frame loop swaps each PreparedConfig in between two frames and counts
   late frames (the swap must not cost a frame). Peers: a bare Ed25519 verify and a bare
   sha256 of the model file, so the ratios show where time goes.
2. fleet: a real mosquitto on loopback with TLS, N instance processes (each the real
   MqttConfigSubscriber + ConfigManager + a 100 Hz frame loop, own state dir), one retained
   QoS-1 push to the fleet topic: time until each instance applied (p50 / max), that every one
   applied exactly once (the same bundle pushed again must come back ``unchanged``), and the
   frames that were late by more than a period (N processes share this machine's cores).

3. real services (``--real-services N``, default 4): N real ``shadowd run`` processes, each fed
   by its own ``shadowd produce`` process at real-time pace (the RAV4 drive, all four topics),
   subscribed to one TLS mosquitto; one retained QoS-1 bundle pushed to the fleet topic. Reported:
   time from the push until each service's ``shadowd status`` shows it as
   ``config.active_version`` (p50 / max, polled every 50 ms), and that no service dropped or
   late-dropped a frame across the swap (ring drops and ``frames_late`` unchanged; frames keep
   flowing after it). ``--real-services 0`` skips this part; ``--only-real`` runs only it.

This module also holds the loopback broker (``LocalBroker``; certificates from the uploader's
``bench/_nginx.make_pki``) that tests/fixtures/mosquitto.py wraps as a pytest fixture, so the
bench and the tests start the broker the same way. The instance process is ``python -m shadowd.bench.fleet --instance ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._nginx import free_port, make_pki

# --- loopback broker with TLS ----------------------------------------------------------------


class LocalBroker:
    """A real mosquitto on 127.0.0.1 with TLS (config, certificates and log in ``work_dir``).

    ``require_certificate=True`` makes clients present a certificate signed by the test CA.
    Use as a context manager, or ``start()`` / ``stop()``; ``stop()`` kills what it started.
    """

    def __init__(self, work_dir: Path, *, require_certificate: bool = False, port: int | None = None):
        self.work_dir = Path(work_dir)
        self.require_certificate = require_certificate
        self.port = port or free_port()
        self.pki = make_pki(self.work_dir / "pki")  # the uploader's throwaway PKI, shared
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work_dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def endpoint(self, *, client_cert: bool = False):
        from ..edges.mqtt import MqttEndpoint

        return MqttEndpoint.parse(self.url, cafile=str(self.pki.ca_cert),
                                  certfile=str(self.pki.client_cert) if client_cert else None,
                                  keyfile=str(self.pki.client_key) if client_cert else None)

    def start(self, timeout_s: float = 10.0) -> "LocalBroker":
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if os.path.exists(p)), None)
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto; scripts/setup does)")
        conf = self.work_dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", f"cafile {self.pki.ca_cert}",
                 f"certfile {self.pki.server_cert}", f"keyfile {self.pki.server_key}",
                 f"require_certificate {'true' if self.require_certificate else 'false'}",
                 "allow_anonymous true", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "max_inflight_messages 100"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to 'mosquitto', which cannot read tmp files
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- a model and a signed bundle to push -----------------------------------------------------


def bench_model(out_dir: Path) -> Path:
    """The bundled reference model when present, else a tiny real ONNX graph (needs ``onnx``)."""
    reference = Path(__file__).resolve().parents[1] / "data" / "models" / "reference.onnx"
    if reference.is_file():
        return reference
    return build_tiny_model(Path(out_dir) / "tiny.onnx")


def build_tiny_model(path: Path, *, bias: float = 1.0) -> Path:
    """A small real ONNX model that honours the shadowd model contract (docs/model-contract.md).

    Input ``window`` float32 [batch, 20, 2] (speed_mps, steer_angle_deg over 1 s at 20 Hz);
    output ``controls`` [batch, 10, 2] (steer_angle_deg, accel_long_mps2 over 1 s at 10 Hz) =
    the first 10 steps + ``bias``. ``bias`` changes the file and so its sha256.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    contract = {"version": 1, "run_hz": 20,
                "inputs": {"tensor": "window", "signals": ["speed_mps", "steer_angle_deg"],
                           "window_s": 1.0, "rate_hz": 20},
                "outputs": {"horizon_s": 1.0, "rate_hz": 10,
                            "controls": {"tensor": "controls",
                                         "signals": ["steer_angle_deg", "accel_long_mps2"]}}}
    inits = [numpy_helper.from_array(np.full((1, 1, 2), bias, dtype=np.float32), name="bias"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), name="starts"),
             numpy_helper.from_array(np.array([10], dtype=np.int64), name="ends"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), name="axes")]
    nodes = [helper.make_node("Slice", ["window", "starts", "ends", "axes"], ["first"]),
             helper.make_node("Add", ["first", "bias"], ["controls"])]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", 20, 2])],
                              [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["batch", 10, 2])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"shadowd.contract": json.dumps(contract)})
    onnx.checker.check_model(model)
    Path(path).write_bytes(model.SerializeToString())
    return Path(path)


def bench_config(version: int, model_path: Path, *, fleet: str = "bench", probation_s: float = 0.0,
                 now_s: float | None = None) -> dict:
    """A valid config dict for ``model_path``, valid from an hour ago for a day."""
    from ..core.config import format_rfc3339_utc
    from ..edges.bundle import sha256_file

    now = int(time.time() if now_s is None else now_s)
    return {"version": version, "not_before": format_rfc3339_utc(now - 3600),
            "expires": format_rfc3339_utc(now + 86400), "targets": {"fleets": [fleet]},
            "model": {"sha256": sha256_file(model_path), "file_name": model_path.name},
            "windows": {"pre_s": 5.0, "post_s": 3.0, "max_clip_s": 16.0}, "probation_s": probation_s}


# --- part 1: single-vehicle apply latency ----------------------------------------------------


def _platform(name: str):
    """The platform profile when PIPELINE's loader is present (windows get checked), else None."""
    try:
        from ..edges.platforms import load_platform
    except ImportError:
        return None
    return load_platform(name)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_apply(work: Path, iterations: int) -> dict:
    import hashlib

    from ..core.bundle_state import VehicleIdentity
    from ..edges.bundle import generate_keypair, load_private_key, sha256_file, sign_bundle
    from ..edges.config_apply import ConfigManager

    keys = work / "keys"
    priv, _pub = generate_keypair(keys, "bench")
    key = load_private_key(priv)
    model = bench_model(work)
    state = work / "apply-state"
    (state / "models").mkdir(parents=True)
    shutil.copyfile(model, state / "models" / f"{sha256_file(model)}.onnx")
    manager = ConfigManager(state, keys, VehicleIdentity("bench-1", "desktop", "bench"), _platform("desktop"))
    bundles = [sign_bundle(bench_config(v, model), key, "bench") for v in range(1, iterations + 1)]
    frames = _FrameLoop(period_s=0.01)  # a 100 Hz stage that swaps configs between two frames
    frames.start()
    rows = []
    try:
        time.sleep(1.0)  # peer: the same loop with nothing being applied
        baseline = frames.snapshot()
        frames.reset()
        for data in bundles:
            t0 = time.perf_counter()
            result = manager.offer(data, "bench")  # verify + validate + warm, off the frame thread
            if result.outcome != "prepared":
                raise RuntimeError(f"bench bundle was not prepared: {result.as_dict()}")
            frames.swap_in(result.prepared).wait(5)
            t_swapped = time.perf_counter()
            manager.activated(result.prepared)  # persist + start probation, off the frame thread
            t_done = time.perf_counter()
            rows.append({**result.timings_s, "swap_wait_s": t_swapped - t0 - result.timings_s["total_s"],
                         "activate_s": t_done - t_swapped, "total_s": t_done - t0})
    finally:
        frames.stop()
        manager.close()
    # peers: the two irreducible costs of an apply
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    peer_key = Ed25519PrivateKey.generate()
    sig = peer_key.sign(bundles[0])
    pub = peer_key.public_key()
    t = time.perf_counter()
    for _ in range(iterations):
        pub.verify(sig, bundles[0])
    ed25519_verify_s = (time.perf_counter() - t) / iterations
    t = time.perf_counter()
    for _ in range(iterations):
        hashlib.sha256(model.read_bytes()).hexdigest()
    sha256_model_s = (time.perf_counter() - t) / iterations
    total = [r["total_s"] for r in rows]
    aside = [r["total_s"] - r.get("model_warm_s", 0.0) for r in rows]
    return {
        "iterations": iterations,
        "frame_loop_hz": 100,
        "frames_during_applies": frames.count,
        "frames_late_during_applies": frames.late,
        "frame_lateness_ms_max_during_applies": frames.max_lateness_s * 1e3,
        "frames_idle_peer": baseline["count"],
        "frames_late_idle_peer": baseline["late"],
        "frame_lateness_ms_max_idle_peer": baseline["max_lateness_s"] * 1e3,
        "swaps": frames.swaps,
        "model": model.name,
        "model_size_bytes": model.stat().st_size,
        "activate_s_p50": _pct([r["activate_s"] for r in rows], 0.5),
        "swap_wait_s_p50": _pct([r["swap_wait_s"] for r in rows], 0.5),
        "verify_s_p50": _pct([r["verify_s"] for r in rows], 0.5),
        "validate_s_p50": _pct([r["validate_s"] for r in rows], 0.5),
        "model_warm_s_p50": _pct([r["model_warm_s"] for r in rows], 0.5),
        "total_s_p50": _pct(total, 0.5),
        "total_s_max": max(total),
        "apply_without_warmup_s_p50": _pct(aside, 0.5),
        "apply_without_warmup_s_max": max(aside),
        "target_s": 1.0,
        "peer_ed25519_verify_s": ed25519_verify_s,
        "peer_sha256_model_s": sha256_model_s,
        "ratio_apply_without_warmup_to_target": _pct(aside, 0.5) / 1.0,
        "ratio_verify_to_bare_ed25519": _pct([r["verify_s"] for r in rows], 0.5) / ed25519_verify_s,
    }


class _FrameLoop:
    """A periodic stage standing in for the service's frame loop: it picks up a pending
    PreparedConfig between two frames (a reference swap) and records how late each frame is."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.count = self.late = self.swaps = 0
        self.max_lateness_s = 0.0
        self._pending: tuple[object, threading.Event] | None = None
        self._active = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-frames", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def snapshot(self) -> dict:
        return {"count": self.count, "late": self.late, "max_lateness_s": self.max_lateness_s}

    def reset(self) -> None:
        self.count = self.late = 0
        self.max_lateness_s = 0.0

    def swap_in(self, prepared) -> threading.Event:
        done = threading.Event()
        if not self._thread.is_alive() and not self._stop.is_set():  # not started: swap now
            self._active = prepared
            done.set()
            return done
        self._pending = (prepared, done)
        return done

    def _run(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            next_t += self.period_s
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lateness = time.perf_counter() - next_t
            self.count += 1
            self.max_lateness_s = max(self.max_lateness_s, lateness)
            if lateness > self.period_s:
                self.late += 1
                next_t = time.perf_counter()  # a missed period is dropped, not caught up
            pending, self._pending = self._pending, None
            if pending is not None:  # between two frames: the swap is one reference assignment
                self._active = pending[0]
                self.swaps += 1
                pending[1].set()


# --- part 2: N vehicles, one push ------------------------------------------------------------


def run_fleet(work: Path, instances: int, *, timeout_s: float = 120.0, fleet: str = "bench") -> dict:
    """Start ``instances`` vehicle processes on one broker, push one bundle, measure."""
    from ..edges.bundle import generate_keypair, load_private_key, sha256_file, sign_bundle
    from ..edges.mqtt import fleet_topic, publish_bundle

    keys = work / "fleet-keys"
    priv, _pub = generate_keypair(keys, "fleet")
    model = bench_model(work)
    sha = sha256_file(model)
    bundle = sign_bundle(bench_config(1, model, fleet=fleet), load_private_key(priv), "fleet")
    procs: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    events: dict[int, list[dict]] = {i: [] for i in range(instances)}
    lock = threading.Condition()

    def reader(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev["t_recv_ns"] = time.time_ns()
            with lock:
                events[i].append(ev)
                lock.notify_all()

    def wait_for(pred, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with lock:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fleet bench: timed out waiting for {what}")
                lock.wait(min(left, 0.5))

    def count(i: int, kind: str) -> int:
        return sum(1 for e in events[i] if e.get("event") == kind)

    broker = LocalBroker(work / "broker").start()
    try:
        t_start = time.perf_counter()
        for i in range(instances):
            state = work / f"vehicle-{i}"
            (state / "models").mkdir(parents=True)
            shutil.copyfile(model, state / "models" / f"{sha}.onnx")  # delivered earlier
            cmd = [sys.executable, "-m", "shadowd.bench.fleet", "--instance", "--state-dir", str(state),
                   "--trust", str(keys), "--vehicle", f"veh-{i:03d}", "--fleet", fleet,
                   "--url", broker.url, "--cafile", str(broker.pki.ca_cert)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    start_new_session=True)
            procs.append(proc)
            readers.append(threading.Thread(target=reader, args=(i, proc), daemon=True))
            readers[-1].start()
        wait_for(lambda: all(count(i, "ready") for i in range(instances)), "instances to subscribe")
        startup_s = time.perf_counter() - t_start
        time.sleep(1.0)  # an idle second: the frame loops' peer figures
        t0_ns = time.time_ns()
        publish_bundle(broker.endpoint(), fleet_topic(fleet), bundle)
        wait_for(lambda: all(count(i, "applied") for i in range(instances)), "every instance to apply")
        latencies = [next(e["t_ns"] for e in events[i] if e["event"] == "applied") - t0_ns
                     for i in range(instances)]
        # the same bundle again (a re-push or a retained re-delivery) must not apply twice
        publish_bundle(broker.endpoint(), fleet_topic(fleet), bundle)
        wait_for(lambda: all(count(i, "unchanged") for i in range(instances)), "the re-push to be ignored")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        broker.stop()
    for t in readers:
        t.join(10)  # the instances' last lines ("exit", with their frame counts)
    exits = [next((e for e in events[i] if e.get("event") == "exit"), None) for i in range(instances)]
    applied_counts = [count(i, "applied") for i in range(instances)]
    idles = [next(e["idle"] for e in events[i] if e.get("event") == "applied") for i in range(instances)]
    refused = sum(count(i, "refused") for i in range(instances))
    lat_s = [n / 1e9 for n in latencies]
    return {
        "instances": instances,
        "instances_startup_s": startup_s,
        "push_to_applied_s_p50": statistics.median(lat_s),
        "push_to_applied_s_max": max(lat_s),
        "applied_exactly_once": all(c == 1 for c in applied_counts),
        "applied_counts_min_max": [min(applied_counts), max(applied_counts)],
        "refused": refused,
        "frame_loop_hz": 100,
        "frames_idle_peer": sum(idle["count"] for idle in idles),
        "frames_late_idle_peer": sum(idle["late"] for idle in idles),
        "frames_total": sum(e["frames"] for e in exits if e),
        "frames_late_total": sum(e["late"] for e in exits if e),
        "frame_lateness_ms_max": max((e["max_lateness_s"] for e in exits if e), default=0.0) * 1e3,
        "instances_reporting_frames": sum(1 for e in exits if e),
    }


def run_real_services(work: Path, services: int, *, timeout_s: float = 120.0, fleet: str = "bench",
                      settle_s: float = 2.0) -> dict:
    """N real ``shadowd run`` + producer pairs on one broker; one retained fleet push; see part 3."""
    from ..edges.bundle import generate_keypair, load_private_key, sha256_file, sign_bundle
    from ..edges.model_runner import default_model_path
    from ..edges.mqtt import fleet_topic, publish_bundle
    from .soak import ServiceProcess, remove_rings, start_producer, stop_process, wait_for

    def frame_counts(st: dict) -> dict:
        ing = st["ingest"]
        return {"vehicle": int(ing["frames"].get("vehicle", 0)), "late": int(ing["frames_late"]),
                "dropped": sum(int(v) for k, v in ing["dropped"].items() if k != "__label__")}

    keys = work / "fleet-keys"
    priv, pub = generate_keypair(keys, "fleet")
    model = default_model_path()
    sha = sha256_file(model)
    bundle = sign_bundle(bench_config(1, model, fleet=fleet), load_private_key(priv), "fleet")
    broker = LocalBroker(work / "broker").start()
    svcs: list[ServiceProcess] = []
    prods: list[subprocess.Popen] = []
    try:
        mqtt = {"url": broker.url, "cafile": str(broker.pki.ca_cert)}
        for i in range(services):
            svc = ServiceProcess(work / f"service-{i}", f"{os.getpid()}r{i}", mqtt=mqtt)
            (svc.work / "state" / "models").mkdir(parents=True)
            shutil.copyfile(model, svc.work / "state" / "models" / f"{sha}.onnx")  # delivered earlier
            shutil.copyfile(pub, svc.work / "keys" / "fleet.pub")
            svcs.append(svc)
        t_start = time.perf_counter()
        for svc in svcs:
            svc.start(timeout_s)
            prods.append(start_producer(svc.tag, speed=1.0, loops=10, log_path=svc.work / "producer.log"))
        for svc in svcs:
            wait_for(lambda: (s := svc.status())["mqtt"]["subscribed"] and frame_counts(s)["vehicle"] > 100,
                     timeout_s, f"service {svc.tag} subscribed and reading frames")
        startup_s = time.perf_counter() - t_start
        time.sleep(settle_s)
        before = [frame_counts(svc.status()) for svc in svcs]
        t0 = time.monotonic()
        publish_bundle(broker.endpoint(), fleet_topic(fleet), bundle)
        applied_s: dict[int, float] = {}
        deadline = t0 + timeout_s
        while len(applied_s) < len(svcs) and time.monotonic() < deadline:
            for i, svc in enumerate(svcs):
                if i not in applied_s and svc.status()["config"]["active_version"] == 1:
                    applied_s[i] = time.monotonic() - t0
            time.sleep(0.05)
        if len(applied_s) < len(svcs):
            raise TimeoutError(f"fleet bench: {len(svcs) - len(applied_s)} of {len(svcs)} services did not apply "
                               f"the bundle within {timeout_s:.0f} s; logs under {work}")
        time.sleep(settle_s)  # frames keep flowing after the swap
        after_status = [svc.status() for svc in svcs]
        after = [frame_counts(s) for s in after_status]
    finally:
        for prod in prods:
            stop_process(prod)
        exit_codes = [svc.stop() for svc in svcs]
        for svc in svcs:
            remove_rings(svc.tag)  # rings outlive their producers by design: ~36 MB of /dev/shm each
        broker.stop()
    lat = sorted(applied_s.values())
    return {
        "services": services, "feed": "shadowd produce of the RAV4 drive at 1x per service (4 rings each)",
        "startup_s": round(startup_s, 2),
        "push_to_applied_s_p50": round(statistics.median(lat), 3), "push_to_applied_s_max": round(max(lat), 3),
        "all_applied": len(applied_s) == services,
        "sources": sorted({s["config"]["source"] for s in after_status}),
        "ring_dropped_across_swap": sum(a["dropped"] - b["dropped"] for a, b in zip(after, before)),
        "frames_late_across_swap": sum(a["late"] - b["late"] for a, b in zip(after, before)),
        "vehicle_frames_across_swap_min": min(a["vehicle"] - b["vehicle"] for a, b in zip(after, before)),
        "pipeline_restarts": sum(s["stages"]["pipeline"]["restarts"] for s in after_status),
        "exit_codes": exit_codes,
        "tracebacks_in_logs": sum(svc.log_text().count("Traceback") for svc in svcs),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instances", type=int, default=20, help="vehicle processes on one broker (default 20)")
    parser.add_argument("--iterations", type=int, default=30, help="bundles applied in the latency part")
    parser.add_argument("--real-services", type=int, default=4,
                        help="real `shadowd run` processes with producers on the broker (default 4; 0 skips)")
    parser.add_argument("--only-real", action="store_true", help="run only the real-services part")
    parser.add_argument("--timeout-s", type=float, default=180.0)


def run(args: argparse.Namespace) -> dict:
    real_n = int(getattr(args, "real_services", 4))
    only_real = bool(getattr(args, "only_real", False))
    out: dict = {"bench": "fleet"}
    with tempfile.TemporaryDirectory(prefix="shadowd-bench-fleet-") as tmp:
        work = Path(tmp)
        if not only_real:
            (work / "apply").mkdir()
            (work / "fleet").mkdir()
            out["apply"] = measure_apply(work / "apply", args.iterations)
            out["fleet"] = run_fleet(work / "fleet", args.instances, timeout_s=args.timeout_s)
        if real_n > 0:
            (work / "real").mkdir()
            out["real_services"] = run_real_services(work / "real", real_n, timeout_s=args.timeout_s)
    return out


# --- the instance process ------------------------------------------------------------------


def _instance_main(argv: list[str]) -> int:
    """One vehicle: subscriber + ConfigManager; JSON lines on stdout (ready / applied / ...)."""
    p = argparse.ArgumentParser(prog="shadowd.bench.fleet --instance")
    p.add_argument("--instance", action="store_true")
    for name in ("--state-dir", "--trust", "--vehicle", "--fleet", "--url", "--cafile"):
        p.add_argument(name, required=True)
    p.add_argument("--platform", default="desktop")
    a = p.parse_args(argv)

    from ..core.bundle_state import VehicleIdentity
    from ..edges.config_apply import ConfigManager
    from ..edges.mqtt import MqttConfigSubscriber, MqttEndpoint

    out_lock = threading.Lock()

    def emit(**ev) -> None:
        with out_lock:
            print(json.dumps(ev), flush=True)

    manager = ConfigManager(Path(a.state_dir), Path(a.trust), VehicleIdentity(a.vehicle, a.platform, a.fleet),
                            _platform(a.platform))
    frames = _FrameLoop(period_s=0.01)  # the vehicle's 100 Hz frame loop; configs swap between frames
    frames.swap_in(manager.startup())
    frames.start()
    sub: MqttConfigSubscriber | None = None

    def on_bundle(data: bytes) -> None:
        idle = frames.snapshot()  # peer: the loop before anything was pushed
        result = manager.offer(data, f"mqtt:{sub.last_topic}")
        outcome = result.outcome
        if outcome == "prepared":
            frames.swap_in(result.prepared).wait(5)
            manager.activated(result.prepared)
            outcome = "applied"
        emit(event=outcome, version=result.version, reason=result.reason, t_ns=time.time_ns(), idle=idle)
        if sub is not None:
            sub.publish_status({**result.as_dict(), "outcome": outcome})

    sub = MqttConfigSubscriber(MqttEndpoint.parse(a.url, cafile=a.cafile), a.vehicle, a.fleet, on_bundle)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sub.start()
    if sub.subscribed.wait(60):
        frames.reset()
        emit(event="ready", t_ns=time.time_ns())
    stop.wait()
    sub.stop()
    frames.stop()
    emit(event="exit", frames=frames.count, late=frames.late, max_lateness_s=frames.max_lateness_s)
    manager.close()
    return 0


if __name__ == "__main__":
    if "--instance" in sys.argv[1:]:
        sys.exit(_instance_main(sys.argv[1:]))
    sys.exit("use 'shadowd bench fleet' (this module runs as a fleet instance with --instance)")
