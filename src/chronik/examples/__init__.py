"""Worked examples built on chronik's public API. The outermost layer: nothing in chronik imports them
except the CLI, which registers their aggregates so `chronik state` and `chronik demo` can show them."""
