"""Fixtures: a real sync-server process on 127.0.0.1 (port 0), admin commands through the
same binary, and the generated `session_sync` Python module."""

import os
import pathlib
import subprocess
import tempfile

import pytest

SERVER_BIN = os.environ.get("SYNC_SERVER_BIN", "target/debug/sync-server")


class Server:
    def __init__(self, data_dir: pathlib.Path):
        self.data_dir = data_dir
        self.proc = None
        self.url = None

    def admin(self, *args: str) -> str:
        out = subprocess.run(
            [SERVER_BIN, "--data", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def start(self, *serve_args: str):
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--data", str(self.data_dir), "serve", "--listen", "127.0.0.1:0", *serve_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.proc.stdout:
            if line.startswith("sync-server listening on "):
                self.url = line.split(" on ", 1)[1].strip()
                return
        raise RuntimeError("sync-server exited before listening")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def new_database(self, user: str, db: str) -> None:
        try:
            self.admin("user", "add", user)
        except subprocess.CalledProcessError:
            pass  # already exists
        self.admin("db", "create", db, "--owner", user)

    def token(self, user: str, device: str) -> str:
        return self.admin("token", "issue", user, "--device", device)


@pytest.fixture
def server():
    with tempfile.TemporaryDirectory() as d:
        s = Server(pathlib.Path(d) / "data")
        s.start()
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture
def rejecting_server():
    """A server whose `notes` policy rejects a conflicting push."""
    with tempfile.TemporaryDirectory() as d:
        s = Server(pathlib.Path(d) / "data")
        s.start("--policy", "notes=reject")
        try:
            yield s
        finally:
            s.stop()


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield pathlib.Path(d)
