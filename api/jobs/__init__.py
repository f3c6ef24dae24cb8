"""Jobs: submit (validated, idempotent), list, get, cancel, events."""
