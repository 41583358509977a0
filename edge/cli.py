"""The `fc-edge` command (also `python -m flowcatalyst.edge`)."""

import asyncio
import signal
import sys

from flowcatalyst.core import log

from .app import VERSION, EdgeApp, StartupError
from .settings import SettingsError, help_text, parse
from .sqlstore import StoreError

_log = log.logger("edge")


async def serve(app):
    """Run a RouterApp until SIGTERM/SIGINT, then stop it cleanly; returns the exit status."""
    stop = asyncio.Event()
    stop_on_signals(asyncio.get_running_loop(), stop.set)
    try:
        await app.start()
    except BaseException:
        await app.stop()
        raise
    try:
        await stop.wait()
        _log.info("signal received: stopping")
    finally:
        await app.stop()
    return 0


def stop_on_signals(loop, callback):
    """Call `callback` in `loop` on SIGTERM or SIGINT. Windows has neither loop signal handlers
    nor SIGTERM: there Ctrl-C (SIGINT) and Ctrl-Break (SIGBREAK, what a service wrapper sends
    to the process group) do it, and the proactor loop wakes for them through its wakeup fd."""
    if sys.platform == "win32":
        for sig in (signal.SIGINT, signal.SIGBREAK):
            try:
                signal.signal(sig, lambda signum, frame: loop.call_soon_threadsafe(callback))
            except ValueError:  # not the main thread
                pass
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except RuntimeError:  # not the main thread
            pass


async def run(settings):
    return await serve(EdgeApp(settings))


def main(argv=None, program="fc-edge"):
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(help_text(program))
        return 0
    if "--version" in argv:
        sys.stdout.write("%s %s\n" % (program, VERSION))
        return 0
    try:
        settings = parse(argv).validate()
        log.configure(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as e:
        sys.stderr.write("%s: %s\n" % (program, e))
        return 2
    try:
        return asyncio.run(run(settings))
    except (StartupError, StoreError) as e:
        sys.stderr.write("%s: %s\n" % (program, e))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
