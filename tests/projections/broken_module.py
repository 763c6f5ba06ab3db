"""A projection module that fails on import with something other than ImportError (`--module` test)."""

raise RuntimeError("the settings file is missing")
