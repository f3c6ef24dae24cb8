"""Dataset routes: thin, they call `api.datasets.service` only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from gisp_service.api.datasets import service
from gisp_service.api.datasets.schemas import DatasetOut
from gisp_service.api.datasets.upload import MULTIPART_OVERHEAD, receive
from gisp_service.api.deps import AppContext, ReadSession, TenantId
from gisp_service.api.errors import problems
from gisp_service.api.limits import UploadRate
from gisp_service.api.openapi import operation_id
from gisp_service.api.schemas import Page, PageAfter, PageLimit
from gisp_service.db.session import write_transaction

router = APIRouter(
    prefix="/v1/datasets", tags=["datasets"], responses=problems(401), generate_unique_id_function=operation_id
)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/DatasetUpload"}}},
    }
}


@router.post(
    "",
    name="upload",
    status_code=201,
    response_model=DatasetOut,
    responses=problems(400, 413, 415, 422, 429),
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(request: Request, ctx: AppContext, tenant: TenantId, _rate: UploadRate):
    """Upload calibration or evaluation data; it is validated with the engine's reader and stored by
    sha256, so a job never fails later on data the upload accepted. A table (.json, .csv, .parquet,
    .arrow, a zipped save_to_disk folder) is read with `datasets`; the form's column fields name the
    columns that hold the records' parts. The key is checked before any of the body is read; the
    body is streamed to disk; past GISP_MAX_UPLOAD_BYTES (512 MiB by default) the upload is refused
    with 413, before reading when Content-Length says so."""
    limit = ctx.rt.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit():  # a declared size past the tenant's storage quota is refused before reading
        await run_in_threadpool(service.check_storage, ctx.rt, tenant, int(declared) - MULTIPART_OVERHEAD)
    received = await receive(request, ctx.rt.store, limit)
    try:
        form = service.form_of(received.fields)
        return await run_in_threadpool(service.store_upload, ctx.rt, tenant, received, form)
    finally:
        received.discard()


@router.get("", name="list", response_model=Page[DatasetOut], responses=problems(422))
def list_datasets(
    session: ReadSession,
    tenant: TenantId,
    limit: PageLimit = 20,
    after: PageAfter = None,
):
    return service.page(session, tenant, limit, after)


@router.get("/{dataset_id}", name="get", response_model=DatasetOut, responses=problems(404))
def get_dataset(dataset_id: str, session: ReadSession, tenant: TenantId):
    return service.get(session, tenant, dataset_id)


@router.delete("/{dataset_id}", name="delete", status_code=204, responses=problems(404, 409))
def delete_dataset(dataset_id: str, ctx: AppContext, tenant: TenantId):
    """Soft delete: jobs keep their reference, the bytes stay in the store. 409 while a queued or
    running job uses it."""
    with write_transaction(ctx.rt.sessions) as session:
        service.delete(session, tenant, dataset_id)
    return Response(status_code=204)
