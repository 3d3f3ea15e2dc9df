/* HTTP field values a static answer reads: dates, entity tags, ranges,
 * content codings. */
#define _GNU_SOURCE
#include "hvalue.h"

#include <string.h>
#include <time.h>

#include "lx.h"

/* ------------------------------------------------------------------ */
/* dates */

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static char *two(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

void lx_http_date_format(int64_t t, char buf[30])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
        tm.tm_year + 1900 < 0) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
        tm.tm_wday = 4;
    }
    int y = tm.tm_year + 1900;
    char *p = buf;
    memcpy(p, days[tm.tm_wday], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = two(p, tm.tm_mday);
    *p++ = ' ';
    memcpy(p, months[tm.tm_mon], 3);
    p += 3;
    *p++ = ' ';
    p = two(p, y / 100);
    p = two(p, y % 100);
    *p++ = ' ';
    p = two(p, tm.tm_hour);
    *p++ = ':';
    p = two(p, tm.tm_min);
    *p++ = ':';
    p = two(p, tm.tm_sec);
    memcpy(p, " GMT", 5);
}

static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

static int month_of(const char *s)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(s, months[i], 3) == 0)
            return i + 1;
    return -1;
}

/* "HH:MM:SS" */
static int clock_of(const char *s, int *hh, int *mm, int *ss)
{
    if (s[2] != ':' || s[5] != ':' || digits(s, 2, hh) ||
        digits(s + 3, 2, mm) || digits(s + 6, 2, ss) || *hh > 23 || *mm > 59 ||
        *ss > 60)
        return -1;
    return 0;
}

int lx_http_date_parse(const char *s, size_t n, int64_t *t)
{
    int d, mon, y, hh, mm, ss;
    if (n == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' &&
        s[16] == ' ' && memcmp(s + 25, " GMT", 4) == 0) {
        /* Sun, 06 Nov 1994 08:49:37 GMT */
        if (digits(s + 5, 2, &d) || (mon = month_of(s + 8)) < 0 ||
            digits(s + 12, 4, &y) || clock_of(s + 17, &hh, &mm, &ss))
            return -1;
    } else if (n == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' &&
               s[19] == ' ') {
        /* Sun Nov  6 08:49:37 1994 */
        char dd[2] = {s[8] == ' ' ? '0' : s[8], s[9]};
        if ((mon = month_of(s + 4)) < 0 || digits(dd, 2, &d) ||
            clock_of(s + 11, &hh, &mm, &ss) || digits(s + 20, 4, &y))
            return -1;
    } else {
        /* Sunday, 06-Nov-94 08:49:37 GMT */
        const char *c = memchr(s, ',', n);
        if (c == NULL || (size_t)(s + n - c) != 24 || c[1] != ' ' ||
            c[4] != '-' || c[8] != '-' || c[11] != ' ' ||
            memcmp(c + 20, " GMT", 4) != 0)
            return -1;
        if (digits(c + 2, 2, &d) || (mon = month_of(c + 5)) < 0 ||
            digits(c + 9, 2, &y) || clock_of(c + 12, &hh, &mm, &ss))
            return -1;
        y += y < 70 ? 2000 : 1900;
    }
    if (d < 1 || d > 31)
        return -1;
    *t = days_from_civil(y, mon, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

/* ------------------------------------------------------------------ */
/* header values */

static int ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

int lx_etag_match(const char *v, size_t n, const char *etag, size_t elen,
                  int strong)
{
    size_t i = 0;
    for (;;) {
        while (i < n && (ows(v[i]) || v[i] == ','))
            i++;
        if (i >= n)
            return 0;
        if (v[i] == '*')
            return 1;
        int weak = 0;
        if (n - i >= 2 && v[i] == 'W' && v[i + 1] == '/') {
            weak = 1;
            i += 2;
        }
        if (i >= n || v[i] != '"')
            return 0; /* not a list of entity tags */
        size_t start = i++;
        while (i < n && v[i] != '"')
            i++;
        if (i >= n)
            return 0;
        i++;
        if (i - start == elen && memcmp(v + start, etag, elen) == 0 &&
            !(strong && weak))
            return 1;
    }
}

static int parse_u64(const char *v, size_t *i, size_t n, uint64_t *out)
{
    size_t start = *i;
    uint64_t x = 0;
    while (*i < n && v[*i] >= '0' && v[*i] <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(v[*i] - '0');
        (*i)++;
    }
    *out = x;
    return *i > start ? 0 : -1;
}

int lx_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first,
                   uint64_t *last)
{
    size_t i = 0;
    if (n < 6 || !LX_CASEEQ_LIT(v, 6, "bytes="))
        return 0;
    i = 6;
    while (i < n && ows(v[i]))
        i++;
    uint64_t a = 0, b = 0;
    int suffix = 0, open = 0;
    if (i < n && v[i] == '-') {
        i++;
        if (parse_u64(v, &i, n, &b) < 0)
            return 0;
        suffix = 1;
    } else {
        if (parse_u64(v, &i, n, &a) < 0 || i >= n || v[i] != '-')
            return 0;
        i++;
        if (i < n && v[i] >= '0' && v[i] <= '9') {
            if (parse_u64(v, &i, n, &b) < 0 || b < a)
                return 0;
        } else {
            open = 1;
        }
    }
    while (i < n && ows(v[i]))
        i++;
    if (i < n)
        return 0; /* several ranges, or trailing garbage */
    if (suffix) {
        if (b == 0 || size == 0)
            return -1;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 1;
    }
    if (a >= size)
        return -1;
    *first = a;
    *last = open || b >= size ? size - 1 : b;
    return 1;
}

/* q of the element at v[i..] after its coding: 1 unless it says 0. */
static int q_nonzero(const char *v, size_t n, size_t i)
{
    while (i < n && v[i] != ',') {
        if (v[i] == ';') {
            i++;
            while (i < n && ows(v[i]))
                i++;
            if (i + 1 < n && (v[i] | 0x20) == 'q' && v[i + 1] == '=') {
                i += 2;
                if (i < n && v[i] == '0') {
                    i++;
                    if (i < n && v[i] == '.')
                        for (i++; i < n && v[i] == '0'; i++)
                            ;
                    if (i >= n || v[i] == ',' || ows(v[i]) || v[i] == ';')
                        return 0;
                }
                return 1;
            }
            continue;
        }
        i++;
    }
    return 1;
}

int lx_accepts(const char *v, size_t n, const char *coding)
{
    size_t clen = strlen(coding), i = 0;
    int star = -1;
    while (i < n) {
        while (i < n && (ows(v[i]) || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ';' && !ows(v[i]))
            i++;
        size_t len = i - start;
        int ok = q_nonzero(v, n, i);
        if (len == clen && lx_caseeq(v + start, coding, clen))
            return ok;
        if (len == 6 && clen == 4 && lx_caseeq(v + start, "x-gzip", 6) &&
            memcmp(coding, "gzip", 4) == 0)
            return ok;
        if (len == 1 && v[start] == '*')
            star = ok;
        while (i < n && v[i] != ',')
            i++;
    }
    return star == 1;
}
