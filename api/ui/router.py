"""Dashboard routes (left out of the OpenAPI document: the API's contract stays the API's). Pages
are rendered on the server; htmx swaps fragments; a job's page follows its events over SSE."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from gisp_service.api.checkpoints import service as checkpoint_service
from gisp_service.api.datasets import service as dataset_service
from gisp_service.api.datasets.upload import receive
from gisp_service.api.deps import AppContext, ServiceContext
from gisp_service.api.errors import ApiProblem
from gisp_service.api.jobs import service as job_service
from gisp_service.api.jobs import stream
from gisp_service.api.jobs.schemas import JobCreate
from gisp_service.api.schemas import SEQ_MAX
from gisp_service.api.ui import auth, views
from gisp_service.api.ui.auth import UiSession, ui_session
from gisp_service.core.queue import enqueue
from gisp_service.db.repos import jobs as job_repo
from gisp_service.db.session import write_transaction

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)
Signed = Annotated[UiSession, Depends(ui_session)]
Ctx = AppContext
log = logging.getLogger("gisp.ui")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def problem_text(exc: ApiProblem) -> str:
    return exc.detail


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/static/{name:path}")
def static(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if not path.is_file() or STATIC not in path.parents:
        raise ApiProblem(404, f"no static file {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


# -------------------------------------------------------------------------------- sign in / out
@router.get("/signin")
def signin_page(request: Request) -> HTMLResponse:
    return page(request, "signin.html", session=None, error=None)


@router.post("/signin")
def signin(request: Request, ctx: Ctx, key: Annotated[str, Form(max_length=200)] = "") -> Response:
    found = auth.tenant_of(ctx, key.strip())
    if found is None:
        return page(request, "signin.html", 401, session=None, error="That API key is not valid.")
    response = RedirectResponse("/ui/jobs", status_code=303)
    auth.set_cookie(response, key.strip(), secure=request.url.scheme == "https")
    return response


@router.post("/signout")
def signout(session: Signed, csrf: Annotated[str, Form()] = "") -> Response:
    session.check_csrf(csrf)
    response = RedirectResponse("/ui/signin", status_code=303)
    auth.clear_cookie(response)
    return response


# -------------------------------------------------------------------------------- datasets
def _datasets(ctx: ServiceContext, tenant_id: str) -> list:
    with ctx.rt.sessions() as db:
        return dataset_service.page(db, tenant_id, 100, None)["data"]


@router.get("/datasets")
def datasets_page(request: Request, session: Signed, ctx: Ctx) -> HTMLResponse:
    return page(request, "datasets.html", session=session, datasets=_datasets(ctx, session.tenant_id), error=None)


@router.post("/datasets")
async def upload(request: Request, session: Signed, ctx: Ctx) -> HTMLResponse:
    """The table fragment, with the new row or the reason the upload was refused (the body is
    read only after the session cookie was checked, streamed as the API's upload is)."""
    error, status = None, 201
    received = None
    try:
        received = await receive(request, ctx.rt.store, ctx.rt.settings.max_upload_bytes)
        session.check_csrf(received.fields.pop("csrf", ""))
        form = dataset_service.form_of(received.fields)
        await run_in_threadpool(dataset_service.store_upload, ctx.rt, session.tenant_id, received, form)
    except ApiProblem as exc:
        error, status = problem_text(exc), exc.status
    finally:
        if received is not None:
            received.discard()
    datasets = await run_in_threadpool(_datasets, ctx, session.tenant_id)
    return page(request, "_datasets_table.html", status, session=session, datasets=datasets, error=error)


@router.post("/datasets/{dataset_id}/delete")
def delete_dataset(
    request: Request, dataset_id: str, session: Signed, ctx: Ctx, csrf: Annotated[str, Form()] = ""
) -> HTMLResponse:
    session.check_csrf(csrf)
    error = None
    try:
        with write_transaction(ctx.rt.sessions) as db:
            dataset_service.delete(db, session.tenant_id, dataset_id)
    except ApiProblem as exc:
        error = problem_text(exc)
    datasets = _datasets(ctx, session.tenant_id)
    return page(request, "_datasets_table.html", session=session, datasets=datasets, error=error)


# -------------------------------------------------------------------------------- jobs
@router.get("/jobs")
def jobs_page(
    request: Request, session: Signed, ctx: Ctx, status: Annotated[str, Query(max_length=20)] = ""
) -> HTMLResponse:
    chosen = status if status in STATUSES else None
    with ctx.rt.sessions() as db:
        jobs = job_service.page(db, session.tenant_id, chosen, 100, None)["data"]
        datasets = dataset_service.page(db, session.tenant_id, 100, None)["data"]
    return page(
        request,
        "jobs.html",
        session=session,
        jobs=jobs,
        datasets=datasets,
        status=chosen,
        statuses=STATUSES,
        error=None,
    )


@router.post("/jobs")
async def submit(request: Request, session: Signed, ctx: Ctx) -> Response:
    form = await request.form()
    session.check_csrf(str(form.get("csrf", "")))
    fields = {k: str(v).strip() for k, v in form.items() if isinstance(v, str) and str(v).strip() and k != "csrf"}
    if "targets" in fields:
        fields["targets"] = [t for t in fields["targets"].replace(" ", "").split(",") if t]  # type: ignore[assignment]
    try:
        body = JobCreate.model_validate(fields)
        with write_transaction(ctx.rt.sessions) as db:
            job, _ = job_service.create(db, session.tenant_id, body, None, ctx.models, ctx.rt.settings)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return await _jobs_with_error(request, session, ctx, message)
    except ApiProblem as exc:
        return await _jobs_with_error(request, session, ctx, problem_text(exc))
    try:
        enqueue(ctx.celery, ctx.rt.settings, job.id)
    except Exception:
        log.exception("could not enqueue job %s; the reconciler will re-send it", job.id)
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)


async def _jobs_with_error(request: Request, session: UiSession, ctx: ServiceContext, error: str) -> HTMLResponse:
    with ctx.rt.sessions() as db:
        jobs = job_service.page(db, session.tenant_id, None, 100, None)["data"]
        datasets = dataset_service.page(db, session.tenant_id, 100, None)["data"]
    return page(
        request,
        "jobs.html",
        422,
        session=session,
        jobs=jobs,
        datasets=datasets,
        status=None,
        statuses=STATUSES,
        error=error,
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, session: Signed, ctx: Ctx) -> HTMLResponse:
    with ctx.rt.sessions() as db:
        state = views.job_state(db, ctx.rt, session.tenant_id, job_id)
    return page(request, "job.html", session=session, state=state, finished=job_repo.FINISHED)


@router.get("/jobs/{job_id}/state")
def job_state(job_id: str, session: Signed, ctx: Ctx) -> JSONResponse:
    """The page's data as JSON: the polling fallback where a proxy strips the event stream."""
    with ctx.rt.sessions() as db:
        return JSONResponse(views.job_state(db, ctx.rt, session.tenant_id, job_id))


@router.get("/jobs/{job_id}/events")
def job_events(
    request: Request, job_id: str, session: Signed, ctx: Ctx, after: Annotated[int, Query(ge=0, le=SEQ_MAX)] = 0
) -> Response:
    """The job's Server-Sent Events for the page (the cookie signs it in; EventSource sends
    Last-Event-ID on its reconnects)."""
    with ctx.rt.sessions() as db:
        job_service.get(db, session.tenant_id, job_id)
    return stream.event_response(ctx.rt, job_id, stream.resume_point(after, request.headers.get("last-event-id")))


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, session: Signed, ctx: Ctx, csrf: Annotated[str, Form()] = "") -> Response:
    session.check_csrf(csrf)
    try:
        with write_transaction(ctx.rt.sessions) as db:
            job_service.cancel(db, session.tenant_id, job_id, ctx.rt.settings)
    except ApiProblem as exc:
        if exc.status != 409:  # already finished: show the page as it is
            raise
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/checkpoints")
def checkpoints_fragment(
    request: Request,
    job_id: str,
    session: Signed,
    ctx: Ctx,
    max_params: Annotated[str, Query(max_length=30)] = "",
    max_bytes: Annotated[str, Query(max_length=30)] = "",
    max_flops_per_token: Annotated[str, Query(max_length=30)] = "",
) -> HTMLResponse:
    """The checkpoint table; with a budget, the checkpoint `select` returns is marked."""
    bounds = {"max_params": max_params, "max_bytes": max_bytes, "max_flops_per_token": max_flops_per_token}
    given = {k: v.replace(",", "").replace("_", "").strip() for k, v in bounds.items() if v.strip()}
    selected, message = None, None
    with ctx.rt.sessions() as db:
        state = views.job_state(db, ctx.rt, session.tenant_id, job_id)
        if given:
            if not all(v.isdigit() for v in given.values()):
                message = "Budgets are whole numbers (e.g. 200000)."
            else:
                try:
                    chosen = checkpoint_service.select(
                        db, session.tenant_id, job_id, *(int(given[k]) if k in given else None for k in bounds)
                    )
                    selected = chosen.id
                    message = (
                        f"Selected {chosen.id}: target {chosen.target_sparsity:g}, "
                        f"{chosen.parameter_count:,} parameters."
                    )
                except ApiProblem as exc:
                    message = problem_text(exc)
    return page(request, "_checkpoints.html", session=session, state=state, selected=selected, message=message)


@router.get("/checkpoints/{checkpoint_id}/layers")
def layers_fragment(request: Request, checkpoint_id: str, session: Signed, ctx: Ctx) -> HTMLResponse:
    with ctx.rt.sessions() as db:
        checkpoint = checkpoint_service.get(db, session.tenant_id, checkpoint_id)
        rows = views.layer_map(ctx.rt, checkpoint)
    return page(request, "_layers.html", session=session, checkpoint=checkpoint, rows=rows)


@router.get("/checkpoints/{checkpoint_id}/download")
def download(checkpoint_id: str, session: Signed, ctx: Ctx) -> FileResponse:
    found = checkpoint_service.download(ctx.rt, session.tenant_id, checkpoint_id)
    return FileResponse(
        found.path,
        media_type="application/x-tar",
        filename=found.filename,
        headers={"ETag": f'"{found.sha256}"', "X-Checksum-SHA256": found.sha256},
    )
