"""Dataset routes: thin, they call `api.datasets.service` only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from sqlalchemy.orm import Session

from gisp_service.api.datasets import service
from gisp_service.api.datasets.schemas import ColumnMapping, DatasetOut, DatasetUpload
from gisp_service.api.deps import ServiceContext, current_tenant, get_ctx, get_session
from gisp_service.api.errors import problems
from gisp_service.api.openapi import operation_id
from gisp_service.api.schemas import Page
from gisp_service.db.session import transaction

router = APIRouter(
    prefix="/v1/datasets", tags=["datasets"], responses=problems(401), generate_unique_id_function=operation_id
)


@router.post("", name="upload", status_code=201, response_model=DatasetOut, responses=problems(413, 422))
def upload_dataset(
    request: Request,
    form: Annotated[DatasetUpload, Form(media_type="multipart/form-data")],
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    """Upload calibration or evaluation data; it is validated with the engine's reader and stored by
    sha256, so a job never fails later on data the upload accepted. A table (.json, .csv, .parquet,
    .arrow, a zipped save_to_disk folder) is read with `datasets`; the form's column fields name the
    columns that hold the records' parts. The body is streamed to disk; past GISP_MAX_UPLOAD_BYTES
    (512 MiB by default) the upload is refused with 413."""
    service.check_declared_size(request.headers.get("content-length"), ctx.rt.settings.max_upload_bytes)
    with transaction(ctx.rt.sessions) as session:
        return service.upload(
            session,
            ctx.rt.store,
            tenant,
            form.file.file,
            form.file.filename or "",
            form.name,
            ctx.rt.settings.max_upload_bytes,
            service.columns_of(form.model_dump(include=set(ColumnMapping.model_fields))),
        )


@router.get("", name="list", response_model=Page[DatasetOut], responses=problems(422))
def list_datasets(
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="cursor: the last id of the previous page"),
    session: Session = Depends(get_session),
    tenant: str = Depends(current_tenant),
):
    return service.page(session, tenant, limit, after)


@router.get("/{dataset_id}", name="get", response_model=DatasetOut, responses=problems(404))
def get_dataset(dataset_id: str, session: Session = Depends(get_session), tenant: str = Depends(current_tenant)):
    return service.get(session, tenant, dataset_id)


@router.delete("/{dataset_id}", name="delete", status_code=204, responses=problems(404, 409))
def delete_dataset(dataset_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    """Soft delete: jobs keep their reference, the bytes stay in the store. 409 while a queued or
    running job uses it."""
    with transaction(ctx.rt.sessions) as session:
        service.delete(session, tenant, dataset_id)
    return Response(status_code=204)
