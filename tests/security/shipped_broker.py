"""A mosquitto started with the shipped deploy/mosquitto/mosquitto.conf and a
dynamic-security file made by ``slopewatch broker init``.

Only what cannot be the same on a test machine is changed, and every change must find
its line (a changed shipped file fails here, not silently): the ports (the bind
addresses stay), the container paths, the log destination, and the user to run as.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cli.main import main as slopewatch
from cli.runtime import free_port
from core.settings import MqttTarget
from ingest import dynsec
from tests.conftest import Mosquitto
from tests.security.tls import Pki

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def dynsec_plugin() -> str:
    found = sorted(
        glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    if not found:
        raise RuntimeError("mosquitto_dynamic_security.so not found: apt-get install mosquitto (Debian ships it)")
    return found[0]


def _sub(pattern: str, replacement: str, text: str) -> str:
    out, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if n != 1:
        raise AssertionError(f"the shipped mosquitto.conf has {n} lines matching {pattern!r}, expected 1")
    return out


@dataclass(frozen=True, slots=True)
class Accounts:
    """What ``slopewatch broker init`` printed: the passwords, shown once."""

    admin: str
    ingest: str
    gateways: dict[str, str]


def parse_init_output(text: str) -> Accounts:
    passwords: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("  "):
            user, password, *_ = line.strip().split("\t")
            passwords[user] = password
    admin = passwords.pop(dynsec.ADMIN_USER)
    ingest = next(v for k, v in passwords.items() if k.startswith(dynsec.INGEST_USER_PREFIX))
    gateways = {k: v for k, v in passwords.items() if not k.startswith(dynsec.INGEST_USER_PREFIX)}
    return Accounts(admin, ingest, gateways)


class ShippedMosquitto(Mosquitto):
    """``port`` is the plain listener (loopback only, as shipped); ``tls_port`` the TLS one."""

    def __init__(self, workdir: Path, pki: Pki, dynsec_file: Path) -> None:
        super().__init__(workdir)
        self.tls_port = free_port()
        (workdir / "data").mkdir(exist_ok=True)
        text = SHIPPED_CONF.read_text()
        text = _sub(r"^listener 1883 127\.0\.0\.1$", f"listener {self.port} 127.0.0.1", text)
        text = _sub(r"^listener 8883$", f"listener {self.tls_port}", text)
        text = _sub(r"^persistence_location /mosquitto/data/$", f"persistence_location {workdir}/data/", text)
        text = _sub(r"^plugin /usr/lib/mosquitto_dynamic_security\.so$", f"plugin {dynsec_plugin()}", text)
        text = _sub(r"^plugin_opt_config_file .*$", f"plugin_opt_config_file {dynsec_file}", text)
        text = _sub(r"^certfile /mosquitto/config/certs/server\.crt$", f"certfile {pki.server_cert}", text)
        text = _sub(r"^keyfile /mosquitto/config/certs/server\.key$", f"keyfile {pki.server_key}", text)
        text = _sub(r"^log_dest stdout$", f"log_dest file {workdir}/mosquitto.log", text)
        # Started as root, mosquitto would switch to the user "mosquitto": stay who we are.
        text += f"\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
        self.conf.write_text(text)
        self.dynsec_file = dynsec_file

    def account(self, username: str, password: str) -> MqttTarget:
        return MqttTarget(self.host, self.port, username=username, password=password)

    @property
    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def init_accounts(dynsec_file: Path, capsys: object, *, gateways: tuple[str, ...] = ()) -> Accounts:
    """Run ``slopewatch broker init`` as an operator would and read the passwords it printed."""
    args = ["broker", "init", str(dynsec_file), "--ingest-workers", "2"]
    for mine in gateways:
        args += ["--gateway", mine]
    assert slopewatch(args) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    json.loads(dynsec_file.read_text())  # valid JSON, or the broker would not start
    return parse_init_output(out)


def listening_addresses(port: int) -> set[str]:
    """The local IPv4 addresses a TCP socket listens on at ``port`` (/proc/net/tcp)."""
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        host_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(host_hex)[::-1]))
    return found


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the route picks the interface
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address
