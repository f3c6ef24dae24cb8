"""Webhook routes: thin, they call `api.webhooks.service` only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from gisp_service.api.deps import ServiceContext, current_tenant, get_ctx
from gisp_service.api.errors import problems
from gisp_service.api.openapi import operation_id
from gisp_service.api.schemas import Page
from gisp_service.api.webhooks import service
from gisp_service.api.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut
from gisp_service.db.session import transaction

router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], responses=problems(401), generate_unique_id_function=operation_id
)


@router.post("", name="create", status_code=201, response_model=WebhookCreated, responses=problems(422))
def create_webhook(body: WebhookCreate, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    """Register an endpoint for events. The answer holds its signing `secret`, shown only here.
    Deliveries are signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    `webhook-signature`) and retried with exponential backoff. Loopback, link-local and private
    addresses are refused unless the operator set GISP_WEBHOOK_ALLOW_PRIVATE=1."""
    with transaction(ctx.rt.sessions) as session:
        return service.create(session, ctx.rt.settings, tenant, body)


@router.get("", name="list", response_model=Page[WebhookOut], responses=problems(422))
def list_webhooks(
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="cursor: the last id of the previous page"),
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    with ctx.rt.sessions() as session:
        return service.page(session, tenant, limit, after)


@router.get("/{webhook_id}", name="get", response_model=WebhookOut, responses=problems(404))
def get_webhook(webhook_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    with ctx.rt.sessions() as session:
        return service.out(service.get(session, tenant, webhook_id))


@router.delete("/{webhook_id}", name="delete", status_code=204, responses=problems(404))
def delete_webhook(webhook_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)):
    """No further deliveries; those already made stay listed."""
    with transaction(ctx.rt.sessions) as session:
        service.delete(session, tenant, webhook_id)
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries", name="deliveries", response_model=Page[DeliveryOut], responses=problems(404, 422)
)
def list_deliveries(
    webhook_id: str,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, description="cursor: the last id of the previous page"),
    ctx: ServiceContext = Depends(get_ctx),
    tenant: str = Depends(current_tenant),
):
    """The endpoint's deliveries, newest first, each with every attempt (status code, error, latency)."""
    with ctx.rt.sessions() as session:
        return service.deliveries(session, tenant, webhook_id, limit, after)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    name="redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(404, 409),
)
def redeliver(
    webhook_id: str, delivery_id: str, ctx: ServiceContext = Depends(get_ctx), tenant: str = Depends(current_tenant)
):
    """Send a delivery again, with the same `webhook-id` and a fresh retry budget."""
    with transaction(ctx.rt.sessions) as session:
        return service.redeliver(session, ctx.rt.settings, tenant, webhook_id, delivery_id)
