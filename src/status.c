/*
 * status.c - names and messages, generated from the X-macro tables in
 * mapguard.h (one source of truth).
 */
#include "internal.h"

const char *mg_strerror(int status)
{
    switch (status) {
#define XX(name, value, msg)                                                  \
    case value:                                                               \
        return msg;
        MG_STATUS_MAP(XX)
#undef XX
    default:
        return "unknown status";
    }
}

const char *mg_status_name(int status)
{
    switch (status) {
#define XX(name, value, msg)                                                  \
    case value:                                                               \
        return #name;
        MG_STATUS_MAP(XX)
#undef XX
    default:
        return NULL;
    }
}

const char *mg_fatal_message(mg_fatal_kind kind)
{
    static const char *const msgs[] = {
#define XX(name, msg) msg,
        MG_FATAL_MAP(XX)
#undef XX
    };
    if ((unsigned)kind >= MG_FATAL_KIND_COUNT)
        return "unknown fatal error";
    return msgs[kind];
}
