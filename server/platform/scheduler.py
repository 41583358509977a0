"""(being written)"""


class Scheduler:
    def __init__(self, platform, publisher):
        self.platform = platform
        self.publisher = publisher
        self.loops = []

    def start(self):
        return self

    async def stop(self):
        pass
