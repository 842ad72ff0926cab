"""The live explorer: a small Starlette app serving the page and a JSON API over one model.

Routes (all JSON answers; every error is ``{"error": "..."}`` with a 4xx status, never a traceback):

==============================  ======  ======================================================
``/``                           GET     the page (``static/index.html``)
``/config.js``                  GET     ``window.POLYLENS_CONFIG = {"mode": "live", ...}``
``/static/<file>``              GET     the page's shell modules and stylesheet
``/lens/<name>/<file>``         GET     a lens's view module, from the lens's own folder
``/vendor/plotly.min.js``       GET     plotly.js from the installed ``plotly`` wheel (no CDN)
``/api/model``                  GET     :meth:`Explorer.model_payload` (with the list of views)
``/api/samples``                GET     :meth:`Explorer.samples_payload`
``/api/forward``                POST    ``{"sample": i}`` or ``{"x": [...]}`` -> activations and diagram
``/api/bounds``                 POST    ``{sample | x, "eps"}`` -> interval bounds and envelope cuts
``/api/rename``                 POST    ``{"layer", "neuron", "name"}`` -> saved where the model allows
``/api/lenses``                 GET     the views: every lens with a view and its payload kinds
``/api/lens/<name>[/<kind>]``   POST    a lens's payload (:meth:`Explorer.lens_payload`); the body
                                        holds its parameters (and ``sample`` or ``x`` when it takes
                                        an input); GET takes them as query parameters
==============================  ======  ======================================================

The server only reads the model it was started with; no request names a path (a lens module is
looked up by lens name in the registry, and only files of that lens's folder are served). CPU-heavy
work runs in the thread pool (``run_in_threadpool``) so the event loop stays responsive; payloads
declared ``heavy`` (LP work: certify, robust) run one request at a time, skip requests whose client
has gone (a dragged slider aborts stale ones), and answer ``{"status": "timeout"}`` after
``config.request_timeout`` seconds. Payloads declared ``background`` run once as jobs: they answer
``{"status": "running"}`` at once until the result is ready.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from polylens.errors import ParameterError, PolylensError
from polylens.explorer.api import Explorer, ExplorerConfig, check_keys, jsonify, lens_catalog, parse_eps
from polylens.nn.model import Model

__all__ = ["create_app", "plotly_js_path", "static_dir"]

log = logging.getLogger("polylens.explorer")

#: The largest request body accepted (a 784-pixel input is about 10 kB of JSON).
MAX_BODY = 256 * 1024


def static_dir() -> Path:
    """The directory of the page's files (index.html, ES modules, style.css) in the installed package."""
    return Path(str(resources.files("polylens.explorer").joinpath("static")))


def plotly_js_path() -> Path:
    """plotly.min.js shipped inside the installed ``plotly`` wheel."""
    import plotly

    p = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not p.is_file():  # pragma: no cover - a broken plotly installation
        raise PolylensError(f"The plotly package has no {p}; reinstall plotly.")
    return p


class _RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonify(data), status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status,
                        headers={"Cache-Control": "no-store"})


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise _RequestError(413, f"The request body is {len(raw)} bytes; the limit is {MAX_BODY}.")
    if not raw:
        raise _RequestError(400, "The request needs a JSON body.")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda c: math.nan)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _RequestError(400, f"The request body is not valid JSON: {e}.") from None


def _query_params(request: Request) -> dict:
    """Query parameters as a request body: numbers where they parse as numbers."""
    out: dict[str, Any] = {}
    for k, v in request.query_params.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def create_app(model: Model | Explorer, *, config: ExplorerConfig = ExplorerConfig(),
               names_dir: str | Path | None = None, warm: bool = True) -> Starlette:
    """The live explorer for ``model`` (a loaded model, or an :class:`Explorer` already built on one).

    ``names_dir``: where renamed neurons of a bundled or ONNX model are kept (see
    :class:`~polylens.explorer.api.NameStore`). ``warm``: ask every ``warm`` payload (the background
    sweep) once when the app starts (else on its first request).
    """
    from polylens.lenses import all_lenses, get_lens

    ex = model if isinstance(model, Explorer) else Explorer(model, config=config, names_dir=names_dir)
    cfg = ex.config
    lp_gate = asyncio.Semaphore(1)
    sdir = static_dir()
    plotly_path = plotly_js_path()

    def endpoint(fn: Callable[[Request], Awaitable[Any]]):
        """Every API handler: PolylensError -> 400, request errors -> their status, anything else
        -> 500 with a one-line message (the traceback goes to the server log only)."""

        async def handle(request: Request) -> Response:
            try:
                return _json(await fn(request))
            except _RequestError as e:
                return _error(e.status, e.message)
            except PolylensError as e:
                return _error(400, str(e))
            except Exception as e:  # noqa: BLE001 - the boundary: never leak a traceback
                log.exception("explorer request %s failed", request.url.path)
                return _error(500, f"internal error ({type(e).__name__}); see the server log")

        return handle

    async def heavy(request: Request, fn: Callable[[], Any], what: str) -> Any:
        """Run LP work: one request at a time, skipped when the client has gone, answered with
        a timeout status after ``request_timeout`` seconds (the LP solves themselves are limited
        to ``time_limit`` seconds each, so the abandoned thread ends soon after)."""
        async with lp_gate:
            if await request.is_disconnected():
                return {"status": "cancelled", "error": "the client went away"}
            task = asyncio.ensure_future(run_in_threadpool(fn))
            try:
                return await asyncio.wait_for(asyncio.shield(task), cfg.request_timeout)
            except asyncio.TimeoutError:
                task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
                return {"status": "timeout", "message": f"{what} did not finish within {cfg.request_timeout:g} s; "
                                                        "the answer is unknown at this time limit."}

    # -- pages -----------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return FileResponse(sdir / "index.html", headers={"Cache-Control": "no-cache"})

    async def config_js(request: Request) -> Response:
        conf = {"mode": "live", "api": "api/"}
        return Response(f"window.POLYLENS_CONFIG = {json.dumps(conf)};\n", media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    async def plotly_js(request: Request) -> Response:
        return FileResponse(plotly_path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    async def lens_module(request: Request) -> Response:
        """A file of a lens's own folder (its view module): only .js and .css files directly in it."""
        try:
            lens = get_lens(request.path_params["name"])
        except PolylensError:
            return _error(404, "no such lens")
        name = request.path_params["file"]
        folder = lens.folder()
        path = (folder / name).resolve()
        if path.parent != folder or path.suffix not in (".js", ".css") or not path.is_file():
            return _error(404, "no such file")
        media = "text/javascript" if path.suffix == ".js" else "text/css"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    # -- API ---------------------------------------------------------------------------------------

    async def api_model(request: Request):
        return ex.model_payload()

    async def api_samples(request: Request):
        return await run_in_threadpool(ex.samples_payload)

    async def api_forward(request: Request):
        inp = ex.resolve(await _body(request), "forward")
        return ex.forward_payload(inp.x, inp.sample)

    async def api_bounds(request: Request):
        body = await _body(request)
        inp = ex.resolve(body, "bounds", ("eps",))
        eps = parse_eps(body.get("eps", cfg.eps), "bounds")
        return await run_in_threadpool(ex.bounds_payload, inp.x, eps)

    async def api_rename(request: Request):
        body = await _body(request)
        if not isinstance(body, dict):
            raise ParameterError("The request body of rename must be a JSON object with 'layer', 'neuron' and 'name'.")
        check_keys(body, ("layer", "neuron", "name"), "rename")
        missing = [k for k in ("layer", "neuron", "name") if k not in body]
        if missing:
            raise ParameterError(f"The request of rename lacks {', '.join(map(repr, missing))}.")
        try:
            return await run_in_threadpool(ex.rename, body["layer"], body["neuron"], body["name"])
        except OSError as e:
            raise _RequestError(409, f"Could not save the name: {e}") from None

    async def api_lenses(request: Request):
        return {"lenses": lens_catalog()}

    async def api_lens(request: Request):
        name = request.path_params["name"]
        kind = request.path_params.get("kind", "main")
        try:
            lens, p = ex.payload_spec(name, kind)
        except PolylensError as e:
            raise _RequestError(404, str(e)) from None
        body = await _body(request) if request.method == "POST" else _query_params(request)
        params = ex.parse_params(lens.name, kind, body)  # a bad request fails before any work
        if p.heavy:
            res = await heavy(request, lambda: ex.lens_payload(lens.name, kind, body), f"The {lens.name} request")
            if res.get("status") == "timeout" and "eps" in params:
                res = {**res, "eps": params["eps"]}
            return res
        return await run_in_threadpool(ex.lens_payload, lens.name, kind, body)

    routes = [
        Route("/", index),
        Route("/index.html", index),
        Route("/config.js", config_js),
        Route("/vendor/plotly.min.js", plotly_js),
        Route("/lens/{name}/{file}", lens_module),
        Route("/api/model", endpoint(api_model)),
        Route("/api/samples", endpoint(api_samples)),
        Route("/api/forward", endpoint(api_forward), methods=["POST"]),
        Route("/api/bounds", endpoint(api_bounds), methods=["POST"]),
        Route("/api/rename", endpoint(api_rename), methods=["POST"]),
        Route("/api/lenses", endpoint(api_lenses)),
        Route("/api/lens/{name}", endpoint(api_lens), methods=["GET", "POST"]),
        Route("/api/lens/{name}/{kind}", endpoint(api_lens), methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=str(sdir)), name="static"),
    ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, exc.detail or "error")

    async def any_error(request: Request, exc: Exception) -> Response:
        log.exception("explorer request %s failed", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if warm:
            for lens in all_lenses():
                for kind, p in (lens.view.payloads.items() if lens.view is not None else ()):
                    if p.warm:
                        try:
                            await run_in_threadpool(ex.lens_payload, lens.name, kind, {})
                        except PolylensError as e:  # e.g. no test samples: the view will say so
                            log.warning("%s/%s: %s", lens.name, kind, e)
        try:
            yield
        finally:
            ex.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: any_error},
                    lifespan=lifespan)
    app.state.explorer = ex
    return app
