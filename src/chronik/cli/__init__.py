"""The `chronik` command line."""
