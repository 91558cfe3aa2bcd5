"""The dashboard's web application (Starlette): routes, token gate and error pages.

Every request opens the database read-only afresh (cheap, and it sees what a running
batch committed since). No route accepts SQL; ids from the URL go into fixed, parametrised
queries. Plotly's JavaScript is served from the installed plotly package: no network.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import sys
import traceback
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from alems.errors import AlemsError, UsageError
from alems.analysis.precision import fmt_ratio
from alems.analysis.tax import tax_cells
from alems.dashboard import pages
from alems.store import dashboard_reads as reads

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "alems_token"
LIVE_REFRESH_MS = 1000
BUSY_RETRY_S = 2
OPEN_PATHS = ("/login", "/favicon.ico")
OPEN_PREFIX = "/static/"   # the page's own CSS and JS: no results in them


def plotly_js_path() -> Path:
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise AlemsError(f"plotly's bundled plotly.min.js is missing ({path}); reinstall "
                         "with `pip install 'alems[dashboard]'`")
    return path


def _fmt(value, spec: str = ".3f", missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _num(value) -> str:
    """A counter for reading: integers with thousands separators, floats to 6 digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer()
                                  and abs(value) >= 1e4):
        return f"{int(value):,}"
    return _fmt(value, ".6g")


def _templates() -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.filters["fmt"] = _fmt
    t.env.filters["num"] = _num
    t.env.globals["tax_cells"] = tax_cells   # every tax figure as the other surfaces print it
    t.env.globals["fmt_ratio"] = fmt_ratio
    t.env.globals["live_refresh_ms"] = LIVE_REFRESH_MS
    return t


class TokenGate(BaseHTTPMiddleware):
    """With a token set, every page but the login form needs it (cookie, or ?token= once)."""

    def __init__(self, app, token: str | None):
        super().__init__(app)
        self.token = token

    def _ok(self, given: str | None) -> bool:
        if not given or self.token is None:
            return False
        return secrets.compare_digest(given.encode(), self.token.encode())

    async def dispatch(self, request, call_next):
        path = request.url.path
        if not self.token or path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            return await call_next(request)
        if self._ok(request.query_params.get("token")):
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            resp = RedirectResponse(target, status_code=303)
            _set_cookie(resp, self.token)
            return resp
        if self._ok(request.cookies.get(TOKEN_COOKIE)):
            return await call_next(request)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "token required"}, status_code=401)
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)


def _set_cookie(resp: Response, token: str) -> None:
    resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no //host) may follow the login."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _warm_up() -> None:
    """Import the analysis stack (pandas, scipy: seconds) before the first page needs it."""
    with contextlib.suppress(ImportError):
        import alems.analysis.summary  # noqa: F401


def checked_run_id(run_id: int) -> int:
    """A run id from the URL: SQLite integers are signed 64-bit, so a longer number can
    name no run (and would overflow the query)."""
    if not 0 <= run_id < 2**63:
        raise AlemsError(f"no run {run_id} in this database")
    return run_id


def create_app(db_path: str | Path, token: str | None = None) -> Starlette:
    import threading

    db_path = Path(db_path).resolve()
    threading.Thread(target=_warm_up, name="alems-dashboard-warm-up", daemon=True).start()
    templates = _templates()

    def render(request, name: str, ctx: dict, status: int = 200):
        ctx = dict(ctx, db_path=str(db_path), token_required=bool(token))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def problem(request, message: str, status: int, retry: bool = False):
        return render(request, "problem.html", {"message": message, "retry_s":
                                                BUSY_RETRY_S if retry else None}, status)

    def page(name: str, gather):
        """A page handler: open the db, gather the context, render; clear pages on errors."""

        def handler(request):
            try:
                conn = reads.open_readonly(db_path)
            except reads.DatabaseBusy as exc:
                return problem(request, str(exc), 503, retry=True)
            except AlemsError as exc:
                return problem(request, str(exc), 503, retry=True)
            try:
                return render(request, name, gather(request, conn))
            except reads.DatabaseBusy as exc:
                return problem(request, str(exc), 503, retry=True)
            except AlemsError as exc:
                return problem(request, str(exc), 404)
            except Exception as exc:  # noqa: BLE001 - a page, never a traceback, for the user
                traceback.print_exc(file=sys.stderr)
                return problem(request, f"internal error: {type(exc).__name__}: {exc}", 500)
            finally:
                conn.close()

        return handler

    def api(gather):
        def handler(request):
            try:
                conn = reads.open_readonly(db_path)
            except AlemsError as exc:
                return JSONResponse({"error": str(exc)}, status_code=503)
            try:
                return Response(gather(request, conn), media_type="application/json")
            except UsageError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except AlemsError as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            finally:
                conn.close()

        return handler

    def _run_id(request) -> int:
        return checked_run_id(request.path_params["run_id"])

    def zoom(request, conn) -> str:
        """Re-downsampled power of a stored run for the zoomed window [t0, t1] seconds."""
        from alems.dashboard.figures import curves_json

        run = reads.run_detail(conn, _run_id(request))
        if run is None:
            raise AlemsError(f"no run {_run_id(request)} in this database")
        try:
            t0, t1 = float(request.query_params["t0"]), float(request.query_params["t1"])
        except (KeyError, ValueError):
            raise UsageError("give the window as ?t0=SECONDS&t1=SECONDS") from None
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1):
            raise UsageError("the window ?t0=…&t1=… must be finite seconds with t0 < t1")
        curves, _ = pages.run_power(db_path, run, t_range_s=(t0, t1))
        return curves_json(curves)

    def live_json(request, conn) -> str:
        import json

        return json.dumps(pages.live_state(conn, db_path, request.query_params.get("group")),
                          default=str)

    async def login(request):
        if request.method == "POST":
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            given = (form.get("token") or [""])[0]
            nxt = _safe_next((form.get("next") or ["/"])[0])
            if token and given and secrets.compare_digest(given.encode(), token.encode()):
                resp = RedirectResponse(nxt, status_code=303)
                _set_cookie(resp, token)
                return resp
            return render(request, "login.html", {"next": nxt, "wrong": True}, 401)
        return render(request, "login.html", {"next": _safe_next(request.query_params.get("next")),
                                              "wrong": False})

    def plotly_js(request):
        return FileResponse(plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    routes = [
        Route("/", page("groups.html", lambda rq, c: pages.groups_page(c))),
        Route("/group/{group_id}", page("group.html", lambda rq, c: pages.group_page(
            c, db_path, rq.path_params["group_id"]))),
        Route("/run/{run_id:int}", page("run.html", lambda rq, c: pages.run_page(
            c, db_path, _run_id(rq)))),
        Route("/compare", page("compare.html", lambda rq, c: pages.compare_page(
            c, db_path, rq.query_params.get("a"), rq.query_params.get("b")))),
        Route("/live", page("live.html", lambda rq, c: {
            "live": pages.live_state(c, db_path, rq.query_params.get("group"))})),
        Route("/api/live", api(live_json)),
        Route("/api/run/{run_id:int}/power", api(zoom)),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/static/plotly.min.js", plotly_js),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, token=token)])
