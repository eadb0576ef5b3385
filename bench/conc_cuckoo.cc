// conc_cuckoo.cc - the workload's concurrent phases on libcuckoo's
// cuckoohash_map<uint64_t, uint64_t> (Debian libcuckoo-dev, header only):
// fine-grained striped spinlocks, two candidate buckets per key.
//
//   conc_cuckoo [--mode default] [conc_harness.h options]
//
// Used as its documentation shows: default hash (std::hash, the identity
// for integers; the keys are already splitmix64 outputs), default initial
// size and growth, find(key, val) for reads, insert_or_assign for puts,
// erase for deletes.  Same command line, loop, checks and output as every
// conc_ program (conc_harness.h).
#include "conc_harness.h"

#include <libcuckoo/cuckoohash_map.hh>

#include <cstdint>

namespace {

using Map = libcuckoo::cuckoohash_map<uint64_t, uint64_t>;

bool get(void *m, uint64_t key, uint64_t *val)
{
    return static_cast<const Map *>(m)->find(key, *val);
}

bool put(void *m, uint64_t key, uint64_t val)
{
    static_cast<Map *>(m)->insert_or_assign(key, val); // throws on failure
    return true;
}

bool del(void *m, uint64_t key) { return static_cast<Map *>(m)->erase(key); }

size_t len(void *m) { return static_cast<const Map *>(m)->size(); }

const cc_ops OPS = {get,     put,     del,     len,     nullptr,
                    nullptr, nullptr, nullptr, nullptr, nullptr};

void *worker(void *arg)
{
    cc_loop(arg, &OPS);
    return nullptr;
}

const char *const MODES[] = {"default"};

} // namespace

int main(int argc, char **argv)
{
    cc_args a;
    int rc = cc_parse(&a, "libcuckoo", "conc_cuckoo", MODES, 1, argc, argv);
    if (rc != 0)
        return rc;
    auto *m = new Map();
    cc_main(&a, m, &OPS, worker);
    delete m;
    return 0;
}
