"""The `fc-server` and `fc-dev` commands. The server edition is built by its own issues; until
then both say so."""

import sys


def main(argv=None):
    sys.stderr.write("fc-server: not built yet (the server edition has not landed)\n")
    return 2


def dev_main(argv=None):
    sys.stderr.write("fc-dev: not built yet (the developer monolith has not landed)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
