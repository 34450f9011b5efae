/* units.c — the unit parsers and formatters declared in config.h.
 *
 * Sizes are digits with an optional K, M, G or T (powers of 1024, either case); a bare number
 * is bytes. Durations are digits followed by us, ms or s; only 0 may omit the unit, so that a
 * forgotten unit never silently means microseconds. Percentages are digits 0..100 with an
 * optional '%'. Nothing else is accepted: no sign, no spaces, no fractions. Syntax is checked
 * before the value is computed, so malformed text is always -EINVAL and only well-formed text
 * that does not fit is -ERANGE.
 */
#include "core/config.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Scans the leading digits of s. Returns how many there are; *v gets their value, or
 * *overflow is set when they do not fit in 64 bits. */
static size_t scan_digits(const char *s, uint64_t *v, bool *overflow)
{
    size_t n = 0;
    *v = 0;
    *overflow = false;
    while (s[n] >= '0' && s[n] <= '9') {
        unsigned d = (unsigned)(s[n] - '0');
        if (*v > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            *v = *v * 10 + d;
        n++;
    }
    return n;
}

int lethe_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v;
    bool overflow;
    size_t n = scan_digits(s, &v, &overflow);
    if (n == 0)
        return -EINVAL;
    unsigned shift = 0;
    switch (s[n]) {
    case '\0':
        break;
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        return -EINVAL;
    }
    if (shift && s[n + 1] != '\0')
        return -EINVAL;
    if (overflow || v > (UINT64_MAX >> shift))
        return -ERANGE;
    *bytes = v << shift;
    return 0;
}

int lethe_parse_duration(const char *s, uint64_t *usec)
{
    uint64_t v;
    bool overflow;
    size_t n = scan_digits(s, &v, &overflow);
    if (n == 0)
        return -EINVAL;
    const char *unit = s + n;
    uint64_t mult;
    if (strcmp(unit, "us") == 0)
        mult = 1;
    else if (strcmp(unit, "ms") == 0)
        mult = 1000;
    else if (strcmp(unit, "s") == 0)
        mult = 1000000;
    else if (*unit == '\0' && !overflow && v == 0)
        mult = 1; /* 0 needs no unit */
    else
        return -EINVAL;
    if (overflow || v > UINT64_MAX / mult)
        return -ERANGE;
    *usec = v * mult;
    return 0;
}

int lethe_parse_percent(const char *s, unsigned *pct)
{
    uint64_t v;
    bool overflow;
    size_t n = scan_digits(s, &v, &overflow);
    if (n == 0)
        return -EINVAL;
    if (s[n] != '\0' && strcmp(s + n, "%") != 0)
        return -EINVAL;
    if (overflow || v > 100)
        return -ERANGE;
    *pct = (unsigned)v;
    return 0;
}

int lethe_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (unsigned i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

void lethe_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char units[] = "TGMK";
    for (unsigned i = 0; i < 4; i++) {
        unsigned shift = 10 * (4 - i);
        uint64_t unit = 1ULL << shift;
        if (bytes != 0 && bytes % unit == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(bytes >> shift), units[i]);
            return;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)bytes);
}

void lethe_format_duration(uint64_t usec, char *buf, size_t len)
{
    if (usec == 0)
        snprintf(buf, len, "0");
    else if (usec % 1000000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(usec / 1000000));
    else if (usec % 1000 == 0)
        snprintf(buf, len, "%llums", (unsigned long long)(usec / 1000));
    else
        snprintf(buf, len, "%lluus", (unsigned long long)usec);
}
