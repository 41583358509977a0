"""`fc-server outbox schema --db sqlite|postgres|mysql [--table NAME]`: print the DDL of the
outbox table and its indexes (schema.create_table_script), to apply with the database's own
tool or to copy into the application's migrations."""

import sys

from .schema import DEFAULT_TABLE, DIALECTS, create_table_script

USAGE = (
    """usage: fc-server outbox schema --db sqlite|postgres|mysql [--table NAME]

Print the SQL that creates the outbox table (default %s) and its indexes.
  --db      sqlite, postgres or mysql (MySQL 8 / MariaDB)
  --table   table name, optionally schema-qualified (schema.table)
  -h, --help
"""
    % DEFAULT_TABLE
)


def schema_main(argv, out=sys.stdout):
    """Exit code: 0, or 2 (with the reason on stderr) for bad arguments."""
    try:
        options = _options(argv)
        if options is None:
            out.write(USAGE)
            return 0
        if "db" not in options:
            raise ValueError("--db is required (%s)" % "|".join(DIALECTS))
        script = create_table_script(options["db"], options.get("table", DEFAULT_TABLE))
    except ValueError as e:
        sys.stderr.write("fc-server outbox schema: %s\n%s" % (e, USAGE))
        return 2
    out.write(script)
    return 0


def _options(argv):
    """{"db": ..., "table": ...} from `--db X`, `--db=X`, ...; None for --help."""
    options = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            return None
        name, equals, value = arg.partition("=")
        if name not in ("--db", "--table"):
            raise ValueError("unknown argument %r" % arg)
        if not equals:
            if not args:
                raise ValueError("%s needs a value" % name)
            value = args.pop(0)
        options[name[2:]] = value
    return options
