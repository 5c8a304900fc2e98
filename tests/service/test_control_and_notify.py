"""The service's edges to its operators: control socket, sd_notify, Prometheus text."""

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from shadowd.core.metrics import to_prometheus
from shadowd.edges.control import ControlServer, request
from shadowd.edges.sdnotify import Notifier
from shadowd.errors import ShadowdError


@pytest.fixture
def server(tmp_path):
    calls = []
    srv = ControlServer(
        tmp_path / "run" / "control.sock",
        {"status": lambda: {"rates": {"vehicle_hz": 100.0}, "config_version": 3}, "flush": lambda: calls.append("flush") or "flushed"},
    )
    srv.start()
    yield srv, calls
    srv.stop()


def test_control_socket_is_private_to_the_service_user(server):
    srv, _ = server
    mode = stat.S_IMODE(os.stat(srv.path).st_mode)
    assert mode & 0o077 == 0, oct(mode)


def test_status_round_trips_over_the_socket(server):
    srv, _ = server
    assert request(srv.path, "status") == {"rates": {"vehicle_hz": 100.0}, "config_version": 3}


def test_command_runs_its_handler(server):
    srv, calls = server
    assert request(srv.path, "flush") == "flushed"
    assert calls == ["flush"]


def test_unknown_command_is_refused_with_the_known_ones(server):
    srv, _ = server
    with pytest.raises(ShadowdError, match="unknown command 'rm -rf'.*status"):
        request(srv.path, "rm -rf")


def test_garbage_request_does_not_kill_the_server(server):
    srv, _ = server
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(srv.path))
        s.sendall(b"\xff\xfe not json\n")
        reply = json.loads(s.recv(4096))
    assert reply["ok"] is False
    assert request(srv.path, "status")["config_version"] == 3


def test_cli_status_without_service_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "shadowd", "status", "--socket", str(tmp_path / "none.sock")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no shadowd service answers")


def test_cli_status_prometheus_reads_a_live_server(server):
    srv, _ = server
    proc = subprocess.run(
        [sys.executable, "-m", "shadowd", "status", "--prometheus", "--socket", str(srv.path)],
        capture_output=True, text=True, check=True,
    )
    assert "shadowd_rates_vehicle_hz 100.0" in proc.stdout
    assert "shadowd_config_version 3" in proc.stdout


def test_sd_notify_sends_ready_and_watchdog_to_the_notify_socket(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_interval_s == 1.0
        n.ready("ingesting")
        n.watchdog()
        assert rx.recv(1024) == b"READY=1\nSTATUS=ingesting"
        assert rx.recv(1024) == b"WATCHDOG=1"
        n.close()


def test_sd_notify_outside_systemd_is_a_no_op():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False


def test_watchdog_for_another_pid_is_not_ours():
    n = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval_s is None


def test_prometheus_text_labels_and_types():
    text = to_prometheus({
        "spool": {"clips": {"__label__": "priority", "0": 3, "5": 1}, "disk_full": False},
        "model": {"latency_ms": {"__label__": "quantile", "0.5": 1.25}, "ep": "CPUExecutionProvider"},
        "notes": ["ignored"],
    })
    assert text.splitlines() == [
        'shadowd_spool_clips{priority="0"} 3',
        'shadowd_spool_clips{priority="5"} 1',
        "shadowd_spool_disk_full 0",
        'shadowd_model_latency_ms{quantile="0.5"} 1.25',
        'shadowd_model_ep_info{value="CPUExecutionProvider"} 1',
    ]
