"""The transport: OpenSSH's client, one master connection reused for the whole run.

The user's OpenSSH configuration applies as it is (~/.ssh/config: identity, port, known hosts, jump
hosts); the run adds only what it needs: BatchMode (never a password prompt in CI), its own
ControlMaster socket in a private 0700 folder, keep-alives, and StrictHostKeyChecking=yes where the
configuration leaves it at OpenSSH's default ("ask"): an unknown or changed host key is an error
naming the fix, never accepted silently.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .boards import RemoteBoard


class BoardError(Exception):
    """The board could not be reached or the connection broke; the message is one line naming the
    board and the cause."""


# (what ssh says, the cause in our words) in the order they are tried
_CAUSES = (
    (
        "REMOTE HOST IDENTIFICATION HAS CHANGED",
        "its host key CHANGED since known_hosts recorded it (a reinstalled board, or someone in between): check it, then remove the old key with `ssh-keygen -R {host}` and connect once with `ssh {dest}`",
    ),
    (
        "Host key verification failed",
        "its host key is not in known_hosts: check the key and add it (`ssh-keyscan {port_flag}{host} >> ~/.ssh/known_hosts`, or connect once with `ssh {dest}`)",
    ),
    ("No ED25519 host key is known", "its host key is not in known_hosts: add it with `ssh-keyscan {port_flag}{host} >> ~/.ssh/known_hosts`"),
    (
        "Permission denied",
        "authentication failed: install the run's public key in the board's ~/.ssh/authorized_keys (ssh-copy-id {dest}) or name the key (IdentityFile) in ~/.ssh/config or the devices file",
    ),
    ("Connection refused", "connection refused: no SSH server listens there (the board is off, booting, or sshd stopped)"),
    ("timed out", "connection timed out: the board is unreachable (off, another network, a firewall)"),
    ("Could not resolve hostname", "its host name does not resolve"),
    ("No route to host", "no route to the board"),
    ("closed by remote host", "connection lost (the board rebooted, or its sshd stopped)"),
    ("Connection reset", "connection lost (the board rebooted, or its sshd stopped)"),
    ("Broken pipe", "connection lost (the board rebooted, or its sshd stopped)"),
)


def cause_of(stderr: str, board: RemoteBoard) -> str:
    """One line for what ssh's stderr says went wrong."""
    port_flag = f"-p {board.port} " if board.port else ""
    for needle, text in _CAUSES:
        if needle.lower() in stderr.lower():
            return text.format(host=board.host, dest=board.destination + (f" -p {board.port}" if board.port else ""), port_flag=port_flag)
    said = ssh_lines(stderr)
    return f"ssh failed: {said[-1]}" if said else "connection lost (the board rebooted, or its sshd stopped)"


def ssh_lines(stderr: str) -> list[str]:
    """What ssh itself said, among the remote command's own stderr (a runtime's warnings)."""
    return [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith(("ssh:", "ssh_", "client_loop", "Connection ", "kex_", "Received disconnect"))]


class Connection:
    """One SSH master connection to a board for the run; commands run through it."""

    def __init__(self, board: RemoteBoard, connect_timeout_s: int = 10):
        self.board = board
        self.connect_timeout_s = connect_timeout_s
        self._dir = Path(tempfile.mkdtemp(prefix="e3p-ssh-"))  # 0700: only this user reaches the socket
        self.control_path = self._dir / "cm"
        self._options = self._run_options()

    def _config_args(self) -> list[str]:
        args = ["-F", str(self.board.ssh_config)] if self.board.ssh_config else []
        if self.board.port:
            args += ["-p", str(self.board.port)]
        for option in self.board.ssh_options:
            args += ["-o", option]
        return args

    def _effective(self) -> dict[str, str]:
        """What the user's configuration sets for this board (`ssh -G`): only what is unset is ours to set."""
        if shutil.which("ssh") is None:
            raise BoardError(f"{self.board.describe()}: the OpenSSH client (ssh) is not installed on this host")
        done = subprocess.run(["ssh", "-G", *self._config_args(), self.board.destination], capture_output=True, text=True)
        pairs = (line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
        return {k.lower(): v for k, v in pairs}

    def _run_options(self) -> list[str]:
        effective = self._effective()
        extra = ["-o", "BatchMode=yes", "-o", f"ControlPath={self.control_path}"]
        if effective.get("stricthostkeychecking", "ask") == "ask":  # OpenSSH's default: never ask, refuse
            extra += ["-o", "StrictHostKeyChecking=yes"]
        if effective.get("connecttimeout", "none") == "none":
            extra += ["-o", f"ConnectTimeout={self.connect_timeout_s}"]
        if effective.get("serveraliveinterval", "0") == "0":  # a board that vanishes is noticed in seconds
            extra += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        return self._config_args() + extra

    def open(self) -> None:
        """The master connection (authenticated now, so a refusal is said once, before any case)."""
        log = self._dir / "master.log"
        done = subprocess.run(
            ["ssh", *self._options, "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-E", str(log), "-f", "-N", self.board.destination],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            said = (log.read_text() if log.exists() else "") + done.stderr
            raise BoardError(f"{self.board.describe()}: {cause_of(said, self.board)}")

    def alive(self) -> bool:
        """Whether the master connection still runs: after a command ended with ssh's 255 and no
        word, it tells a dead link from a remote process killed by a signal (ssh reports both as 255)."""
        done = subprocess.run(["ssh", *self._options, "-O", "check", self.board.destination], stdin=subprocess.DEVNULL, capture_output=True, check=False)
        return done.returncode == 0

    def command(self, remote: list[str]) -> list[str]:
        """The ssh command line that runs `remote` (an argv, quoted for the board's shell)."""
        return ["ssh", *self._options, "-o", "ControlMaster=no", self.board.destination, "--", " ".join(shlex.quote(a) for a in remote)]

    def run(self, remote: list[str], data: bytes = b"", timeout_s: float = 120.0) -> bytes:
        """Run a command on the board; its stdout. BoardError on an SSH failure."""
        try:
            done = subprocess.run(self.command(remote), input=data, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BoardError(f"{self.board.describe()}: no answer in {timeout_s:.0f} s") from None
        if done.returncode == 255:
            raise BoardError(f"{self.board.describe()}: {cause_of(done.stderr.decode(errors='replace'), self.board)}")
        if done.returncode != 0:
            last = done.stderr.decode(errors="replace").strip().splitlines()
            raise BoardError(f"{self.board.describe()}: `{' '.join(remote)[:80]}` exited {done.returncode}: {last[-1] if last else ''}")
        return done.stdout

    def stream(self, remote: list[str], data: bytes) -> Iterator[bytes]:
        """Run a command, sending `data` on its stdin; yield its stdout lines as they come. A failure of
        the link raises BoardError once the lines stop; the exit status is `self.last_status`."""
        proc = subprocess.Popen(self.command(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the lines and the status below say why
        try:
            yield from proc.stdout
        finally:
            if proc.poll() is None:
                proc.kill()
            self.last_status = proc.wait()
            self.last_stderr = proc.stderr.read().decode(errors="replace")
            proc.stdout.close()
            proc.stderr.close()

    def popen(self, remote: list[str]) -> subprocess.Popen:
        """A long-running command (the board's lock), its stdin and stdout pipes open."""
        return subprocess.Popen(self.command(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def close(self) -> None:
        """Stop the master and remove the private folder."""
        if self.control_path.exists():
            subprocess.run(
                ["ssh", *self._options, "-O", "exit", self.board.destination], stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False
            )
        shutil.rmtree(self._dir, ignore_errors=True)
