import sys

from flowcatalyst.edge.cli import main

sys.exit(main(program="python -m flowcatalyst.edge"))
