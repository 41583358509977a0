"""(being written)"""

SCHEMAS = {}


def register(api, platform):
    pass
