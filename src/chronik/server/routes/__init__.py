"""The API's routers, one module per concern; applications plug in beside `cart.py`.

An application's module exposes `router` (mounted under `/api/<name>`) and `page` (an `AppPage`
that puts it in the console's navigation; `static/apps/<name>.js` draws it). The three example
applications: the cart, the bank and the video pipeline.
"""

from __future__ import annotations

from typing import Final

APPLICATION_MODULES: Final = (
    "chronik.server.routes.cart",
    "chronik.server.routes.bank",
    "chronik.server.routes.video",
)
