"""`fc-server` (also `python -m flowcatalyst.server`) and `fc-dev`.

(no command), dev   the developer monolith: everything in one process on 127.0.0.1:8080
all                 platform API, stream processor, scheduler and router (FC_*_ENABLED)
platform            the platform API only
stream              the stream processor only (fan-out, read projections)
scheduler           the dispatch scheduler only
router              the standalone router on SQS, NATS JetStream or SQLite queues
outbox              the outbox processor beside an application (outbox schema: its table's SQL)
"""

import asyncio
import sys

from flowcatalyst.core import log
from flowcatalyst.edge.routerapp import VERSION, StartupError
from flowcatalyst.edge.settings import SettingsError
from flowcatalyst.edge.sqlstore import StoreError

USAGE = """usage: %(p)s [COMMAND] [options]

FlowCatalyst server edition.

commands:
  dev        (the default) the developer monolith: platform API, stream processor,
             scheduler, router, dashboard, on embedded SQLite, on 127.0.0.1:8080
  all        platform API, stream processor, scheduler and router in one process
             (each switched by FC_PLATFORM_ENABLED, FC_STREAM_ENABLED,
             FC_SCHEDULER_ENABLED, FC_ROUTER_ENABLED)
  platform   the platform API only (/api/*)
  stream     the stream processor only: fan-out of events to subscriptions, read models
  scheduler  the dispatch scheduler only: PENDING jobs to the dispatch queue
  router     consume message pointers from SQS, NATS JetStream or SQLite queues and
             deliver them (configured by a platform or a file)
  outbox     the outbox processor: forwards an application's outbox rows to the
             platform (`outbox schema --db sqlite|postgres|mysql` prints the table)

  %(p)s COMMAND --help lists the command's settings.
  --version, -h/--help
"""

# subcommand -> the parts it runs (None: as FC_*_ENABLED say, all on by default)
PARTS = {
    "dev": None,
    "all": None,
    "platform": {
        "platform_enabled": True,
        "router_enabled": False,
        "stream_enabled": False,
        "scheduler_enabled": False,
    },
    "stream": {
        "platform_enabled": False,
        "router_enabled": False,
        "stream_enabled": True,
        "scheduler_enabled": False,
    },
    "scheduler": {
        "platform_enabled": False,
        "router_enabled": False,
        "stream_enabled": False,
        "scheduler_enabled": True,
    },
}


def main(argv=None, program="fc-server"):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE % {"p": program})
        return 0
    if argv and argv[0] == "--version":
        sys.stdout.write("%s %s\n" % (program, VERSION))
        return 0
    if not argv or argv[0].startswith("-"):
        return platform_main("dev", argv, program)  # no command: the developer monolith
    command, args = argv[0], argv[1:]
    if command == "router":
        return router_main(args, program)
    if command in PARTS:
        return platform_main(command, args, program)
    if command == "outbox":
        return outbox_main(args, program)
    sys.stderr.write("%s: unknown command %r\n\n%s" % (program, command, USAGE % {"p": program}))
    return 2


def dev_main(argv=None):
    return platform_main("dev", sys.argv[1:] if argv is None else argv, "fc-dev")


def platform_main(command, args, program):
    from .platform import devmode
    from .platform.settings import PlatformSettings

    if "-h" in args or "--help" in args:
        sys.stdout.write(PlatformSettings.help_text(program, command))
        return 0
    if "--version" in args:
        sys.stdout.write("%s %s\n" % (program, VERSION))
        return 0
    try:
        if command == "dev":
            settings = devmode.settings(args)
        else:
            settings = PlatformSettings.parse(args, overrides=PARTS[command]).validate()
        log.configure(settings.log_level, settings.log_format)
    except (SettingsError, ValueError, OSError) as e:
        sys.stderr.write("%s %s: %s\n" % (program, command, e))
        return 2
    from .platform.app import PlatformServer

    server = PlatformServer(settings)
    if command == "dev":
        server.on_started = devmode.print_banner
    return _run(program, command, server, settings.event_loop)


def outbox_main(args, program):
    from .outbox.settings import OutboxSettings

    if args and args[0] == "schema":
        from .outbox.schemacli import schema_main

        return schema_main(args[1:])
    if "-h" in args or "--help" in args:
        sys.stdout.write(OutboxSettings.help_text(program))
        return 0
    try:
        settings = OutboxSettings.parse(args).validate()
        log.configure(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as e:
        sys.stderr.write("%s outbox: %s\n" % (program, e))
        return 2
    from .outbox.app import OutboxServer

    return _run(program, "outbox", OutboxServer(settings), "ASYNCIO")


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
    from .app import RouterServerApp

    return _run(program, "router", RouterServerApp(settings), settings.event_loop)


def _run(program, command, app, event_loop):
    """Serve `app` until SIGTERM/SIGINT on asyncio or uvloop; the exit status."""
    from flowcatalyst.edge.cli import serve

    async def go():
        return await serve(app)

    try:
        if event_loop == "UVLOOP":
            try:
                import uvloop
            except ImportError:
                raise StartupError(
                    "FC_EVENT_LOOP=uvloop, but uvloop is not installed (pip install 'flowcatalyst[uvloop]')"
                ) from None
            log.logger("server").info("event loop: uvloop", version=uvloop.__version__)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(go())
        return asyncio.run(go())
    except (StartupError, StoreError) as e:
        sys.stderr.write("%s %s: %s\n" % (program, command, e))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
