"""A database that cannot be reached when a command or an Engine starts, told from a URL that
is wrong: the first is a `StoreUnavailableError` (exit 75, run again later), the second a plain
`StoreError` (exit 2: retrying will not fix it). README.md, "Exit codes"; docs/api.md, "Errors".
"""

from __future__ import annotations

import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import backends
import pytest
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from deliverability.cli import main
from deliverability.engine import Engine
from deliverability.errors import StoreError, StoreUnavailableError
from deliverability.store.session import _listening, mask_url, out_of_reach

SERVER_BACKENDS = backends.backend_params(backends.SERVERS)
PASSWORD = "s3cret-in-the-url"

#: Commands that open the store first thing, each its own way: the sender's Engine (`status`,
#: `record`), a read-only open (`report`), the schema alone (`db current`, `db upgrade`).
COMMANDS = [
    ["status", "a@example.com"],
    ["report", "undeliverable"],
    ["db", "current"],
    ["db", "upgrade"],
    ["record", "--recipient", "a@example.com", "--reply", "250 2.0.0 OK"],
]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        yield closed.getsockname()[1]


def _cli(url: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["deliverability", "--database-url", url, *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    return int(stopped.value.code or 0)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_an_engine_on_a_server_that_refuses_connections_is_a_store_unavailable_error(
    db_url: str, closed_port: int
) -> None:
    url = make_url(db_url).set(host="127.0.0.1", port=closed_port, password=PASSWORD)
    with pytest.raises(StoreUnavailableError) as caught:
        Engine(url.render_as_string(hide_password=False))
    message = str(caught.value)
    assert message.startswith(f"cannot reach the database {mask_url(url)}: ")
    assert PASSWORD not in message
    assert ":***@127.0.0.1" in message


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_command_on_a_server_that_refuses_connections_exits_75_to_be_run_again(
    db_url: str,
    closed_port: int,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = make_url(db_url).set(host="127.0.0.1", port=closed_port, password=PASSWORD)
    code = _cli(url.render_as_string(hide_password=False), args, monkeypatch)
    err = capsys.readouterr().err
    assert code == 75, err
    assert err.startswith(f"error: cannot reach the database {mask_url(url)}: "), err
    assert PASSWORD not in err
    assert "run the command again" in err


def _refused(url: str) -> OperationalError | None:
    """The driver's refusal of `url` (None when the server lets it in)."""
    engine = sa_create_engine(url, poolclass=NullPool)
    try:
        with engine.connect():
            return None
    except OperationalError as err:
        return err
    finally:
        engine.dispose()


#: What is wrong in the URL, and the name the error must give (in the driver's words, after
#: the URL): a user the server does not know, a wrong password, a database that does not exist.
NOBODY, NO_DB = "deliverability_nobody", "deliverability_no_such_db"
WRONG = {
    "unknown user": ({"username": NOBODY, "password": PASSWORD}, NOBODY),
    "wrong password": ({"password": PASSWORD}, None),
    "unknown database": ({"database": NO_DB}, NO_DB),
}


@pytest.mark.parametrize("wrong", list(WRONG))
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_url_the_server_refuses_is_a_store_error_and_exit_2_naming_the_problem(
    db_url: str,
    wrong: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changes, named = WRONG[wrong]
    url = make_url(db_url).set(**changes)
    named = named or url.username
    shown = url.render_as_string(hide_password=False)
    if wrong == "wrong password" and _refused(shown) is None:
        pytest.skip(f"{url.host} lets {url.username} in without checking a password (trust)")
    with pytest.raises(StoreError) as caught:
        Engine(shown)
    assert not isinstance(caught.value, StoreUnavailableError), caught.value
    for args in (["status", "a@example.com"], ["db", "current"]):
        code = _cli(shown, args, monkeypatch)
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith(f"error: cannot connect to the database {mask_url(url)}: "), err
        # The driver's own words name what is wrong, not only the URL.
        assert named in err.split(mask_url(url), 1)[1], err
        assert PASSWORD not in err
        assert "run the command again" not in err


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_host_name_that_does_not_resolve_is_a_store_error_and_exit_2(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # .invalid never resolves (RFC 6761 section 6.4): a typo in the host, not a server down.
    url = make_url(db_url).set(host="deliverability.invalid", password=PASSWORD)
    with pytest.raises(StoreError) as caught:
        Engine(url.render_as_string(hide_password=False))
    assert not isinstance(caught.value, StoreUnavailableError), caught.value
    code = _cli(url.render_as_string(hide_password=False), ["db", "current"], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: cannot connect to the database {mask_url(url)}: "), err
    assert "deliverability.invalid" in err.split(mask_url(url), 1)[1], err


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda args: " ".join(args[:2]))
def test_a_sqlite_file_that_cannot_be_opened_is_exit_2(
    tmp_path: Path,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A folder this user cannot write in (as root any folder is writable, so the refusal is
    # SQLite's own, made here): no server to come back, the path is to be fixed.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "store.db").touch()  # so that `report` does not stop at "no store" first

    def cannot_open(*_args: object, **_kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3.dbapi2, "connect", cannot_open)
    code = _cli(url, args, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: cannot connect to the database {url}: unable to open"), err


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'store.db'}"
    code = _cli(url, ["status", "a@example.com"], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "does not exist" in err


def _mysql_error(code: int, text: str, cause: OSError | None = None) -> Exception:
    import pymysql

    err = pymysql.err.OperationalError(code, text)
    if cause is not None:
        err.original_exception = cause  # as PyMySQL sets it when the socket fails
    return err


def _pg_error(sqlstate: str | None, text: str) -> Exception:
    from psycopg import errors

    return (errors.lookup(sqlstate) if sqlstate else errors.OperationalError)(text)


@pytest.mark.parametrize(
    ("dialect", "make", "expected"),
    [
        ("mysql", lambda: _mysql_error(1040, "Too many connections"), True),
        ("mysql", lambda: _mysql_error(1053, "Server shutdown in progress"), True),
        ("mysql", lambda: _mysql_error(2013, "Lost connection to server during query"), True),
        ("mysql", lambda: _mysql_error(2003, "Can't connect", ConnectionRefusedError(111)), True),
        ("mysql", lambda: _mysql_error(1045, "Access denied for user"), False),
        ("mysql", lambda: _mysql_error(1049, "Unknown database"), False),
        # Even a resolver's "try again" (EAI_AGAIN): see `out_of_reach`.
        ("mysql", lambda: _mysql_error(2003, "Can't connect", socket.gaierror(-3, "again")), False),
        ("postgresql", lambda: _pg_error("57P03", "the database system is starting up"), True),
        ("postgresql", lambda: _pg_error("53300", "sorry, too many clients already"), True),
        ("postgresql", lambda: _pg_error("08006", "connection failure"), True),
        ("postgresql", lambda: _pg_error("28P01", "password authentication failed"), False),
        ("postgresql", lambda: _pg_error("3D000", 'database "x" does not exist'), False),
        ("postgresql", lambda: __import__("psycopg").errors.ConnectionTimeout("timeout"), True),
        # psycopg's "failed to resolve host": no connection attempt, so no `pgconn`.
        ("postgresql", lambda: _pg_error(None, "failed to resolve host 'x'"), False),
    ],
    ids=lambda value: (
        value
        if isinstance(value, str)
        else {True: "out_of_reach", False: "wrong_url"}.get(value, "")
    ),
)
def test_the_drivers_codes_tell_a_server_out_of_reach_from_a_wrong_url(
    dialect: str, make: Callable[[], Exception], expected: bool
) -> None:
    for name in ("pymysql", "psycopg"):
        pytest.importorskip(name)
    assert out_of_reach(make(), dialect) is expected


def test_a_postgresql_server_is_listening_when_its_tcp_port_or_unix_socket_takes_a_connection(
    tmp_path: Path, closed_port: int
) -> None:
    # What tells a PostgreSQL refusal (the server answered) from a server out of reach, since
    # psycopg gives a failed connection no SQLSTATE (`out_of_reach`).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = str(server.getsockname()[1]).encode()
        assert _listening(b"localhost", b"127.0.0.1", port)
    assert not _listening(b"localhost", b"127.0.0.1", str(closed_port).encode())
    folder = str(tmp_path).encode()
    assert not _listening(folder, b"", b"5432")  # no socket file: nothing runs there
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / ".s.PGSQL.5432"))
        server.listen()
        assert _listening(folder, b"", b"5432")
