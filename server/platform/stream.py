"""(being written)"""


class StreamProcessor:
    def __init__(self, platform):
        self.platform = platform
        self.loops = []

    def start(self):
        return self

    async def stop(self):
        pass
