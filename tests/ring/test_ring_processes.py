"""Rings across processes: the example C producer (compiled here with the system cc and run
as its own process) feeding a Python reader, and a writer process killed with SIGKILL."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shadowd.core.signals import frame_dtype
from shadowd.ring import RingReader, RingWriter

ROOT = pathlib.Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
VEHICLE = frame_dtype("vehicle")


@pytest.fixture(scope="module")
def producer(tmp_path_factory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler on PATH (cc/gcc): cannot build native/examples/producer.c")
    exe = tmp_path_factory.mktemp("producer") / "producer"
    subprocess.run(
        [cc, "-O2", "-std=gnu11", "-Wall", "-Werror", f"-I{NATIVE / 'include'}", f"-I{NATIVE / 'src'}",
         str(NATIVE / "examples/producer.c"), str(NATIVE / "src/ring.c"), "-o", str(exe), "-pthread"],
        check=True,
        capture_output=True,
    )
    return str(exe)


def _run(proc_args, **kw) -> subprocess.Popen:
    return subprocess.Popen(proc_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_c_producer_frames_reach_a_python_reader_intact(producer, tmp_path):
    path = str(tmp_path / "vehicle")
    RingWriter.create(path, VEHICLE, 8192).close()  # so the reader can open before frames flow
    frames = 5000
    with RingReader.open(path, VEHICLE) as reader:
        proc = _run([producer, path, str(frames), "0", "8192"])
        try:
            got = []
            out = np.zeros(512, VEHICLE)
            total = dropped = 0
            while total + dropped < frames:
                assert reader.wait(10.0), "producer stopped sending"
                n, d = reader.read_into(out)
                got.append(out[:n].copy())
                total += n
                dropped += d
            assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        seen = np.concatenate(got)
        assert dropped == 0 and len(seen) == frames  # capacity > frames: nothing may be lost
        np.testing.assert_allclose(seen["speed_mps"], np.arange(frames, dtype=np.float32) * np.float32(0.01))
        assert (np.diff(seen["t_ns"]) == 10_000_000).all()
        assert (seen["adas_engaged"] == np.arange(frames) % 2).all()
        # the producer exited: readers can tell, and the history stays readable by time
        assert reader.writer_alive is False
        t0 = int(seen["t_ns"][100])
        window = reader.frames(t0, t0 + 50_000_000)
        assert list(window["speed_mps"]) == list(seen["speed_mps"][100:106])


def test_paced_c_producer_wakes_a_waiting_reader_for_every_frame(producer, tmp_path):
    path = str(tmp_path / "vehicle")
    RingWriter.create(path, VEHICLE, 64).close()
    with RingReader.open(path, VEHICLE) as reader:
        proc = _run([producer, path, "200", "2000", "64"])  # 2 kHz for 0.1 s
        try:
            received = 0
            while received < 200:
                assert reader.wait(10.0)
                frames = reader.read(64)
                received += len(frames)
            assert reader.dropped_total == 0
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_c_producer_refuses_a_ring_with_another_frame_size(producer, tmp_path):
    path = str(tmp_path / "imu")
    with RingWriter.create(path, frame_dtype("imu"), 64):
        proc = subprocess.run([producer, path, "10", "0", "64"], capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"cannot create ring" in proc.stderr


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from shadowd.ring import RingWriter
    from shadowd.core.signals import frame_dtype
    dt = frame_dtype("imu")
    w = RingWriter.create(sys.argv[1], dt, 256)
    f = np.zeros(10, dt); f["t_ns"] = np.arange(10)
    w.write(f)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_reader_detects_a_killed_writer_and_a_restart_resumes(tmp_path):
    path = str(tmp_path / "imu")
    proc = _run([sys.executable, "-c", _WRITER_SCRIPT, path], stdin=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        reader = RingReader.open(path, frame_dtype("imu"), start="oldest")
        assert reader.writer_alive is True
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert reader.writer_alive is False
        assert list(reader.read(100)["t_ns"]) == list(range(10))
        with RingWriter.create(path, frame_dtype("imu"), 256) as again:  # the flock died with it
            assert reader.writer_alive is True
            f = np.zeros(1, frame_dtype("imu"))
            f["t_ns"] = 10
            again.write(f)
            assert list(reader.read(10)["t_ns"]) == [10]
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
