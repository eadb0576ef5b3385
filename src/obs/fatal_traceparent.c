/*
 * fatal_traceparent.c - the thread's W3C trace context for fatal reports.
 *
 * A traceparent is "version-traceid-parentid-flags": 2, 32, 16 and 2
 * lowercase hex digits, dashes at offsets 2, 35 and 52, 55 characters for
 * version 00 (W3C Trace Context, "traceparent header").  A receiver must
 * ignore one whose version is ff, whose trace id or parent id is all
 * zeros, or that has any other character; a later version may append
 * fields, so for version > 00 we read the first 55 characters and require
 * that a '-' or the end follows them.  We keep those 55 characters.
 */
#include "internal.h"
#include "obs/fatal.h"

static _Thread_local char cur[MG_TRACEPARENT_LEN + 1];

static bool lower_hex(const char *s, size_t n, bool *all_zero)
{
    bool zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0')
            zero = false;
    }
    if (all_zero)
        *all_zero = zero;
    return true;
}

bool mg__traceparent_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = strnlen(s, MG_TRACEPARENT_LEN + 1);
    if (n < MG_TRACEPARENT_LEN)
        return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    bool zero;
    if (!lower_hex(s, 2, NULL) || (s[0] == 'f' && s[1] == 'f'))
        return false;
    if (!lower_hex(s + 3, 32, &zero) || zero)
        return false;
    if (!lower_hex(s + 36, 16, &zero) || zero)
        return false;
    if (!lower_hex(s + 53, 2, NULL))
        return false;
    bool v00 = s[0] == '0' && s[1] == '0';
    if (v00)
        return n == MG_TRACEPARENT_LEN;
    return n == MG_TRACEPARENT_LEN || s[MG_TRACEPARENT_LEN] == '-';
}

int mg_set_traceparent(const char *traceparent)
{
    if (!traceparent) {
        cur[0] = 0;
        return MG_OK;
    }
    if (!mg__traceparent_valid(traceparent))
        return MG_EINVAL;
    memcpy(cur, traceparent, MG_TRACEPARENT_LEN);
    cur[MG_TRACEPARENT_LEN] = 0;
    return MG_OK;
}

const char *mg__traceparent(void)
{
    return cur[0] ? cur : NULL;
}
