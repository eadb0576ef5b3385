// conc_absl.cc - the workload's concurrent phases on absl::flat_hash_map
// made shareable the two usual ways:
//
//   conc_absl --mode mutex64|rwlock [conc_harness.h options]
//
// mutex64: 64 maps, each behind its own std::mutex and on its own cache
// line; a key's shard is the top 6 bits of key * 0x9E3779B97F4A7C15 (a
// multiply-shift independent of the seeded absl::Hash the maps use inside).
// rwlock: one map behind one pthread_rwlock_t with glibc's default
// attributes (readers preferred), read lock for reads, write lock for puts
// and deletes.  Same command line, loop, checks and output as every conc_
// program (conc_harness.h).
#include "conc_harness.h"

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <mutex>

namespace {

using U64Map = absl::flat_hash_map<uint64_t, uint64_t>;

constexpr unsigned SHARD_BITS = 6;
constexpr unsigned NSHARDS = 1u << SHARD_BITS;

struct alignas(64) Shard {
    std::mutex mu;
    U64Map m;
};

struct Sharded {
    Shard shard[NSHARDS];
    Shard &of(uint64_t key) { return shard[(key * WL_GOLDEN) >> (64 - SHARD_BITS)]; }
};

bool sh_get(void *p, uint64_t key, uint64_t *val)
{
    Shard &s = static_cast<Sharded *>(p)->of(key);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.m.find(key);
    if (it == s.m.end())
        return false;
    *val = it->second;
    return true;
}

bool sh_put(void *p, uint64_t key, uint64_t val)
{
    Shard &s = static_cast<Sharded *>(p)->of(key);
    std::lock_guard<std::mutex> g(s.mu);
    s.m.insert_or_assign(key, val); // throws on failure
    return true;
}

bool sh_del(void *p, uint64_t key)
{
    Shard &s = static_cast<Sharded *>(p)->of(key);
    std::lock_guard<std::mutex> g(s.mu);
    return s.m.erase(key) == 1;
}

size_t sh_len(void *p)
{
    size_t n = 0;
    for (Shard &s : static_cast<Sharded *>(p)->shard) {
        std::lock_guard<std::mutex> g(s.mu);
        n += s.m.size();
    }
    return n;
}

const cc_ops SHARDED_OPS = {sh_get,  sh_put,  sh_del,  sh_len, nullptr,
                            nullptr, nullptr, nullptr, nullptr, nullptr};

void *sh_worker(void *arg)
{
    cc_loop(arg, &SHARDED_OPS);
    return nullptr;
}

struct Locked {
    pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
    U64Map m;
};

bool rw_get(void *p, uint64_t key, uint64_t *val)
{
    auto *l = static_cast<Locked *>(p);
    bool found = false;
    pthread_rwlock_rdlock(&l->lock);
    auto it = l->m.find(key);
    if (it != l->m.end()) {
        *val = it->second;
        found = true;
    }
    pthread_rwlock_unlock(&l->lock);
    return found;
}

bool rw_put(void *p, uint64_t key, uint64_t val)
{
    auto *l = static_cast<Locked *>(p);
    pthread_rwlock_wrlock(&l->lock);
    l->m.insert_or_assign(key, val);
    pthread_rwlock_unlock(&l->lock);
    return true;
}

bool rw_del(void *p, uint64_t key)
{
    auto *l = static_cast<Locked *>(p);
    pthread_rwlock_wrlock(&l->lock);
    bool found = l->m.erase(key) == 1;
    pthread_rwlock_unlock(&l->lock);
    return found;
}

size_t rw_len(void *p)
{
    auto *l = static_cast<Locked *>(p);
    pthread_rwlock_rdlock(&l->lock);
    size_t n = l->m.size();
    pthread_rwlock_unlock(&l->lock);
    return n;
}

const cc_ops RWLOCK_OPS = {rw_get,  rw_put,  rw_del,  rw_len, nullptr,
                           nullptr, nullptr, nullptr, nullptr, nullptr};

void *rw_worker(void *arg)
{
    cc_loop(arg, &RWLOCK_OPS);
    return nullptr;
}

const char *const MODES[] = {"mutex64", "rwlock"};

} // namespace

int main(int argc, char **argv)
{
    cc_args a;
    int rc = cc_parse(&a, "absl", "conc_absl", MODES, 2, argc, argv);
    if (rc != 0)
        return rc;
    if (strcmp(a.mode, "mutex64") == 0) {
        auto *s = new Sharded();
        cc_main(&a, s, &SHARDED_OPS, sh_worker);
        delete s;
    } else {
        auto *l = new Locked();
        cc_main(&a, l, &RWLOCK_OPS, rw_worker);
        pthread_rwlock_destroy(&l->lock);
        delete l;
    }
    return 0;
}
