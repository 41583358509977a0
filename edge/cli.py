"""The `fc-edge` command. The edge edition is built by its own issue; until then it says so."""

import sys


def main(argv=None):
    sys.stderr.write("fc-edge: not built yet (the edge edition has not landed)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
