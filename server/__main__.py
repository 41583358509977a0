import sys

from flowcatalyst.server.cli import main

sys.exit(main(program="python -m flowcatalyst.server"))
