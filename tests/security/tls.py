"""A throwaway certificate authority (openssl CLI) and a mosquitto that speaks only TLS,
with a password file, as deploy/mosquitto/mosquitto.conf describes for port 8883."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Mosquitto

#: The broker's users in the tests that need authentication: (name, password).
INGEST_USER = ("slopewatch-ingest", "mqtt-secret-7Qv2pL9x")
GATEWAY_USER = ("M1", "gw-secret-Kd83jZq1")


@dataclass(frozen=True, slots=True)
class Pki:
    ca_cert: Path
    server_cert: Path  # for 127.0.0.1 and localhost, signed by the CA
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("the openssl command is needed to make the test certificates: apt-get install openssl")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1, valid for a day (EC P-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=Slopewatch test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        "subjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    os.chmod(directory / "server.key", 0o600)
    return Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")


def tls_mosquitto(workdir: Path, pki: Pki, *, passwords: bool = False) -> Mosquitto:
    """A mosquitto with one TLS listener on 127.0.0.1 (no plain one); with ``passwords``,
    anonymous clients are refused and :data:`INGEST_USER` and :data:`GATEWAY_USER` exist."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir)
    auth = "allow_anonymous true\n"
    if passwords:
        passwd = workdir / "passwd"
        passwd.touch(mode=0o600)
        for user, password in (INGEST_USER, GATEWAY_USER):
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
        auth = f"allow_anonymous false\npassword_file {passwd}\n"
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\n"
        f"certfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\n"
        "tls_version tlsv1.2\n"
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"{auth}"
        "max_inflight_messages 1000\n"
        "max_queued_messages 0\n"
        "persistence false\n"
        f"log_dest file {workdir}/mosquitto.log\n"
    )
    return broker
