"""A real nginx (Debian nginx-light, WebDAV PUT) on loopback, and a throwaway PKI for it.

Owns: writing an nginx config into a private directory, starting nginx in the foreground as a
child process, waiting until it accepts connections, and stopping it. Used by the upload
benchmark and (through tests/fixtures/nginx.py) by the upload and end-to-end tests. Not a
benchmark itself (the leading underscore keeps ``shadowd bench`` from listing it).

Rules: everything lives under the directory it is given (config, pid, logs, temp paths, the
served root); nothing touches /etc/nginx or /var. Fault switches are files: when
``<dir>/switch/<code>`` exists, every request is answered with that HTTP status (503, 403,
507, ...), so a test flips a server fault with one ``touch``.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ShadowdError

SWITCH_CODES = (400, 403, 404, 500, 503, 507)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Pki:
    """Paths of a test CA, a server certificate for 127.0.0.1/localhost and a client cert."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed nothing the server uses (for "wrong CA" tests)


def make_pki(directory: Path) -> Pki:
    """Create a CA, a server cert (SAN 127.0.0.1, localhost) and a client cert under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path: Path, obj) -> Path:
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    def ca(cn):
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
                .sign(k, hashes.SHA256()))
        return k, cert

    def leaf(ca_key, ca_cert, cn, san, eku):
        k = key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_cert.subject)
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    ca_k, ca_c = ca("shadowd test CA")
    other_k, other_c = ca("shadowd unrelated CA")
    srv_k, srv_c = leaf(ca_k, ca_c, "localhost",
                        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                        ExtendedKeyUsageOID.SERVER_AUTH)
    cli_k, cli_c = leaf(ca_k, ca_c, "vehicle-test-0001", None, ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca_cert=write(directory / "ca.pem", ca_c), ca_key=write(directory / "ca.key", ca_k),
        server_cert=write(directory / "server.pem", srv_c), server_key=write(directory / "server.key", srv_k),
        client_cert=write(directory / "client.pem", cli_c), client_key=write(directory / "client.key", cli_k),
        other_ca_cert=write(directory / "other-ca.pem", other_c),
    )


class LoopbackNginx:
    """nginx serving ``root`` with WebDAV PUT on 127.0.0.1:``port`` (plain, TLS or mTLS).

    ``start()`` returns when nginx accepts connections; ``stop()`` terminates it (also on
    ``__exit__``). ``url`` is the base URL. ``set_fault(code)`` / ``clear_faults()`` flip the
    switch files. ``root`` may be given (e.g. a small tmpfs for disk-full tests); then the body
    temp path lives inside it too, as a real server with one data volume would have it.
    """

    def __init__(self, directory: Path, *, tls: Pki | None = None, mtls: bool = False,
                 root: Path | None = None, port: int | None = None):
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            raise ShadowdError("nginx is not installed; run scripts/setup (Debian package nginx-light)")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(root) if root else self.dir / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.switch_dir = self.dir / "switch"
        self.switch_dir.mkdir(exist_ok=True)
        self.tls = tls
        self.mtls = mtls
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def _config(self) -> str:
        d = self.dir
        body_temp = self.root / ".nginx_body_temp"
        body_temp.mkdir(exist_ok=True)
        tls = ""
        if self.tls:
            tls = (f"ssl_certificate {self.tls.server_cert}; ssl_certificate_key {self.tls.server_key};\n"
                   "        ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:1m;\n")
            if self.mtls:
                tls += f"        ssl_client_certificate {self.tls.ca_cert}; ssl_verify_client on;\n"
        switches = "".join(
            f"            if (-f {self.switch_dir}/{code}) {{ return {code}; }}\n" for code in SWITCH_CODES)
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format up '$request_method $uri $status $request_length $http_x_amz_checksum_sha256';
    access_log {d}/access.log up;
    client_body_temp_path {body_temp};
    proxy_temp_path {d}/proxy_temp; fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp; scgi_temp_path {d}/scgi_temp;
    sendfile on;
    keepalive_timeout 30s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{self.port}{' ssl' if self.tls else ''};
        {tls}
        client_max_body_size 0;
        client_body_buffer_size 1m;
        location / {{
            root {self.root};
{switches}            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            autoindex on;
            autoindex_format json;
        }}
    }}
}}
"""

    def start(self, timeout_s: float = 10.0) -> "LoopbackNginx":
        conf = self.dir / "nginx.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = (self.dir / "error.log").read_text() if (self.dir / "error.log").exists() else ""
                raise ShadowdError(f"nginx exited with {self.proc.returncode}: {err.strip()} {log[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise ShadowdError(f"nginx did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def set_fault(self, code: int) -> None:
        if code not in SWITCH_CODES:
            raise ValueError(f"fault code {code} has no switch; use one of {SWITCH_CODES}")
        (self.switch_dir / str(code)).touch()

    def clear_faults(self) -> None:
        for p in self.switch_dir.iterdir():
            p.unlink()

    def __enter__(self) -> "LoopbackNginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
