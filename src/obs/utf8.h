/*
 * utf8.h - one UTF-8 check for every text the library writes for others to
 * parse (metric labels, the timeline's JSON, the fatal report's JSON).
 */
#ifndef MG_UTF8_H
#define MG_UTF8_H

#include <stddef.h>

/* The UTF-8 sequence at p, p[0] >= 0x80, with at most avail bytes there:
 * its length (2 to 4) when it is well formed (Unicode 15, table 3-7: no
 * overlong form, no surrogate, nothing above U+10FFFF), else minus the
 * length of its maximal subpart (1 to 3), which the caller replaces with
 * one U+FFFD (Unicode's recommended practice, as Python's and the WHATWG
 * decoders do).  Never reads past a NUL or past avail bytes. */
static inline int mg__utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    int need;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* E0 80..9F: overlong */
        hi = c == 0xed ? 0x9f : 0xbf; /* ED A0..BF: surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        lo = c == 0xf0 ? 0x90 : 0x80; /* F0 80..8F: overlong */
        hi = c == 0xf4 ? 0x8f : 0xbf; /* F4 90..: above U+10FFFF */
    } else {
        return -1; /* 80..C1 (continuation, overlong lead), F5..FF */
    }
    for (int j = 1; j < need; j++) {
        if ((size_t)j >= avail)
            return -j;
        unsigned char b = p[j];
        if (j == 1 ? b < lo || b > hi : (b & 0xc0) != 0x80)
            return -j;
    }
    return need;
}

#endif /* MG_UTF8_H */
