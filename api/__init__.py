"""The HTTP API: one folder per domain (thin router, service module with the logic, schemas),
RFC 9457 problem+json errors, API-key auth with tenant scoping."""
