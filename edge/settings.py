"""Settings from one table that gives each setting its command-line flag, its environment
variable, its default and its help, so `--help`, the environment and the docs cannot drift
apart. A flag wins over the environment, the environment over the default. SETTINGS is the
edge's table; the server's router reuses most of its entries (`entry`)."""

import ipaddress
import os

AUTH_MODES = ("NONE", "BASIC", "TOKEN")


class SettingsError(ValueError):
    pass


def _port(text):
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError("must be 1..65535")
    return port


def _seconds(text):
    value = float(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive_seconds(text):
    value = float(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _upper(choices):
    def parse(text):
        value = text.strip().upper()
        if value not in choices:
            raise ValueError("must be one of %s" % ", ".join(choices))
        return value

    return parse


def _text(text):
    return text


# (attribute, flag, environment variable, default, parser, help)
SETTINGS = (
    ("config_file", "--config", "FC_CONFIG_FILE", None, _text, "router config JSON (processingPools, queues); without it and without a config URL: one pool DEFAULT (concurrency 10) and one queue 'default'"),
    ("db_path", "--db", "FC_DB_PATH", "./flowcatalyst-edge.db", _text, "SQLite database file holding the queues"),
    ("host", "--host", "FC_API_HOST", "127.0.0.1", _text, "address the HTTP API listens on"),
    ("port", "--port", "FC_API_PORT", "8080", _port, "port of the HTTP API"),
    ("config_urls", None, "FLOWCATALYST_CONFIG_URL", None, _text, "comma-separated platform URLs to fetch the router config from (replaces --config)"),
    ("config_interval", None, "FLOWCATALYST_CONFIG_INTERVAL", "300", _positive_seconds, "seconds between config fetches; changes apply without restart"),
    ("platform_api_key", None, "PLATFORM_API_KEY", None, _text, "sent as X-API-Key when fetching the config"),
    ("auth_mode", None, "AUTH_MODE", "NONE", _upper(AUTH_MODES), "NONE, BASIC or TOKEN; /health* and /metrics are always public"),
    ("basic_username", None, "AUTH_BASIC_USERNAME", None, _text, "user for AUTH_MODE=BASIC"),
    ("basic_password", None, "AUTH_BASIC_PASSWORD", None, _text, "password for AUTH_MODE=BASIC"),
    ("api_token", None, "FC_API_TOKEN", None, _text, "bearer token for AUTH_MODE=TOKEN"),
    ("tls_cert", "--tls-cert", "FC_TLS_CERT", None, _text, "serve the API over HTTPS with this certificate (PEM)"),
    ("tls_key", "--tls-key", "FC_TLS_KEY", None, _text, "private key (PEM) for --tls-cert"),
    ("request_timeout", None, "FC_HTTP_TIMEOUT", "30", _positive_seconds, "seconds a target has to answer one delivery"),
    ("connect_timeout", None, "FC_HTTP_CONNECT_TIMEOUT", "10", _positive_seconds, "seconds to connect to a target"),
    ("shutdown_timeout", None, "FC_SHUTDOWN_TIMEOUT", "30", _seconds, "seconds in-flight deliveries may take to finish on SIGTERM/SIGINT"),
    ("sqlite_sync", None, "FC_SQLITE_SYNC", "FULL", _upper(("OFF", "NORMAL", "FULL", "EXTRA")), "SQLite synchronous mode: FULL survives power loss, NORMAL only process crashes"),
    ("log_format", None, "FC_LOG_FORMAT", "json", _text, "json (one object per line) or text"),
    ("log_level", None, "FC_LOG_LEVEL", "INFO", _text, "DEBUG, INFO, WARN or ERROR"),
)
FLAGS = ("--insecure",)  # boolean flags


def entry(table, attribute, default=None, help=None):
    """A copy of `table`'s entry for `attribute`, with another default or help text (other
    editions reuse the edge's entries)."""
    for row in table:
        if row[0] == attribute:
            return row[:3] + (default if default is not None else row[3], row[4], help if help is not None else row[5])
    raise KeyError(attribute)


class Settings:
    """Values for every entry of TABLE; `parse` reads them from argv and the environment."""

    TABLE = ()
    USAGE = ""
    DESCRIPTION = ""
    INSECURE_FLAG = True  # the command serves an API that --insecure may open up

    def __init__(self, **values):
        for attribute, _, _, default, parse_value, _ in self.TABLE:
            setattr(self, attribute, values.get(attribute, None if default is None else parse_value(default)))
        self.insecure = values.get("insecure", False)

    def validate(self):
        """Combinations that cannot work, refused before anything starts."""
        if self.auth_mode == "BASIC" and not (self.basic_username and self.basic_password):
            raise SettingsError("AUTH_MODE=BASIC needs AUTH_BASIC_USERNAME and AUTH_BASIC_PASSWORD")
        if self.auth_mode == "TOKEN" and not self.api_token:
            raise SettingsError("AUTH_MODE=TOKEN needs FC_API_TOKEN")
        if self.auth_mode == "NONE" and not is_loopback(self.host) and not self.insecure:
            raise SettingsError(
                "refusing to listen on %s without authentication: set AUTH_MODE=BASIC or TOKEN, listen on 127.0.0.1, or pass --insecure" % self.host
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("--tls-cert and --tls-key go together")
        for path in (self.tls_cert, self.tls_key, self.config_file):
            if path and not os.path.isfile(path):
                raise SettingsError("file not found: %s" % path)
        if self.config_file and self.config_urls:
            raise SettingsError("give either --config/FC_CONFIG_FILE or FLOWCATALYST_CONFIG_URL, not both")
        return self

    @classmethod
    def parse(cls, argv, environ=None):
        """Settings from command-line arguments and the environment; SettingsError says which
        flag or variable is wrong and why. `--help` is handled by the caller."""
        environ = os.environ if environ is None else environ
        values = {}
        by_flag = {s[1]: s for s in cls.TABLE if s[1]}
        for attribute, _, env, _, parse_value, _ in cls.TABLE:
            raw = environ.get(env)
            if raw is not None and raw != "":
                values[attribute] = _parse(parse_value, raw, env)
        i = 0
        while i < len(argv):
            arg = argv[i]
            name, eq, inline = arg.partition("=")
            if name in FLAGS and not eq:
                values[name[2:]] = True
                i += 1
                continue
            spec = by_flag.get(name)
            if spec is None:
                raise SettingsError("unknown argument %s (see --help)" % arg)
            if eq:
                raw = inline
            else:
                if i + 1 >= len(argv):
                    raise SettingsError("%s needs a value" % name)
                i += 1
                raw = argv[i]
            values[spec[0]] = _parse(spec[4], raw, name)
            i += 1
        return cls(**values)

    @classmethod
    def help_text(cls, program, usage=None, description=None):
        lines = ["usage: %s %s" % (program, usage or cls.USAGE), "", description or cls.DESCRIPTION, "", "options and environment (a flag wins over its variable):"]
        for _, flag, env, default, _, text in cls.TABLE:
            name = ("%s, %s" % (flag, env)) if flag else env
            lines.append("  %s" % name)
            lines.append("      %s%s" % (text, " (default: %s)" % default if default is not None else ""))
        if cls.INSECURE_FLAG:
            lines.append("  --insecure")
            lines.append("      allow no authentication (AUTH_MODE=NONE / FC_AUTH=none) on a non-loopback address")
        lines.append("  --version, -h/--help")
        return "\n".join(lines) + "\n"


class EdgeSettings(Settings):
    TABLE = SETTINGS
    USAGE = "[--config FILE] [--db PATH] [--host HOST] [--port PORT] [--tls-cert PEM --tls-key PEM] [--insecure]"
    DESCRIPTION = (
        "FlowCatalyst edge: keeps message pointers published over HTTP in SQLite and delivers them\n"
        "to their targets with per-group order, concurrency and rate limits, circuit breakers and\n"
        "retries. Stops cleanly on SIGTERM/SIGINT."
    )


def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"  # a name: only this one is loopback by definition


def _parse(parse_value, raw, where):
    try:
        return parse_value(raw)
    except ValueError as e:
        raise SettingsError("%s=%r: %s" % (where, raw, e)) from e


parse = EdgeSettings.parse
help_text = EdgeSettings.help_text
