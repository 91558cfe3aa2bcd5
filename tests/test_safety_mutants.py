"""Exact safety rules that mutation testing found unguarded (docs/TESTING.md): the output
name-length boundary (the temporary suffix must fit too), temporary names and their
clean-up, `alems query`'s read-only authorizer, and the dashboard's token gate and
loopback check."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from alems import atomic_io, outputs
from alems.errors import AlemsError, UsageError
from alems.store import reads

# ------------------------------------------------------------------ output names


def _name_max(folder) -> int:
    return os.pathconf(folder, "PC_NAME_MAX")


def test_longest_accepted_name_leaves_room_for_the_temporary_suffix(tmp_path):
    """`.<name>.<pid>.tmp` must fit the file system's name limit for a pid of up to 10
    digits: the longest name accepted is NAME_MAX - 16 bytes, and it really is writable
    through its temporary file."""
    longest = _name_max(tmp_path) - 16
    ok = tmp_path / ("a" * longest)
    assert outputs.check_output_path(ok) == ok
    with atomic_io.atomic_target(ok) as tmp:
        assert len(tmp.name) <= _name_max(tmp_path)
        tmp.write_text("x")
    assert ok.read_text() == "x"
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / ("a" * (longest + 1)), "--summary-json")
    assert str(ei.value) == (f"--summary-json: the file name is {longest + 1} bytes long; "
                             f"this file system allows {longest} here")


def test_name_length_is_counted_in_bytes(tmp_path):
    longest = _name_max(tmp_path) - 16
    name = "é" * (longest // 2) + "a" * (longest % 2)          # exactly `longest` bytes
    assert outputs.check_output_path(tmp_path / name).name == name
    with pytest.raises(UsageError, match=f"is {longest + 2} bytes long"):
        outputs.check_output_path(tmp_path / (name + "é"))


def test_tmp_name_and_stale_temporaries(tmp_path):
    target = tmp_path / "out.parquet"
    assert atomic_io.tmp_path_for(target) == tmp_path / f".out.parquet.{os.getpid()}.tmp"
    dead = 2 ** 22 + 1                      # above the kernel's pid_max: never alive
    stale = [tmp_path / f".out.parquet.{dead}.tmp"]
    keep = [tmp_path / f".out.parquet.{os.getpid()}.tmp", tmp_path / f".out.parquet.{1}.tmp",
            tmp_path / f".other.parquet.{dead}.tmp", tmp_path / f"out.parquet.{dead}.tmp"]
    for p in stale + keep:
        p.write_text("")
    (tmp_path / f".out.parquet.{dead + 1}.tmp").mkdir()       # not a file: left alone
    assert sorted(atomic_io.remove_stale_tmp(target)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_output_folder_rules_are_one_line(tmp_path):
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / "no" / "f.json", "--output")
    assert str(ei.value) == (f"cannot write --output {tmp_path / 'no' / 'f.json'}: "
                             f"{tmp_path / 'no'} does not exist (create it first, or choose "
                             "another path)")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="file is not a directory"):
        outputs.check_output_path(tmp_path / "file" / "f.json")
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path, "--output")
    assert str(ei.value) == f"--output {tmp_path} is a directory; give a regular file name"
    with pytest.raises(UsageError, match="give a file name"):
        outputs.check_output_path("/")
    (tmp_path / "ds").mkdir()
    assert outputs.check_output_path(tmp_path / "ds", folder=True) == tmp_path / "ds"
    (tmp_path / "ds" / "x").write_text("")
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / "ds", "--out", folder=True)
    assert str(ei.value) == (f"--out {tmp_path / 'ds'} exists and is not an empty directory; "
                             "give a new or empty one")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".probe")]


def test_fifo_is_written_directly_and_never_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert atomic_io.writes_directly(fifo) and not atomic_io.writes_directly(tmp_path / "none")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)     # a FIFO is written when read
    try:
        assert outputs.check_output_path(fifo) == fifo
    finally:
        os.close(reader)
    with pytest.raises(AlemsError) as ei:
        atomic_io.safe_replace(tmp_path / "src", fifo)
    assert str(ei.value) == f"cannot write {fifo}: it is a FIFO, which is never replaced"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_failed_write_leaves_neither_target_nor_temporary(tmp_path):
    target = tmp_path / "t.json"
    with pytest.raises(RuntimeError), atomic_io.atomic_target(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_nobody_reads_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError) as ei:                    # never a write that blocks
        outputs.check_output_path(fifo, "--summary-json")
    assert str(ei.value) == (f"--summary-json {fifo} is a FIFO that nobody reads; start its "
                             "reader first, or give a regular file name")


def test_an_unwritable_folder_is_named_with_the_reason():
    target = Path("/sys/alems-output.csv")   # sysfs: not even root may create a file there
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(target)
    msg = str(ei.value)
    head, tail = f"cannot write --output {target}: ", "; choose a writable location"
    assert msg.startswith(head) and msg.endswith(tail), msg
    reason = msg[len(head):-len(tail)]
    assert reason and "Errno" not in reason and "None" not in reason, msg


def test_free_space_is_asked_of_the_target_folder_and_enough_is_enough(monkeypatch, tmp_path):
    import shutil
    from collections import namedtuple

    asked = []
    usage = namedtuple("usage", "total used free")

    def disk_usage(folder):
        asked.append(Path(folder))
        return usage(10**12, 0, 250 * 10**9)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    target = tmp_path / "sub" / "out.parquet"
    outputs.check_free_space(target, 250 * 10**9)            # exactly what is free: enough
    assert asked == [tmp_path / "sub"]
    with pytest.raises(AlemsError) as ei:
        outputs.check_free_space(target, 250 * 10**9 + 1, what="--samples")
    assert str(ei.value) == (f"--samples {target}: only 250000.0 MB free on its file system, "
                             "about 250000.0 MB are needed; free space or choose another "
                             "location")


def test_another_users_link_is_never_an_output(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = shared / "out.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    os.lchown(link, 12345, 12345)
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(link, "--export")
    assert str(ei.value) == (f"--export {link} is a symlink owned by another user (uid 12345) "
                             f"in the shared folder {shared}; it is never followed, remove it "
                             "or choose another name")


def test_name_limit_when_the_file_system_does_not_say(monkeypatch, tmp_path):
    def no_answer(path, name):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "pathconf", no_answer)
    longest = "n" * (255 - atomic_io.TMP_EXTRA_CHARS)
    assert outputs.check_output_path(tmp_path / longest).name == longest
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / (longest + "n"))
    assert str(ei.value) == (f"--output: the file name is {len(longest) + 1} bytes long; "
                             f"this file system allows {len(longest)} here")


def test_umask_mode_and_free_space(tmp_path):
    old = os.umask(0o027)
    try:
        assert atomic_io.umask_mode() == 0o640 and atomic_io.umask_mode(0o777) == 0o750
    finally:
        os.umask(old)
    with pytest.raises(AlemsError, match=r"only [\d.]+ MB free .* about 1000000000000.0 MB"):
        outputs.check_free_space(tmp_path / "x", 10 ** 18)
    outputs.check_free_space(tmp_path / "x", 0)


# ------------------------------------------------------------------ `alems query`

DENY, OK = sqlite3.SQLITE_DENY, sqlite3.SQLITE_OK


@pytest.mark.parametrize("action, arg1, arg2, want", [
    (sqlite3.SQLITE_SELECT, None, None, OK),
    (sqlite3.SQLITE_READ, "runs", "run_id", OK),
    (sqlite3.SQLITE_FUNCTION, None, "count", OK),
    (33, None, None, OK),                                    # SQLITE_RECURSIVE (CTE)
    (sqlite3.SQLITE_PRAGMA, "table_info", "runs", OK),
    (sqlite3.SQLITE_PRAGMA, "TABLE_INFO", "runs", OK),
    (sqlite3.SQLITE_PRAGMA, "user_version", None, OK),
    (sqlite3.SQLITE_PRAGMA, "user_version", "7", DENY),      # setting it
    (sqlite3.SQLITE_PRAGMA, "journal_mode", "delete", DENY),
    (sqlite3.SQLITE_PRAGMA, "writable_schema", None, DENY),
    (sqlite3.SQLITE_PRAGMA, None, None, DENY),
    (sqlite3.SQLITE_INSERT, "runs", None, DENY),
    (sqlite3.SQLITE_UPDATE, "runs", "status", DENY),
    (sqlite3.SQLITE_DELETE, "runs", None, DENY),
    (sqlite3.SQLITE_ATTACH, "/tmp/x.db", None, DENY),
    (sqlite3.SQLITE_DETACH, "x", None, DENY),
    (sqlite3.SQLITE_TRANSACTION, "BEGIN", None, DENY),
    (sqlite3.SQLITE_CREATE_TABLE, "t", None, DENY),
])
def test_read_only_authorizer_decisions(action, arg1, arg2, want):
    assert reads.read_only_authorizer(action, arg1, arg2, "main", None) == want


@pytest.fixture()
def qdb(tmp_path):
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.commit()
    return conn


def test_run_user_query_reads_and_refuses_writes(qdb, tmp_path):
    assert reads.run_user_query(qdb, "SELECT x, x * 2 AS y FROM t ORDER BY x") == (
        ["x", "y"], [(1, 2), (2, 4)])
    with pytest.raises(AlemsError) as ei:
        reads.run_user_query(qdb, f"ATTACH '{tmp_path / 'other.db'}' AS o")
    assert str(ei.value) == (
        "SQL error: not authorized (queries are read-only: no ATTACH, VACUUM INTO or setting "
        "PRAGMAs; pass --write to modify the database)")
    assert not (tmp_path / "other.db").exists()
    with pytest.raises(AlemsError, match=r"^SQL error: .*read-only: no ATTACH"):
        reads.run_user_query(qdb, "DELETE FROM t")
    with pytest.raises(AlemsError) as ei:
        reads.run_user_query(qdb, "SELECT 1; SELECT 2")
    assert str(ei.value) == "SQL error: You can only execute one statement at a time."
    with pytest.raises(AlemsError) as ei:
        reads.run_user_query(qdb, "SELECT nope FROM t")
    assert str(ei.value) == "SQL error: no such column: nope"
    assert qdb.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2


def test_run_user_query_write_and_the_gate_is_lifted_after(tmp_path):
    conn = sqlite3.connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    assert reads.run_user_query(conn, "INSERT INTO t VALUES (5)", write=True) == ([], [])
    assert sqlite3.connect(tmp_path / "w.db").execute("SELECT x FROM t").fetchall() == [(5,)]
    reads.run_user_query(conn, "SELECT x FROM t")
    conn.execute("PRAGMA query_only = OFF")          # the authorizer itself is gone
    conn.execute("INSERT INTO t VALUES (6)")


def test_errors_while_rows_are_read_or_committed_keep_sqlites_message(qdb, tmp_path):
    # an error is an AlemsError, never the KeyboardInterrupt kept for Ctrl-C (caught
    # broadly here so that such a mix-up fails this test instead of stopping the run)
    with pytest.raises(BaseException) as ei:
        reads.run_user_query(qdb, "SELECT nope FROM t")
    assert type(ei.value) is AlemsError
    # the second row overflows: the error comes while the rows are fetched
    with pytest.raises(AlemsError) as ei:
        reads.run_user_query(qdb, "SELECT abs(v) FROM (SELECT 1 AS v UNION ALL "
                                  "SELECT -9223372036854775808)")
    assert str(ei.value) == "SQL error: integer overflow"
    conn = sqlite3.connect(tmp_path / "fk.db")      # a deferred key fails only at commit
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    conn.commit()
    with pytest.raises(AlemsError) as ei:
        reads.run_user_query(conn, "INSERT INTO c VALUES (99)", write=True)
    assert str(ei.value) == "SQL error: FOREIGN KEY constraint failed"


RUNAWAY = ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) "
           "SELECT MAX(i) FROM c")


def test_runaway_query_is_stopped_by_timeout_or_interrupt(qdb):
    with pytest.raises(reads.QueryStopped) as ei:
        reads.run_user_query(qdb, RUNAWAY, timeout_s=0)
    assert str(ei.value) == ("query stopped after --timeout 0 s; narrow it (WHERE, LIMIT) "
                             "or give a longer --timeout")
    with pytest.raises(KeyboardInterrupt):
        reads.run_user_query(qdb, RUNAWAY, stop_requested=lambda: True)
    assert reads.run_user_query(qdb, "SELECT COUNT(*) FROM t", timeout_s=60) == (
        ["COUNT(*)"], [(2,)])
    # long enough for the progress check to run (>> PROGRESS_STEPS steps), well in time
    assert reads.run_user_query(qdb, RUNAWAY.replace("FROM c)", "FROM c WHERE i < 200000)"),
                                timeout_s=600) == (["MAX(i)"], [(200000,)])
    assert reads.run_user_query(qdb, RUNAWAY.replace("FROM c)", "FROM c WHERE i < 200000)"),
                                stop_requested=lambda: False) == (["MAX(i)"], [(200000,)])


# ------------------------------------------------------------------ dashboard access

def test_is_loopback():
    from alems.cli.dashboard_cmd import is_loopback

    for host in ("localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "example.com", "localhost.x"):
        assert not is_loopback(host), host


def test_safe_next_keeps_only_local_paths():
    pytest.importorskip("starlette")
    from alems.dashboard.access import local_path

    assert local_path("/group/g?x=1") == "/group/g?x=1"
    for bad in (None, "", "//evil.example/", "/\\evil.example/", "http://evil.example/",
                "group", "/x\r\nSet-Cookie: a=b"):
        assert local_path(bad) == "/"


TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture()
def gated(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.access import TOKEN_COOKIE
    from alems.dashboard.app import create_app
    from analysis_fixture import create_empty_db

    db = create_empty_db(tmp_path / "e.db")
    with TestClient(create_app(db, token=TOKEN), follow_redirects=False) as c:
        yield c, TOKEN_COOKIE


def test_token_gate_exact(gated):
    c, cookie = gated
    r = c.get("/group/g?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fgroup%2Fg%3Fx%3D1"
    assert c.get("/group/g").headers["location"] == "/login?next=%2Fgroup%2Fg"
    r = c.get("/api/live")
    assert (r.status_code, r.json()) == (401, {"error": "token required"})
    c.cookies.set(cookie, "wrong")
    assert c.get("/api/live").status_code == 401
    c.cookies.set(cookie, "")
    assert c.get("/api/live").status_code == 401
    assert c.get("/login").status_code == 200                 # open paths need no token
    c.cookies.clear()
    r = c.get(f"/group/g?token={TOKEN}&x=1")                    # the token once, in the URL
    assert r.status_code == 303 and r.headers["location"] == "/group/g?x=1"
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{cookie}={TOKEN};")
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert c.get(f"/group/g?token={TOKEN}").headers["location"] == "/group/g"
    assert c.get("/api/live").status_code != 401              # the cookie is enough now
    assert c.get("/api/live?token=wrong").status_code != 401  # a wrong URL token: the cookie


def test_login_form_needs_the_exact_token(gated):
    c, cookie = gated
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert c.post("/login", content=f"token={TOKEN[:-1]}&next=/x", headers=form).status_code == 401
    assert c.post("/login", content="token=&next=/x", headers=form).status_code == 401
    ok = c.post("/login", content=f"token={TOKEN}&next=/x", headers=form)
    assert ok.status_code == 303 and ok.headers["location"] == "/x"
    assert ok.headers["set-cookie"].startswith(f"{cookie}={TOKEN};")


def _gate_app(token=None, host="127.0.0.1", clock=None):
    """A one-route app behind the real AccessGate, its Attempts on a fake clock."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from alems.dashboard import access

    attempts = access.Attempts(clock=clock) if clock else access.Attempts()
    return Starlette(routes=[Route("/", lambda rq: PlainTextResponse("ok"))], middleware=[
        Middleware(access.AccessGate, token=token, host=host, attempts=attempts)])


def _raw_get(app, path="/", headers=(), client=None):
    """(status, headers, body) of one GET sent straight to the ASGI app: no Host header or
    no client address, which an HTTP client library always adds."""
    import asyncio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8050),
             "client": client, "headers": [(k.encode(), v.encode()) for k, v in headers]}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]).decode())


REFUSED_HOST = ("this dashboard answers only to 127.0.0.1, localhost or [::1] (the Host "
                "header names another site); start it with --token to serve other names")


def test_host_names_and_the_refusal_text():
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.access import host_name

    assert host_name(" [::1]:8050 ") == "::1"
    assert host_name("[::1]x]") == "::1"                    # the first bracket closes it
    for malformed in ("[::1", "[localhostx", "[", "[]"):
        assert host_name(malformed) == "", malformed
    assert host_name("::1") == "::1"                        # bare IPv6: its colons are no port
    assert host_name("LocalHost:80") == "localhost"
    with TestClient(_gate_app(host="lab-box")) as c:
        r = c.get("/", headers={"host": "evil.example"})
        assert (r.status_code, r.text) == (400, REFUSED_HOST)
        assert c.get("/", headers={"host": "[localhostx"}).status_code == 400
    # a request without a Host header is refused, whatever name the server was given
    for host in ("127.0.0.1", "xxxx", "lab-box"):
        status, _, body = _raw_get(_gate_app(host=host), client=("127.0.0.1", 1))
        assert (status, body) == (400, REFUSED_HOST), host
    assert _raw_get(_gate_app(), headers=[("host", "localhost")])[:3:2] == (200, "ok")


def test_token_length_boundary_and_message():
    pytest.importorskip("starlette")
    from alems.dashboard.access import MIN_TOKEN_CHARS, check_token

    check_token("x" * MIN_TOKEN_CHARS)                      # exactly the minimum is enough
    with pytest.raises(UsageError) as ei:
        check_token("x" * (MIN_TOKEN_CHARS - 1))
    assert str(ei.value) == ("--token is 15 character(s); give at least 16 (e.g. the output "
                             "of `python3 -c 'import secrets; "
                             "print(secrets.token_urlsafe(24))'`)")


def test_local_path_keeps_spaces_and_refuses_control_characters():
    pytest.importorskip("starlette")
    from alems.dashboard.access import local_path

    assert local_path("/group/a b?x=y z") == "/group/a b?x=y z"
    assert local_path("/group/a\x1fb") == "/"


def test_wrong_tokens_counted_per_client_and_the_wait_told_exactly():
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.access import FREE_ATTEMPTS, TOKEN_COOKIE

    now = [0.0]
    app = _gate_app(token=TOKEN, clock=lambda: now[0])
    a = TestClient(app, client=("10.0.0.1", 1), follow_redirects=False)
    b = TestClient(app, client=("10.0.0.2", 1), follow_redirects=False)
    for _ in range(FREE_ATTEMPTS - 1):
        assert a.get("/?token=wrong-token-wrong-token").status_code == 303
    assert a.get(f"/?token={TOKEN}").status_code == 303     # right: its failures forgotten
    a.cookies.clear()
    for _ in range(FREE_ATTEMPTS - 1):
        assert a.get("/?token=wrong-token-wrong-token").status_code == 303
    a.cookies.set(TOKEN_COOKIE, "wrong-cookie-wrong-cookie")   # a wrong cookie counts too
    assert a.get("/").status_code == 303
    r = a.get("/")                                           # 5 failures: wait 2 s
    assert (r.status_code, r.text, r.headers["retry-after"]) == (
        429, "too many wrong tokens; try again in 2 s", "3")
    assert b.get(f"/?token={TOKEN}").status_code == 303      # another client is not held
    now[0] = 1.5                                             # half a second still to wait
    r = a.get("/")
    assert (r.status_code, r.text, r.headers["retry-after"]) == (
        429, "too many wrong tokens; try again in 0 s", "1")
    now[0] = 2.0
    a.cookies.set(TOKEN_COOKIE, TOKEN)
    assert a.get("/").text == "ok"


def test_a_request_without_a_client_address_is_gated_as_one_client():
    pytest.importorskip("starlette")
    from alems.dashboard.access import FREE_ATTEMPTS

    app = _gate_app(token=TOKEN, clock=lambda: 0.0)
    for _ in range(FREE_ATTEMPTS):
        assert _raw_get(app, "/", [("host", "x"), ("cookie", "alems_token=bad")])[0] == 303
    assert _raw_get(app, "/", [("host", "x")])[0] == 429


def test_attempts_start_free_and_the_soonest_wait_is_forgotten_first(monkeypatch):
    pytest.importorskip("starlette")
    from alems.dashboard import access

    assert access.Attempts(clock=lambda: 0.0).wait_s("new") == 0
    monkeypatch.setattr(access, "MAX_TRACKED_CLIENTS", 2)
    a = access.Attempts(clock=lambda: 0.0)
    for _ in range(access.FREE_ATTEMPTS + 3):
        a.failed("a-locked-long")          # first by name, last by the end of its wait
    a.failed("z1")
    a.failed("z2")                         # one too many: z1 (its wait ends first) goes
    assert set(a._failed) == {"a-locked-long", "z2"}


def test_kind_names_and_pid_liveness():
    assert atomic_io.kind_of(stat.S_IFBLK) == "a block device"
    assert atomic_io.kind_of(stat.S_IFSOCK) == "a socket"
    assert atomic_io.kind_of(stat.S_IFCHR) == "a character device"
    assert atomic_io.kind_of(stat.S_IFDIR) == "a directory"
    assert atomic_io.kind_of(stat.S_IFIFO) == "a FIFO"
    assert atomic_io.kind_of(stat.S_IFLNK) == "not a regular file"
    # a live pid: test_atomic_io_mutants (with a SIGHUP handler: pid_alive never signals)
    assert atomic_io.pid_alive(2 ** 22 + 1) is False           # above pid_max
    assert atomic_io.pid_alive(2 ** 70) is False               # not even a pid


def test_output_path_stat_errors_and_defaults(tmp_path):
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / ("n" * 300))
    assert str(ei.value) == ("--output: the file name is 300 bytes long; this file system "
                             f"allows {_name_max(tmp_path) - 16} here")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(loop, "--report")
    assert str(ei.value) == f"--report {loop}: Too many levels of symbolic links"
    with pytest.raises(UsageError, match="give a file name"):
        outputs.check_output_path(tmp_path / "..")
    with pytest.raises(UsageError) as ei:
        outputs.check_output_path(tmp_path / "no" / "ds", "--out", folder=True)
    assert str(ei.value) == (f"cannot write --out {tmp_path / 'no' / 'ds'}: {tmp_path / 'no'} "
                             "does not exist (create it first, or choose another path)")


def test_free_space_message_is_exact(tmp_path):
    import re
    import shutil

    with pytest.raises(AlemsError) as ei:
        outputs.check_free_space(tmp_path / "x", 10 ** 18)
    m = re.fullmatch(rf"--output {re.escape(str(tmp_path / 'x'))}: only ([\d.]+) MB free on "
                     r"its file system, about 1000000000000\.0 MB are needed; free space or "
                     r"choose another location", str(ei.value))
    assert m, str(ei.value)
    assert float(m.group(1)) == pytest.approx(shutil.disk_usage(tmp_path).free / 1e6, rel=0.05)


def test_stale_symlinks_are_left_and_a_symlinked_target_is_replaced_through(tmp_path):
    old = os.umask(0)
    try:
        assert atomic_io.umask_mode() == 0o666
    finally:
        os.umask(old)
    dead = 2 ** 22 + 1
    real = tmp_path / "elsewhere"
    real.write_text("keep")
    link = tmp_path / f".out.parquet.{dead}.tmp"
    os.symlink(real, link)
    assert atomic_io.remove_stale_tmp(tmp_path / "out.parquet") == []
    assert link.is_symlink() and real.read_text() == "keep"
    target = tmp_path / "target.json"
    target.write_text("old")
    alias = tmp_path / "alias.json"
    os.symlink(target, alias)
    new = tmp_path / "new"
    new.write_text("new")
    atomic_io.safe_replace(new, alias)
    assert alias.is_symlink() and target.read_text() == "new"


def test_same_file_follows_links_and_names_of_missing_files(tmp_path):
    a = tmp_path / "a.json"
    a.write_text("x")
    link = tmp_path / "l.json"
    os.symlink(a, link)
    (tmp_path / "b.json").write_text("x")
    assert outputs.same_file(a, link) is True
    assert outputs.same_file(a, tmp_path / "b.json") is False
    assert outputs.same_file(tmp_path / "new.json", tmp_path / "x" / ".." / "new.json") is True
    assert outputs.same_file(tmp_path / "new.json", tmp_path / "other.json") is False
