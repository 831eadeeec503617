"""Bring-your-own auth through the generated bindings: a Python credentials provider hands out
HS256 JWTs (minted here with the standard library) to a live sync-server that verifies them."""

import base64
import hashlib
import hmac
import json
import pathlib
import tempfile
import time

import pytest

import session_sync as ss
from conftest import Server

SECRET = b"the python HS256 secret, at least thirty-two bytes"
AUD = "session-sync"
ISS = "https://id.example.test/"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(ttl: int, device: str = "py-phone") -> str:
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {
        "iss": ISS, "aud": AUD, "sub": "alice", "device": device,
        "iat": now, "exp": now + ttl,
        "sync": {"databases": {"notes": "rw"}},
    }
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


@pytest.fixture
def jwt_server():
    with tempfile.TemporaryDirectory() as d:
        secret = pathlib.Path(d) / "jwt-secret"
        secret.write_bytes(SECRET + b"\n")
        s = Server(pathlib.Path(d) / "data")
        s.start(
            "--jwt-secret-file", str(secret),
            "--jwt-audience", AUD,
            "--jwt-issuer", ISS,
            "--jwt-leeway-secs", "0",
        )
        try:
            yield s
        finally:
            s.stop()


class Provider(ss.CredentialsProvider):
    """The first token lives two seconds; refreshed ones five minutes."""

    def __init__(self):
        self.refreshes = 0
        self.given = []

    def token(self, refresh):
        if refresh:
            self.refreshes += 1
        t = mint(300 if refresh else 2)
        self.given.append(t)
        return t


class SignedOut(ss.CredentialsProvider):
    def token(self, refresh):
        raise ss.CredentialsError.Unavailable(reason="signed out")


def config(server):
    return ss.DatabaseConfig(server_url=server.url, database="notes")


def test_a_provider_refreshes_after_a_401_and_no_token_is_stored(jwt_server, workdir):
    jwt_server.new_database("owner", "notes")
    provider = Provider()
    path = workdir / "phone.db"
    db = ss.SyncDatabase.open_with_credentials(str(path), config(jwt_server), provider)
    insert = "INSERT INTO notes(id, title, body, updated_at) VALUES ({0}, 'n{0}', '', 1)"
    db.execute(insert.format(1), [])
    db.sync_now()
    assert provider.refreshes == 0
    time.sleep(3.2)  # the first token's `exp` second passes
    db.execute(insert.format(2), [])
    db.sync_now()
    assert provider.refreshes == 1
    db.shutdown()
    files = path.read_bytes() + (pathlib.Path(str(path) + "-wal").read_bytes()
                                 if pathlib.Path(str(path) + "-wal").exists() else b"")
    for t in provider.given:
        assert t.encode() not in files
    # A second device sees both rows through the server.
    other = ss.SyncDatabase.open_with_credentials(str(workdir / "tablet.db"), config(jwt_server), Provider())
    assert other.query("SELECT count(*) FROM notes", []).rows == [[2]]
    other.shutdown()


def test_a_provider_that_cannot_give_a_token_is_an_auth_error(jwt_server, workdir):
    jwt_server.new_database("owner", "notes")
    with pytest.raises(ss.SyncError.Auth):
        ss.SyncDatabase.open_with_credentials(str(workdir / "x.db"), config(jwt_server), SignedOut())
    assert not (workdir / "x.db").exists()
