"""Checkpoint routes: thin, they call `api.checkpoints.service` only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from gisp_service.api.checkpoints import conditional, service
from gisp_service.api.checkpoints.schemas import CheckpointOut, CheckpointPage
from gisp_service.api.deps import AppContext, ReadSession, TenantId
from gisp_service.api.errors import problems
from gisp_service.api.openapi import operation_id
from gisp_service.api.schemas import PageAfter, PageLimit

router = APIRouter(tags=["checkpoints"], responses=problems(401), generate_unique_id_function=operation_id)
TAR = "application/x-tar"
GGUF = "application/octet-stream"
BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/v1/jobs/{job_id}/checkpoints", name="list", response_model=CheckpointPage, responses=problems(404, 422))
def list_checkpoints(
    job_id: str, session: ReadSession, tenant: TenantId, limit: PageLimit = 20, after: PageAfter = None
):
    """The job's registered checkpoints, by target sparsity, a page at a time (`after`: the last
    checkpoint id of the previous page); `nested` says whether they all are subnetworks of each
    less sparse one (a ranking method's are; a `tyr` job's usually are not)."""
    return service.for_job(session, tenant, job_id, limit, after)


@router.get(
    "/v1/jobs/{job_id}/checkpoints/select",
    name="select",
    response_model=CheckpointOut,
    responses=problems(404, 422),
)
def select_checkpoint(
    job_id: str,
    session: ReadSession,
    tenant: TenantId,
    max_params: Annotated[int | None, Query(ge=0)] = None,
    max_bytes: Annotated[int | None, Query(ge=0)] = None,
    max_flops_per_token: Annotated[int | None, Query(ge=0)] = None,
):
    """The least-pruned checkpoint within every given bound (at least one); 404 naming the
    smallest when none fits."""
    return service.select(session, tenant, job_id, max_params, max_bytes, max_flops_per_token)


@router.get("/v1/checkpoints/{checkpoint_id}", name="get", response_model=CheckpointOut, responses=problems(404))
def get_checkpoint(checkpoint_id: str, session: ReadSession, tenant: TenantId):
    return service.get(session, tenant, checkpoint_id)


DOWNLOAD_RESPONSES = {
    200: {"content": {TAR: BINARY, GGUF: BINARY}, "description": "the tar, or the GGUF file"},
    206: {"content": {TAR: BINARY, GGUF: BINARY}, "description": "a byte range"},
    304: {"description": "If-None-Match matched the ETag (a strong or weak tag, one of a list, or *)"},
} | problems(404, 409, 416, 422, 507)
Format = Annotated[
    Literal["hf", "gguf"],
    Query(alias="format", description="hf: the Hugging Face folder as a tar; gguf: a GGUF file (f16), llama.cpp"),
]


@router.get(
    "/v1/checkpoints/{checkpoint_id}/download",
    name="download",
    response_class=FileResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download_checkpoint(
    checkpoint_id: str, request: Request, ctx: AppContext, tenant: TenantId, artifact_format: Format = "hf"
):
    """The checkpoint's Hugging Face folder as a tar (files at the archive root), or with
    `format=gguf` as a GGUF file that llama.cpp runs; each built on its first request and cached.
    `ETag` is that artifact's sha256; Range requests get 206 (an invalid Range is ignored, as RFC
    9110 says); If-None-Match, 304."""
    download = service.download(ctx.rt, tenant, checkpoint_id, artifact_format)
    return conditional.file_response(request, download.path, download.sha256, download.media_type, download.filename)


@router.head(
    "/v1/checkpoints/{checkpoint_id}/download",
    name="download_head",
    response_class=FileResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download_checkpoint_head(
    checkpoint_id: str, request: Request, ctx: AppContext, tenant: TenantId, artifact_format: Format = "hf"
):
    """The download's headers alone (size, ETag, checksum), e.g. before a resumable download."""
    return download_checkpoint(checkpoint_id, request, ctx, tenant, artifact_format)
