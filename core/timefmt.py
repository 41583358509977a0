"""UTC timestamp formatting and parsing without `datetime` (which MicroPython lacks).

Calendar arithmetic uses Howard Hinnant's days-from-civil algorithm, so results do not depend on
the local time zone or on `time.mktime`.
"""

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def epoch_from_utc(y, mo, d, h=0, mi=0, s=0):
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def iso_utc_ms(epoch_seconds):
    """`2026-05-13T15:42:08.331Z`: the FlowCatalyst signature timestamp format."""
    total_ms = int(epoch_seconds * 1000 + 0.5)
    secs, ms = divmod(total_ms, 1000)
    days, rem = divmod(secs, 86400)
    y, mo, d = civil_from_days(days)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, mo, d, h, mi, s, ms)


def parse_iso_utc(text):
    """Parse `YYYY-MM-DDTHH:MM:SS[.fff]` followed by `Z` or `+00:00`/`±HH:MM`; returns epoch
    seconds (float) or None when the text is not such a timestamp."""
    try:
        if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt ":
            return None
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        frac = 0.0
        if rest.startswith("."):
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac = float("0" + rest[:i])
            rest = rest[i:]
        if rest in ("Z", "z"):
            offset = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
        else:
            return None
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
            return None
        return epoch_from_utc(y, mo, d, h, mi, s) - offset + frac
    except (ValueError, IndexError):
        return None


def parse_http_date(text):
    """Parse an HTTP-date (RFC 9110: IMF-fixdate, RFC 850 or asctime); epoch seconds or None."""
    parts = text.replace(",", " ").replace("-", " ").split()
    try:
        if len(parts) == 6 and parts[5].upper() == "GMT":  # Sun 06 Nov 1994 08:49:37 GMT
            day, mon, year, clock = parts[1], parts[2], parts[3], parts[4]
        elif len(parts) == 5:  # asctime: Sun Nov  6 08:49:37 1994
            mon, day, clock, year = parts[1], parts[2], parts[3], parts[4]
        else:
            return None
        month = _MONTHS.index(mon.lower()) + 1
        y = int(year)
        if y < 100:  # RFC 850 two-digit years
            y += 2000 if y < 70 else 1900
        h, mi, s = clock.split(":")
        return epoch_from_utc(y, month, int(day), int(h), int(mi), int(s))
    except (ValueError, IndexError):
        return None
