import sys

from flowcatalyst.core.runner import main

sys.exit(main(sys.argv[1:]))
