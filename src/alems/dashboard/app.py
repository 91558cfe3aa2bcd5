"""The dashboard's web application (Starlette): routes and error pages (who may read it:
alems.dashboard.access).

Every request opens the database read-only afresh (cheap, and it sees what a running
batch committed since). No route accepts SQL; ids from the URL go into fixed, parametrised
queries. Plotly's JavaScript is served from the installed plotly package: no network.
Every template is autoescaped (whatever its name), and JSON put into a page's <script>
goes through `script_json`: text from the database is never markup.
"""

from __future__ import annotations

import math
import sys
import traceback
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from alems.errors import AlemsError, UsageError
from alems.analysis.groups import resolve_group
from alems.analysis.stored_summary import stored
from alems.analysis.precision import (DAGGER, dagger_note, fmt_interval, fmt_ratio,
                                      fmt_value, mean_sd_ci)
from alems.analysis.summary_warnings import warning_groups
from alems.analysis.tax import tax_cells
from alems.dashboard import access, pages
from alems.store import dashboard_reads as reads

HERE = Path(__file__).resolve().parent
LIVE_REFRESH_MS = 1000
WARNINGS_SHOWN = 3       # warnings a group page shows before the "more" toggle
BUSY_RETRY_S = 2
# Characters that could end a <script> element or start markup, as JSON escapes.
_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                   0x2028: "\\u2028", 0x2029: "\\u2029"}


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


def script_json(text: str) -> Markup:
    """JSON text made safe inside <script type="application/json">: `</script>` or `<!--`
    in a string can no longer end the element (the JSON value is unchanged)."""
    return Markup(str(text).translate(_SCRIPT_ESCAPES))


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=True)
    t = Jinja2Templates(env=env)
    t.env.filters["script_json"] = script_json
    t.env.filters["fmt"] = _fmt
    t.env.filters["num"] = _num
    t.env.globals["tax_cells"] = tax_cells   # every tax figure as the other surfaces print it
    t.env.globals["fmt_ratio"] = fmt_ratio
    # numbers to the precision their interval supports, as the CLI prints them
    t.env.filters["sig"] = fmt_value
    t.env.globals["fmt_interval"] = fmt_interval
    t.env.globals["mean_sd_ci"] = mean_sd_ci
    t.env.globals["dagger"], t.env.globals["dagger_note"] = DAGGER, dagger_note
    t.env.globals["warning_groups"] = warning_groups
    t.env.globals["warnings_shown"] = WARNINGS_SHOWN
    t.env.globals["live_refresh_ms"] = LIVE_REFRESH_MS
    return t


def _warm_up(db_path: Path) -> None:
    """Import the analysis stack (pandas, scipy: seconds), check the database's types
    (reads.open_readonly, once per change of its files) and summarise every batch whose
    summary is not kept in the database (the groups list's figures, pages.summarize's
    cache) before the first page needs them. Kept ones are read when a page asks: loading
    1 000 of them here only competed with the first request (issue 23)."""
    try:
        import alems.analysis.summary  # noqa: F401
    except ImportError:
        pass     # a page names what is missing
    finally:
        pages.ANALYSIS_READY.set()
    try:   # the type check: a first page that asked meanwhile has done it, or waits for it
        conn = reads.open_readonly(db_path)
    except AlemsError:
        return   # a page says what is wrong with the database
    try:
        for gid in reads.group_ids(conn):
            if stored(conn, gid, part="digest_json") is None:   # none kept in the database
                pages.summarize(conn, db_path, resolve_group(conn, gid))
    except Exception:  # noqa: BLE001 - only a head start: the pages report any error
        pass
    finally:
        conn.close()


def checked_run_id(run_id: int) -> int:
    """A run id from the URL: SQLite integers are signed 64-bit, so a longer number can
    name no run (and would overflow the query)."""
    if not 0 <= run_id < 2**63:
        raise AlemsError(f"no run {run_id} in this database")
    return run_id


def create_app(db_path: str | Path, token: str | None = None,
               host: str = "127.0.0.1") -> Starlette:
    """`host`: the address the server was started on (answered besides loopback names)."""
    import threading

    access.check_token(token)
    attempts = access.Attempts()
    db_path = Path(db_path).resolve()
    threading.Thread(target=_warm_up, args=(db_path,), name="alems-dashboard-warm-up",
                     daemon=True).start()
    templates = _templates()

    def render(request, name: str, ctx: dict, status: int = 200, *, show_db: bool = True):
        ctx = dict(ctx, db_path=str(db_path) if show_db else "", token_required=bool(token))
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
        cpus = resolve_group(conn, run["group_id"]).host.get("cpus")
        curves, _ = pages.run_power(db_path, run, t_range_s=(t0, t1),
                                    window_ms=pages.window_param(
                                        request.query_params.get("window_ms")),
                                    host_cpus=cpus if isinstance(cpus, int) else None)
        return curves_json(curves)

    def live_json(request, conn) -> str:
        import json

        return json.dumps(pages.live_state(conn, db_path, request.query_params.get("group")),
                          default=str)

    async def login(request):
        """The token form; it never shows the database's path (the visitor has no token)."""
        if request.method == "POST":
            client = access.client_of(request)
            if attempts.wait_s(client) > 0:
                return access.too_many(attempts.wait_s(client))
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            given = (form.get("token") or [""])[0]
            nxt = access.local_path((form.get("next") or ["/"])[0])
            if token and access.token_matches(given, token):
                attempts.succeeded(client)
                resp = RedirectResponse(nxt, status_code=303)
                access.set_token_cookie(resp, token)
                return resp
            attempts.failed(client)
            return render(request, "login.html", {"next": nxt, "wrong": True}, 401,
                          show_db=False)
        return render(request, "login.html", {"next": access.local_path(
            request.query_params.get("next")), "wrong": False}, show_db=False)

    def plotly_js(request):
        return FileResponse(plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    routes = [
        Route("/", page("groups.html", lambda rq, c: pages.groups_page(c, db_path))),
        Route("/group/{group_id}", page("group.html", lambda rq, c: pages.group_page(
            c, db_path, rq.path_params["group_id"],
            pages.page_param(rq.query_params.get("page"))))),
        Route("/run/{run_id:int}", page("run.html", lambda rq, c: pages.run_page(
            c, db_path, _run_id(rq), rq.query_params.get("window_ms")))),
        Route("/compare", page("compare.html", lambda rq, c: pages.compare_page(
            c, db_path, rq.query_params.get("a"), rq.query_params.get("b")))),
        Route("/live", page("live.html", lambda rq, c: {
            "live": pages.live_state(c, db_path, rq.query_params.get("group"))})),
        Route("/api/live", api(live_json)),
        Route("/api/run/{run_id:int}/power", api(zoom)),
        Route("/api/run/{run_id:int}/figure", api(lambda rq, c: pages.run_figure(
            c, db_path, _run_id(rq)))),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/static/plotly.min.js", plotly_js),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(routes=routes, middleware=[
        Middleware(access.AccessGate, token=token, host=host, attempts=attempts)])
