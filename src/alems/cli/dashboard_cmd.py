"""`alems dashboard`: serve the results in the browser (read-only), print the URL."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from alems.errors import AlemsError, UsageError
from alems.cli._common import handle_errors

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
NEEDED = ("starlette", "uvicorn", "jinja2", "plotly", "tsdownsample")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r}: cannot resolve it ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise AlemsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                         "pick another --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def dashboard_command(
    db: Annotated[Path | None, typer.Option(
        "--db", envvar="ALEMS_DB", help="Results database (SQLite), opened read-only.")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but a "
                                      "loopback address needs --token.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(
        "--port", help="TCP port (0: any free port).")] = DEFAULT_PORT,
    token: Annotated[str | None, typer.Option("--token", envvar="ALEMS_DASHBOARD_TOKEN",
                                                 help="Secret the page asks for before showing "
                                                 "anything (required off loopback; at least "
                                                 "16 characters).")] = None,
) -> None:
    """Serve a local web app over the results: batches, a batch's tax, a run's power curve,
    two batches compared, and a running batch live. Prints its URL; Ctrl-C stops it."""
    import importlib.util

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a TCP port between 0 and 65535")
    if token is not None and not token.strip():
        raise UsageError("--token is empty; give a secret, or leave the option out")
    from alems.dashboard.access import check_token

    check_token(token)
    if not is_loopback(host) and not token:
        raise UsageError(f"--host {host} exposes the results beyond this machine; add "
                         "--token SECRET (the page asks for it), or use --host 127.0.0.1")
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise AlemsError(f"the dashboard needs {', '.join(missing)}; install them with "
                         "`pip install 'alems[dashboard]'`")
    from alems import config

    db_path = Path(db if db is not None else config.default_db_path()).resolve()
    import uvicorn

    from alems.dashboard.app import create_app

    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    app = create_app(db_path, token=token, host=host)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off"))
    print(f"alems dashboard: {_url(host, bound_port)} (database {db_path}, read-only"
          f"{'; the page asks for the token' if token else ''}; Ctrl-C stops)", flush=True)
    if not db_path.is_file():
        print(f"alems: note: no database at {db_path} yet; the page says so until a batch "
              "creates it", file=sys.stderr, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def register(app) -> None:
    app.command("dashboard")(handle_errors(dashboard_command))
