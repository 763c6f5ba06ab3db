"""The command line: `chronik append | read | history | state | demo`. See `app.py`."""
