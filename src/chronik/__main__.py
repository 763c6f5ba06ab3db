"""`python -m chronik ...` is the `chronik` command."""

from chronik.cli.app import main

main()
