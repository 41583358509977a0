"""`fc-server` (also `python -m flowcatalyst.server`) and `fc-dev`.

  fc-server router     the router on SQS, NATS JetStream or SQLite queues (ready)
  fc-server platform   the platform API, scheduler and stream processor (not built yet)
  fc-server outbox     the outbox processor (not built yet)
"""

import asyncio
import sys

from flowcatalyst.core import log
from flowcatalyst.edge.routerapp import VERSION, StartupError
from flowcatalyst.edge.settings import SettingsError
from flowcatalyst.edge.sqlstore import StoreError

USAGE = """usage: %(p)s COMMAND [options]

FlowCatalyst server edition.

commands:
  router     consume message pointers from SQS, NATS JetStream or SQLite queues and deliver them
             (%(p)s router --help)
  platform   the platform API, scheduler and stream processor (not built yet)
  outbox     the outbox processor (not built yet)

  --version, -h/--help
"""

NOT_BUILT = ("platform", "outbox", "all", "dev")


def main(argv=None, program="fc-server"):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE % {"p": program})
        return 0 if argv else 2
    if argv[0] == "--version":
        sys.stdout.write("%s %s\n" % (program, VERSION))
        return 0
    command, args = argv[0], argv[1:]
    if command == "router":
        return router_main(args, program)
    if command in NOT_BUILT:
        sys.stderr.write("%s %s: not built yet (its issue has not landed)\n" % (program, command))
        return 2
    sys.stderr.write("%s: unknown command %r\n\n%s" % (program, command, USAGE % {"p": program}))
    return 2


def router_main(args, program):
    from .settings import RouterServerSettings

    if "-h" in args or "--help" in args:
        sys.stdout.write(RouterServerSettings.help_text(program))
        return 0
    try:
        settings = RouterServerSettings.parse(args).validate()
        log.configure(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as e:
        sys.stderr.write("%s router: %s\n" % (program, e))
        return 2
    try:
        return run(settings)
    except (StartupError, StoreError) as e:
        sys.stderr.write("%s router: %s\n" % (program, e))
        return 2
    except KeyboardInterrupt:
        return 130


def run(settings):
    from flowcatalyst.edge.cli import serve

    from .app import RouterServerApp

    async def go():
        return await serve(RouterServerApp(settings))

    if settings.event_loop == "UVLOOP":
        try:
            import uvloop
        except ImportError:
            raise StartupError("FC_EVENT_LOOP=uvloop, but uvloop is not installed (pip install 'flowcatalyst[uvloop]')") from None
        log.logger("server").info("event loop: uvloop", version=uvloop.__version__)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(go())
    return asyncio.run(go())


def dev_main(argv=None):
    sys.stderr.write("fc-dev: not built yet (the developer monolith has not landed)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
