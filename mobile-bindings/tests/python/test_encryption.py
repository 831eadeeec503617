"""Encryption keys through the generated Python bindings: a key that does not fit the file is
its own error, SyncError.WrongKey, in a library built with the `encryption` feature and in one
built without it (which refuses any key rather than write plaintext)."""

import pytest

import session_sync as ss

MARKER = b"Okapi-Plaintext-Marker-3C1D"


def config(**kw):
    return ss.DatabaseConfig(**kw)


def test_a_key_that_does_not_fit_is_wrong_key(workdir):
    path = str(workdir / "secret.db")
    key = "ab" * 32
    try:
        db = ss.SyncDatabase.open(path, config(encryption_key=key))
    except ss.SyncError.WrongKey as e:
        # Built without encryption: the key is refused before anything is created.
        assert "no encryption" in str(e)
        assert not (workdir / "secret.db").exists()
        return
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", [])
    db.execute("INSERT INTO t VALUES (1, ?1)", [MARKER.decode()])
    db.shutdown()
    before = (workdir / "secret.db").read_bytes()
    assert MARKER not in before
    with pytest.raises(ss.SyncError.WrongKey, match="does not open"):
        ss.SyncDatabase.open(path, config(encryption_key="cd" * 32))
    with pytest.raises(ss.SyncError.WrongKey, match="encryption key"):
        ss.SyncDatabase.open(path, config())
    with pytest.raises(ss.SyncError.WrongKey):
        ss.SyncDatabase.open(path, config(encryption_key="a passphrase"))
    assert (workdir / "secret.db").read_bytes() == before
    db = ss.SyncDatabase.open(path, config(encryption_key=key))
    assert [list(r) for r in db.query("SELECT v FROM t", []).rows] == [[MARKER.decode()]]
    db.shutdown()


def encryption_built(workdir):
    try:
        ss.SyncDatabase.open(str(workdir / "probe.db"), config(encryption_key="ef" * 32)).shutdown()
        return True
    except ss.SyncError.WrongKey:
        return False


def test_a_file_that_is_not_plain_sqlite_opened_without_a_key(workdir):
    # With encryption built in it may be an encrypted copy: WrongKey; without, it is no
    # database this library could have made: Corruption, as before.
    expected = ss.SyncError.WrongKey if encryption_built(workdir) else ss.SyncError.Corruption
    path = workdir / "noise.db"
    path.write_bytes(bytes(range(256)) * 16)
    before = path.read_bytes()
    with pytest.raises(expected):
        ss.SyncDatabase.open(str(path), config()).query("SELECT 1", [])
    assert path.read_bytes() == before
