"""Repositories: every SQL statement of the service lives in these modules, one per domain.
Functions take a Session and never commit; the caller owns the transaction."""
