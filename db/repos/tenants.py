"""Tenants and their API keys (stored as sha256 hashes; the key is shown once, at creation)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gisp_service.db.ids import new_id
from gisp_service.db.models import ApiKey, Tenant, utcnow

DEFAULT_TENANT = "default"  # owner of everything when auth is off


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(id=new_id("tn"), name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant_name: str, expires_at: datetime | None = None) -> str:
    tenant = get_or_create(session, tenant_name)
    key = "gisp_" + secrets.token_urlsafe(32)
    session.add(
        ApiKey(id=new_id("key"), tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:12], expires_at=expires_at)
    )
    session.flush()
    return key


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    """The tenant of a key that is neither revoked nor expired."""
    return session.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(
            ApiKey.key_hash == hash_key(key),
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
        )
    )


def list_keys(session: Session, tenant_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (with its tenant's name), oldest first; only prefixes are stored to show."""
    query = select(ApiKey, Tenant.name).join(Tenant, ApiKey.tenant_id == Tenant.id)
    if tenant_name is not None:
        query = query.where(Tenant.name == tenant_name)
    return [(key, name) for key, name in session.execute(query.order_by(ApiKey.id))]


def revoke_key(session: Session, ref: str) -> ApiKey:
    """Revoke the key with id or prefix `ref`; LookupError when none or several match."""
    matches = list(session.scalars(select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix == ref))))
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} keys have the id or prefix {ref!r}; give a key id from list-keys")
    key = matches[0]
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key
