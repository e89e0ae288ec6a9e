"""The control plane: FastAPI app over the store, serving each node its compiled policy.

`create_app(store)` builds the app; `run(url, host, port)` serves it with uvicorn. The package
never touches a kernel and never logs request bodies or customer text."""

from __future__ import annotations

from nodewall.server.app import create_app
from nodewall.server.run import run

__all__ = ["create_app", "run"]
