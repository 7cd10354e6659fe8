"""A loopback SSH server for the deploy tests: the "board" on the far side of a real OpenSSH
client. Prefers the system's sshd; without one (none here, maybe none in CI) a pure-Python
asyncssh server with exec, SFTP and SCP, rooted in its own home folder.

As a script (what the fixture starts): `python ssh_loopback.py HOME HOST_KEY AUTHORIZED_KEYS`
prints `PORT <n>` once listening and serves until killed. Exec'd commands run through
`/bin/sh -c` in HOME with the environment it was started with (the test sets BOARD there).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


async def _pump(reader, write, close=None) -> None:
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        write(chunk)
    if close:
        close()


async def _handle(process) -> None:
    """Run the client's command in a shell, streaming its stdio both ways."""
    if not process.command:
        process.stderr.write(b"interactive shells are not offered\n")
        process.exit(1)
        return
    proc = await asyncio.create_subprocess_shell(process.command, stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def feed_stdin() -> None:
        try:
            await _pump(process.stdin, proc.stdin.write, proc.stdin.close)
        except Exception:   # the client went away: the command sees EOF
            proc.stdin.close()

    feeder = asyncio.ensure_future(feed_stdin())
    await asyncio.gather(_pump(proc.stdout, process.stdout.write), _pump(proc.stderr, process.stderr.write))
    code = await proc.wait()
    feeder.cancel()
    process.exit(code if code >= 0 else 128 - code)


async def _serve(host_key: str, authorized_keys: str) -> None:
    import asyncssh

    class SFTPServer(asyncssh.SFTPServer):
        def exit(self) -> None:
            # asyncssh closes SFTP sessions without an exit status; OpenSSH's scp (SFTP mode)
            # then reports failure although every file arrived. Send 0 like sshd does.
            self.channel.exit(0)

    server = await asyncssh.create_server(
        asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized_keys,
        process_factory=_handle, sftp_factory=SFTPServer, allow_scp=True, encoding=None)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await server.wait_closed()


@dataclass
class Loopback:
    """A running server: connect with `ssh -p port -i client_key user@127.0.0.1`."""

    port: int
    client_key: Path
    known_hosts: Path
    home: Path
    proc: subprocess.Popen
    kind: str

    def ssh_options(self) -> list[str]:
        return ["StrictHostKeyChecking=no", f"UserKnownHostsFile={self.known_hosts}", "LogLevel=ERROR"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _keys(folder: Path) -> tuple[Path, Path, Path]:
    import asyncssh

    host_key, client_key = folder / "host_key", folder / "client_key"
    for path in (host_key, client_key):
        key = asyncssh.generate_private_key("ssh-ed25519")
        path.write_bytes(key.export_private_key("openssh"))
        path.chmod(0o600)
        path.with_suffix(".pub").write_bytes(key.export_public_key("openssh"))
    authorized = folder / "authorized_keys"
    authorized.write_bytes(client_key.with_suffix(".pub").read_bytes())
    authorized.chmod(0o600)
    return host_key, client_key, authorized


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_sshd(sshd: str, folder: Path, home: Path, host_key: Path, authorized: Path, env: dict) -> tuple:
    """The system sshd in the foreground on a free loopback port (runs commands as this user,
    in this user's real home: the tests use absolute remote paths)."""
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
                      f"PidFile {folder / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                      "Subsystem sftp internal-sftp\n"
                      + "".join(f"SetEnv {k}={v}\n" for k, v in env.items()))
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port, proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("sshd did not start")


def start(folder: Path, env: dict) -> Loopback:
    """Start a loopback server whose commands see `env` added to this environment."""
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    host_key, client_key, authorized = _keys(folder)
    known = folder / "known_hosts"
    sshd = shutil.which("sshd") or (shutil.which("sshd", path="/usr/sbin:/usr/local/sbin"))
    if sshd:
        port, proc = _start_sshd(sshd, folder, home, host_key, authorized, env)
        return Loopback(port, client_key, known, home, proc, "sshd")
    proc = subprocess.Popen([sys.executable, __file__, str(home), str(host_key), str(authorized)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **env}, cwd=home)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"asyncssh server did not start: {line!r}")
    return Loopback(int(line.split()[1]), client_key, known, home, proc, "asyncssh")


if __name__ == "__main__":
    home_dir, key, authorized_keys = sys.argv[1:4]
    os.chdir(home_dir)
    asyncio.run(_serve(key, authorized_keys))
