from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from sqlalchemy.orm import Session

from gisp_service.api.datasets import service
from gisp_service.api.datasets.schemas import DatasetOut, DatasetPage
from gisp_service.api.deps import ServiceContext, current_tenant, get_ctx, get_session
from gisp_service.api.errors import ApiProblem
from gisp_service.api.schemas import PROBLEMS
from gisp_service.db.repos import datasets as dataset_repo
from gisp_service.db.session import transaction

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=PROBLEMS)
MULTIPART_OVERHEAD = 64 * 1024


@router.post("", status_code=201, response_model=DatasetOut)
def upload_dataset(
    request: Request,
    file: UploadFile = File(..., description=".txt or .jsonl calibration/evaluation data"),
    name: str | None = Form(None),
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    limit = ctx.rt.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise ApiProblem(413, f"the upload is larger than the limit of {limit} bytes", "file")
    with transaction(ctx.rt.sessions) as session:
        return service.upload(session, ctx.rt.store, tenant, file.file, file.filename or "", name, limit)


@router.get("", response_model=DatasetPage)
def list_datasets(
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="cursor: the last id of the previous page"),
    session: Session = Depends(get_session),
    tenant: str = Depends(current_tenant),
):
    rows, more = dataset_repo.page(session, tenant, limit, after)
    return {"data": rows, "has_more": more}


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: Session = Depends(get_session), tenant: str = Depends(current_tenant)):
    return service.get(session, tenant, dataset_id)


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    with transaction(ctx.rt.sessions) as session:
        service.delete(session, tenant, dataset_id)
    return Response(status_code=204)
