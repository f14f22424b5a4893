"""A real OpenSSH server on a free loopback port, as a "board" for the remote tests: its own host key,
a client key in its authorized keys, and a known_hosts file holding its host key.

And the board's interpreter: this venv's Python started with -S and a path of links to its
site-packages without pytest-e3p, so the agent runs where the package cannot be imported (torch can).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        self.port = free_port()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        authorized = folder / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        os.chmod(authorized, 0o600)
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line(self.host_key))
        self.config = folder / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin yes",
                    "StrictModes no",
                    "UsePAM no",
                    "PidFile none",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        self.proc = None

    def known_hosts_line(self, host_key):
        kind, key = Path(str(host_key) + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def start(self):
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stderr=open(self.folder / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def kill(self):
        """sshd and every session it forked: the board is gone, as when it reboots."""
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def ssh_options(self):
        return [f"UserKnownHostsFile={self.known_hosts}", f"IdentityFile={self.client_key}", "IdentitiesOnly=yes", "GlobalKnownHostsFile=/dev/null"]


def descendants(pid):
    """The processes below pid, deepest last, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def board_python(folder: Path) -> Path:
    """An interpreter for the board: this Python with -S, on a path of links to site-packages' entries
    except pytest-e3p's (its editable finder and .pth files are never processed under -S)."""
    site = Path(sysconfig.get_paths()["purelib"])
    libs = folder / "board-site"
    libs.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("pytest_e3p", "__editable__", "_pytest_e3p")) or name.endswith(".pth"):
            continue
        link = libs / entry.name
        if not link.exists():
            link.symlink_to(entry)
    script = folder / "board-python"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={libs} exec {sys.executable} -S "$@"\n')
    script.chmod(0o755)
    return script
