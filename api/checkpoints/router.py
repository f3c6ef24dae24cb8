from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from gisp_service.api.checkpoints import service
from gisp_service.api.checkpoints.schemas import CheckpointOut, CheckpointPage
from gisp_service.api.deps import ServiceContext, current_tenant, get_ctx, get_session
from gisp_service.api.jobs import service as job_service
from gisp_service.api.schemas import PROBLEMS
from gisp_service.db.repos import checkpoints as checkpoint_repo

router = APIRouter(tags=["checkpoints"], responses=PROBLEMS)


@router.get("/v1/jobs/{job_id}/checkpoints", response_model=CheckpointPage)
def list_checkpoints(job_id: str, session: Session = Depends(get_session), tenant: str = Depends(current_tenant)):
    job = job_service.get(session, tenant, job_id)
    return {"data": checkpoint_repo.for_job(session, job.id), "has_more": False}


@router.get("/v1/jobs/{job_id}/checkpoints/select", response_model=CheckpointOut)
def select_checkpoint(
    job_id: str,
    max_params: int | None = Query(None, ge=0),
    max_bytes: int | None = Query(None, ge=0),
    max_flops_per_token: int | None = Query(None, ge=0),
    session: Session = Depends(get_session),
    tenant: str = Depends(current_tenant),
):
    job = job_service.get(session, tenant, job_id)
    return service.select(checkpoint_repo.for_job(session, job.id), max_params, max_bytes, max_flops_per_token)


@router.get("/v1/checkpoints/{checkpoint_id}", response_model=CheckpointOut)
def get_checkpoint(checkpoint_id: str, session: Session = Depends(get_session), tenant: str = Depends(current_tenant)):
    return service.get(session, tenant, checkpoint_id)


@router.get(
    "/v1/checkpoints/{checkpoint_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/x-tar": {}}}, 206: {"description": "the requested byte range"}},
)
def download_checkpoint(
    checkpoint_id: str,
    request: Request,
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    """The checkpoint's Hugging Face folder as a tar (files at the archive root), built on first
    request and cached. `ETag` is the tar's sha256; Range requests get 206."""
    with ctx.rt.sessions() as session:
        checkpoint = service.get(session, tenant, checkpoint_id)
        job_id, target = checkpoint.job_id, checkpoint.target_sparsity
    path, sha256 = service.artifact(ctx.rt, checkpoint_id)
    etag = f'"{sha256}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        path,
        media_type="application/x-tar",
        filename=f"{job_id}-sparsity-{target:.2f}.tar",
        headers={"ETag": etag, "Accept-Ranges": "bytes", "X-Checksum-SHA256": sha256},
    )
