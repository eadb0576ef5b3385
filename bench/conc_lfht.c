/*
 * conc_lfht.c - the workload's concurrent phases on liburcu's lock-free
 * resizable hash table (cds_lfht, Debian liburcu-dev), QSBR flavor.
 *
 *   conc_lfht [--mode qsbr] [conc_harness.h options]
 *
 * How the table is used, as its documentation asks:
 * - Flavor: QSBR, the fastest read side (rcu_read_lock is empty); every
 *   thread that touches the table is registered, each worker announces a
 *   quiescent state every CC_BATCH ops, and the main thread goes offline
 *   while it sleeps through a run (else grace periods would wait for it).
 * - An entry is immutable once published: a put of an existing key makes a
 *   new entry and swaps it in with cds_lfht_add_replace; the old one (and a
 *   deleted one) is freed by call_rcu after a grace period.
 * - Hash: murmur3's 64-bit finalizer over the key xor a fixed seed.
 * - Created with CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, as a growable
 *   table is; its first size is the power of two >= N, the size it grows to
 *   anyway, because its resizes run in a background thread and must not
 *   still be running when the clock starts.
 * _LGPL_SOURCE inlines liburcu's read side and quiescent state (LGPL
 * code, in a benchmark binary that is not distributed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define _LGPL_SOURCE
#include "conc_harness.h"

#include <stddef.h>
#include <urcu/urcu-qsbr.h> /* the flavor, before the table's header */
#include <urcu/rculfhash.h>

#define HASH_SEED UINT64_C(0x2545F4914F6CDD1D)

typedef struct {
    struct cds_lfht_node node; /* first: a node pointer is an entry pointer */
    uint64_t key, val;
    struct rcu_head rcu;
} entry;

static unsigned long hash(uint64_t k)
{
    k ^= HASH_SEED;
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return (unsigned long)k;
}

static int match(struct cds_lfht_node *node, const void *key)
{
    return ((const entry *)node)->key == *(const uint64_t *)key;
}

static void free_entry(struct rcu_head *head)
{
    free((char *)head - offsetof(entry, rcu));
}

static bool get(void *ht, uint64_t key, uint64_t *val)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    urcu_qsbr_read_lock();
    cds_lfht_lookup((struct cds_lfht *)ht, hash(key), match, &key, &it);
    node = cds_lfht_iter_get_node(&it);
    if (node != NULL)
        *val = ((const entry *)node)->val;
    urcu_qsbr_read_unlock();
    return node != NULL;
}

static bool put(void *ht, uint64_t key, uint64_t val)
{
    struct cds_lfht_node *old;
    entry *e = (entry *)malloc(sizeof *e);
    if (e == NULL)
        return false;
    cds_lfht_node_init(&e->node);
    e->key = key;
    e->val = val;
    urcu_qsbr_read_lock();
    old = cds_lfht_add_replace((struct cds_lfht *)ht, hash(key), match, &key,
                               &e->node);
    urcu_qsbr_read_unlock();
    if (old != NULL)
        urcu_qsbr_call_rcu(&((entry *)old)->rcu, free_entry);
    return true;
}

static bool del(void *ht, uint64_t key)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    bool found = false;
    urcu_qsbr_read_lock();
    cds_lfht_lookup((struct cds_lfht *)ht, hash(key), match, &key, &it);
    node = cds_lfht_iter_get_node(&it);
    if (node != NULL && cds_lfht_del((struct cds_lfht *)ht, node) == 0) {
        urcu_qsbr_call_rcu(&((entry *)node)->rcu, free_entry);
        found = true;
    }
    urcu_qsbr_read_unlock();
    return found;
}

static size_t len(void *ht)
{
    long before, after;
    unsigned long count;
    urcu_qsbr_read_lock();
    cds_lfht_count_nodes((struct cds_lfht *)ht, &before, &count, &after);
    urcu_qsbr_read_unlock();
    return (size_t)count;
}

static void enter(void *ht)
{
    (void)ht;
    urcu_qsbr_register_thread();
}

static void leave(void *ht)
{
    (void)ht;
    urcu_qsbr_unregister_thread();
}

static void quiesce(void *ht)
{
    (void)ht;
    urcu_qsbr_quiescent_state();
}

static void offline(void *ht)
{
    (void)ht;
    urcu_qsbr_thread_offline();
}

static void online(void *ht)
{
    (void)ht;
    urcu_qsbr_thread_online();
}

static const cc_ops OPS = {get,   put,     del,     len,    enter,
                           leave, quiesce, offline, online, NULL};

static void *worker(void *arg)
{
    cc_loop(arg, &OPS);
    return NULL;
}

static const char *const modes[] = {"qsbr"};

int main(int argc, char **argv)
{
    cc_args a;
    struct cds_lfht *ht;
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    unsigned long size = 1;
    int rc = cc_parse(&a, "urcu-lfht", "conc_lfht", modes, 1, argc, argv);
    if (rc != 0)
        return rc;
    while (size < a.n)
        size <<= 1;
    urcu_qsbr_register_thread();
    ht = cds_lfht_new_flavor(size, 1, 0,
                             CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
                             &urcu_qsbr_flavor, NULL);
    if (ht == NULL)
        cc_fail(&a, "cds_lfht_new failed");
    cc_main(&a, ht, &OPS, worker);

    /* Empty the table (it must be empty to be destroyed), then, offline,
     * wait for every deferred free and destroy it.  Offline: emptying
     * starts a shrink, whose worker waits for a grace period while
     * cds_lfht_destroy waits for that worker. */
    urcu_qsbr_read_lock();
    cds_lfht_for_each(ht, &it, node)
    {
        if (cds_lfht_del(ht, node) == 0)
            urcu_qsbr_call_rcu(&((entry *)node)->rcu, free_entry);
    }
    urcu_qsbr_read_unlock();
    urcu_qsbr_thread_offline();
    urcu_qsbr_barrier();
    if (cds_lfht_destroy(ht, NULL) != 0)
        cc_fail(&a, "cds_lfht_destroy failed");
    urcu_qsbr_unregister_thread();
    return 0;
}
