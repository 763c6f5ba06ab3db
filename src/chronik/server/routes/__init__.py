"""The API's routers, one module per concern; applications plug in beside `cart.py`.

An application's module exposes `router` (mounted under `/api/<name>`) and `page` (an `AppPage`
that puts it in the console's navigation; `static/apps/<name>.js` draws it). The video and bank
applications join as `video.py` and `bank.py` once their branch is merged: add them to
`APPLICATION_MODULES` and nothing else changes.
"""

from __future__ import annotations

from typing import Final

APPLICATION_MODULES: Final = ("chronik.server.routes.cart",)
