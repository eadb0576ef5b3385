// bench_absl.cc - the standard workload (/work/shared/workload.md) on
// absl::flat_hash_map, the peer mapguard must match or beat.
//
//   bench_absl --n N --phases u64,str,latency [--verify]
//
// Same command line and output as bench_mapguard.c; the loops mirror it line
// for line.  String keys are std::string (16 bytes: one heap block each, as
// in any real program using that key type); lookups pass an absl::string_view
// (Debian's absl has its own, not std's), which absl's transparent hash takes
// without building a std::string.
#include "harness.h"

#include <absl/container/flat_hash_map.h>
#include <absl/strings/string_view.h>

#include <cstdint>
#include <string>

namespace {

const char *const IMPL = "absl";

using U64Map = absl::flat_hash_map<uint64_t, uint64_t>;
using StrMap = absl::flat_hash_map<std::string, uint64_t>;

template <class Map>
void check_len(const bh_args *a, const Map &m, size_t want, const char *after)
{
    if (m.size() != want)
        bh_fail(a, "len after %s is %zu, want %zu", after, m.size(), want);
}

void phase_u64(const bh_args *a, const bh_u64_data *d)
{
    const size_t n = d->n;
    const uint64_t *keys = d->keys, *miss = d->miss, *hkeys = d->hkeys;
    const uint32_t *order = d->order;
    uint64_t t0, t1, sum, want_sum;
    size_t bad;

    wl_reset_peak_rss();
    const uint64_t rss0 = wl_rss_bytes();
    auto *m = new U64Map(); // no size hint

    // 1. insert
    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++)
        m->insert_or_assign(keys[i], uint64_t(i) + 1);
    t1 = wl_now_ns();
    const uint64_t rss1 = wl_rss_bytes();
    const uint64_t peak1 = wl_peak_rss_bytes();
    if (a->verify)
        check_len(a, *m, n, "u64 insert");
    bh_result(a, "u64", "insert", double(t1 - t0) / double(n), "ns/op");
    bh_result(a, "u64", "mem", bh_per_entry(rss1, rss0, n), "B/entry");
    bh_result(a, "u64", "mempeak", bh_per_entry(peak1, rss0, n), "B/entry");

    // 2. lookup-hit, shuffled
    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++) {
        auto it = m->find(hkeys[i]);
        bool found = it != m->end();
        uint64_t v = found ? it->second : 0;
        sum += v;
        bad += size_t(!found | (v != uint64_t(order[i]) + 1));
    }
    t1 = wl_now_ns();
    want_sum = uint64_t(n) * (uint64_t(n) + 1) / 2;
    if (bad != 0 || sum != want_sum)
        bh_fail(a, "u64 hit: %zu wrong lookups, checksum %llu want %llu", bad,
                (unsigned long long)sum, (unsigned long long)want_sum);
    if (a->verify)
        check_len(a, *m, n, "u64 hit");
    bh_result(a, "u64", "hit", double(t1 - t0) / double(n), "ns/op");

    // 3. lookup-miss
    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++) {
        auto it = m->find(miss[i]);
        bool found = it != m->end();
        bad += found;
        sum += found ? it->second : 0;
    }
    t1 = wl_now_ns();
    if (bad != 0 || sum != 0)
        bh_fail(a, "u64 miss: %zu absent keys found", bad);
    if (a->verify)
        check_len(a, *m, n, "u64 miss");
    bh_result(a, "u64", "miss", double(t1 - t0) / double(n), "ns/op");

    // 4. delete, in insertion order
    bad = 0;
    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++)
        bad += m->erase(keys[i]) != 1;
    t1 = wl_now_ns();
    if (bad != 0)
        bh_fail(a, "u64 delete: %zu deletes found no key", bad);
    if (a->verify) {
        check_len(a, *m, 0, "u64 delete");
        for (size_t i = 0; i < n; i++)
            if (m->contains(keys[i]))
                bh_fail(a, "u64 delete: key %zu still present", i);
    }
    bh_result(a, "u64", "delete", double(t1 - t0) / double(n), "ns/op");
    delete m;
}

void phase_str(const bh_args *a, const bh_str_data *d)
{
    const size_t n = d->n;
    const char *skeys = d->skeys, *hskeys = d->hskeys;
    const uint32_t *hval = d->hval;
    uint64_t t0, t1, sum;
    size_t bad;
    auto *m = new StrMap();

    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++)
        m->insert_or_assign(std::string(skeys + i * WL_STR_LEN, WL_STR_LEN),
                            uint64_t(i) + 1);
    t1 = wl_now_ns();
    if (a->verify)
        check_len(a, *m, d->distinct, "str insert");
    bh_result(a, "str", "insert", double(t1 - t0) / double(n), "ns/op");

    bad = 0;
    sum = 0;
    t0 = wl_now_ns();
    for (size_t i = 0; i < n; i++) {
        auto it = m->find(absl::string_view(hskeys + i * WL_STR_LEN, WL_STR_LEN));
        bool found = it != m->end();
        uint64_t v = found ? it->second : 0;
        sum += v;
        bad += size_t(!found | (v != uint64_t(hval[i])));
    }
    t1 = wl_now_ns();
    if (bad != 0 || sum != d->hsum)
        bh_fail(a, "str hit: %zu wrong lookups, checksum %llu want %llu", bad,
                (unsigned long long)sum, (unsigned long long)d->hsum);
    if (a->verify)
        check_len(a, *m, d->distinct, "str hit");
    bh_result(a, "str", "hit", double(t1 - t0) / double(n), "ns/op");
    delete m;
}

void phase_latency(const bh_args *a, const bh_u64_data *d)
{
    const size_t n = d->n, nb = n / BH_BATCH;
    const uint64_t *keys = d->keys;
    auto *batch = static_cast<uint64_t *>(
        bh_alloc(a, nb > 0 ? nb : 1, sizeof(uint64_t)));
    auto *m = new U64Map();

    uint64_t t = wl_now_ns();
    for (size_t b = 0; b < nb; b++) {
        const size_t base = b * BH_BATCH;
        for (size_t i = base; i < base + BH_BATCH; i++)
            m->insert_or_assign(keys[i], uint64_t(i) + 1);
        const uint64_t t2 = wl_now_ns();
        batch[b] = t2 - t;
        t = t2;
    }
    for (size_t i = nb * BH_BATCH; i < n; i++)
        m->insert_or_assign(keys[i], uint64_t(i) + 1);
    if (a->verify) {
        check_len(a, *m, n, "latency insert");
        for (size_t i = 0; i < n; i++) {
            auto it = m->find(keys[i]);
            if (it == m->end() || it->second != uint64_t(i) + 1)
                bh_fail(a, "latency: key %zu lost or wrong", i);
        }
    }
    delete m;
    bh_latency_report(a, batch, nb);
    free(batch);
}

} // namespace

int main(int argc, char **argv)
{
    bh_args a;
    bh_u64_data u64;
    int rc = bh_parse(&a, IMPL, argc, argv);
    if (rc != 0)
        return rc;
    memset(&u64, 0, sizeof u64);
    for (int p = 0; p < a.nphases; p++) {
        switch (a.phases[p]) {
        case BH_PHASE_U64:
            if (u64.keys == nullptr)
                bh_u64_data_make(&a, &u64);
            phase_u64(&a, &u64);
            break;
        case BH_PHASE_STR: {
            bh_str_data s;
            bh_str_data_make(&a, &s);
            phase_str(&a, &s);
            bh_str_data_free(&s);
            break;
        }
        case BH_PHASE_LATENCY:
            if (u64.keys == nullptr)
                bh_u64_data_make(&a, &u64);
            phase_latency(&a, &u64);
            break;
        }
    }
    bh_u64_data_free(&u64);
    return 0;
}
