"""chronik's server: the HTTP API, live subscriptions, API keys, metrics and the web console.

    from chronik.server import create_app
    app = create_app(store)          # an ASGI app; `chronik serve` runs it under uvicorn

The outermost layer: it imports the store, domain, groups and projections; nothing imports it.
"""

from chronik.server.app import create_app
from chronik.server.context import AppPage, ServerState

__all__ = ["AppPage", "ServerState", "create_app"]
