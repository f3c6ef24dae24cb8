"""Write the API's OpenAPI document to openapi.json (the committed contract). Run it after
changing a route or a schema; tests/service/test_contract.py fails until the snapshot matches."""

from __future__ import annotations

import tempfile

from gisp_service.api.app import create_app
from gisp_service.api.openapi import SNAPSHOT, render
from gisp_service.core.settings import Settings


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        SNAPSHOT.write_text(render(create_app(Settings(data_dir=data_dir))))
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
