"""One video worker process: `python -m chronik.examples.video --store URL --blobs DIR [--id ID] ...`.

See `worker.main` for the options; it stops on SIGTERM/SIGINT and prints its statistics as JSON.
"""

from chronik.examples.video.worker import main

main()
