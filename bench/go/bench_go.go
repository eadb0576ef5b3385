// bench_go.go - the standard workload (/work/shared/workload.md) on Go 1.19's
// built-in map, the design mapguard ports to C.
//
//	bench_go --n N --phases u64,str,latency [--verify]
//
// Same command line and output as bench_mapguard.c and bench_absl.cc; the
// generators repeat bench/workload.h and the loops mirror bench_mapguard.c.
// Memory is the process's RSS from /proc, as for the C programs, with the
// baseline taken after runtime.GC and debug.FreeOSMemory.  String keys are
// Go strings pointing into one pre-built block (a Go map stores the string
// header, not a copy of the bytes).
//
// Single file, package main, no modules: built by mg_add_go_program.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	_ "unsafe" // for go:linkname
)

const (
	impl        = "go"
	golden      = 0x9E3779B97F4A7C15
	keySeed     = 42
	shuffleSeed = 43
	strLen      = 16
	strMod      = 1000000000000
	batchSize   = 64 // inserts per timed batch in the latency phase
)

// nanotime is the runtime's CLOCK_MONOTONIC reading, the clock the C
// programs use, without time.Now's second (wall clock) reading.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// ---------------------------------------------------------------------------
// The workload's generators (bench/workload.h).

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// key returns output number i (0-based) of splitmix64 seeded 42.
func key(i uint64) uint64 { return mix(keySeed + (i+1)*golden) }

// shuffledOrder is Fisher-Yates over 0..n-1 with a sequential splitmix64
// seeded 43.
func shuffledOrder(n int) []uint32 {
	order := make([]uint32, n)
	for i := range order {
		order[i] = uint32(i)
	}
	state := uint64(shuffleSeed)
	for i := n - 1; i >= 1; i-- {
		state += golden
		j := int(mix(state) % uint64(i+1))
		order[i], order[j] = order[j], order[i]
	}
	return order
}

// strKey is snprintf("key-%012llu", key(i) % 10^12).
func strKey(i uint64) string { return fmt.Sprintf("key-%012d", key(i)%strMod) }

// rss reads the resident set from /proc/self/statm (bytes).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// peakRSS reads VmHWM from /proc/self/status (bytes).
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line[6:])
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// resetPeakRSS sets VmHWM back to the current RSS.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// ---------------------------------------------------------------------------
// Command line and output (bench/harness.h).

type args struct {
	n      int
	verify bool
	phases []string
}

var out = bufio.NewWriter(os.Stdout)

func usage(w *os.File) {
	fmt.Fprintf(w, "usage: %s --n N --phases LIST [--verify]\n"+
		"  LIST  comma list of: u64 (insert, hit, miss, delete, mem),\n"+
		"        str (string insert, hit), latency (growth latency)\n"+
		"  --verify  also check the map's length after every phase\n", os.Args[0])
}

func fail(format string, a ...interface{}) {
	out.Flush()
	fmt.Fprintf(os.Stderr, "bench_%s: error: %s\n", impl, fmt.Sprintf(format, a...))
	os.Exit(1)
}

func parse() args {
	var a args
	var nval, phases string
	haveN, haveP := false, false
	argv := os.Args[1:]
	for i := 0; i < len(argv); i++ {
		s := argv[i]
		switch {
		case s == "--verify":
			a.verify = true
		case s == "--help" || s == "-h":
			usage(os.Stdout)
			os.Exit(0)
		case s == "--n" && i+1 < len(argv):
			i++
			nval, haveN = argv[i], true
		case strings.HasPrefix(s, "--n="):
			nval, haveN = s[4:], true
		case s == "--phases" && i+1 < len(argv):
			i++
			phases, haveP = argv[i], true
		case strings.HasPrefix(s, "--phases="):
			phases, haveP = s[9:], true
		default:
			fmt.Fprintf(os.Stderr, "bench_%s: bad argument '%s'\n", impl, s)
			usage(os.Stderr)
			os.Exit(2)
		}
	}
	if !haveN || !haveP {
		usage(os.Stderr)
		os.Exit(2)
	}
	n, err := strconv.ParseUint(nval, 10, 64)
	if err != nil || n < 1 || n > (1<<32-1)/2 {
		fmt.Fprintf(os.Stderr, "bench_%s: bad --n '%s'\n", impl, nval)
		os.Exit(2)
	}
	a.n = int(n)
	for _, p := range strings.Split(phases, ",") {
		switch p {
		case "u64", "str", "latency":
			a.phases = append(a.phases, p)
		default:
			fmt.Fprintf(os.Stderr, "bench_%s: unknown phase '%s'\n", impl, p)
			usage(os.Stderr)
			os.Exit(2)
		}
	}
	return a
}

func result(a *args, keys, phase string, value float64, unit string) {
	fmt.Fprintf(out, "result impl=%s keys=%s n=%d phase=%s value=%.3f unit=%s\n",
		impl, keys, a.n, phase, value, unit)
	out.Flush()
}

func perEntry(after, before uint64, n int) float64 {
	if after <= before {
		return 0
	}
	return float64(after-before) / float64(n)
}

func perOp(t0, t1 int64, n int) float64 { return float64(t1-t0) / float64(n) }

func checkLen(got, want int, after string) {
	if got != want {
		fail("len after %s is %d, want %d", after, got, want)
	}
}

// ---------------------------------------------------------------------------
// u64 keys: insert, lookup-hit (shuffled), lookup-miss, delete, memory.

type u64Data struct {
	keys, miss, hkeys []uint64
	order             []uint32
}

func makeU64(n int) *u64Data {
	d := &u64Data{
		keys:  make([]uint64, n),
		miss:  make([]uint64, n),
		hkeys: make([]uint64, n),
	}
	for i := 0; i < n; i++ {
		d.keys[i] = key(uint64(i))
		d.miss[i] = key(uint64(n + i))
	}
	d.order = shuffledOrder(n)
	for i, o := range d.order {
		d.hkeys[i] = d.keys[o]
	}
	return d
}

// settle collects garbage and returns freed memory to the OS, so that an
// RSS baseline holds only live data.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

func phaseU64(a *args, d *u64Data) {
	n := a.n
	keys, miss, hkeys, order := d.keys, d.miss, d.hkeys, d.order

	settle()
	resetPeakRSS()
	rss0 := rss()
	m := make(map[uint64]uint64) // no size hint

	// 1. insert
	t0 := nanotime()
	for i := 0; i < n; i++ {
		m[keys[i]] = uint64(i) + 1
	}
	t1 := nanotime()
	rss1 := rss()
	peak1 := peakRSS()
	if a.verify {
		checkLen(len(m), n, "u64 insert")
	}
	result(a, "u64", "insert", perOp(t0, t1, n), "ns/op")
	result(a, "u64", "mem", perEntry(rss1, rss0, n), "B/entry")
	result(a, "u64", "mempeak", perEntry(peak1, rss0, n), "B/entry")

	// 2. lookup-hit, shuffled
	bad, sum := 0, uint64(0)
	t0 = nanotime()
	for i := 0; i < n; i++ {
		v, found := m[hkeys[i]]
		sum += v
		if !found || v != uint64(order[i])+1 {
			bad++
		}
	}
	t1 = nanotime()
	want := uint64(n) * (uint64(n) + 1) / 2
	if bad != 0 || sum != want {
		fail("u64 hit: %d wrong lookups, checksum %d want %d", bad, sum, want)
	}
	if a.verify {
		checkLen(len(m), n, "u64 hit")
	}
	result(a, "u64", "hit", perOp(t0, t1, n), "ns/op")

	// 3. lookup-miss
	bad, sum = 0, 0
	t0 = nanotime()
	for i := 0; i < n; i++ {
		v, found := m[miss[i]]
		sum += v
		if found {
			bad++
		}
	}
	t1 = nanotime()
	if bad != 0 || sum != 0 {
		fail("u64 miss: %d absent keys found", bad)
	}
	if a.verify {
		checkLen(len(m), n, "u64 miss")
	}
	result(a, "u64", "miss", perOp(t0, t1, n), "ns/op")

	// 4. delete, in insertion order.  Go's delete returns nothing; the keys
	// are distinct, so every delete found its key iff the map ends empty.
	before := len(m)
	t0 = nanotime()
	for i := 0; i < n; i++ {
		delete(m, keys[i])
	}
	t1 = nanotime()
	if bad := n - (before - len(m)); bad != 0 {
		fail("u64 delete: %d deletes found no key", bad)
	}
	if a.verify {
		checkLen(len(m), 0, "u64 delete")
		for i := 0; i < n; i++ {
			if _, ok := m[keys[i]]; ok {
				fail("u64 delete: key %d still present", i)
			}
		}
	}
	result(a, "u64", "delete", perOp(t0, t1, n), "ns/op")
}

// ---------------------------------------------------------------------------
// String keys: insert, lookup-hit (shuffled).

type strData struct {
	skeys, hskeys []string
	hval          []uint32 // the value a lookup of hskeys[j] must find
	hsum          uint64
	distinct      int
}

// makeStr builds the keys in two contiguous blocks (insertion order and
// shuffled order).  key(i) % 10^12 is not one-to-one: a later index with the
// same string updates the earlier one's value (see bench/harness.h).
func makeStr(n int) *strData {
	d := &strData{skeys: make([]string, n), hskeys: make([]string, n),
		hval: make([]uint32, n)}
	var b strings.Builder
	b.Grow(n * strLen)
	for i := 0; i < n; i++ {
		b.WriteString(strKey(uint64(i)))
	}
	block := b.String()
	last := make(map[string]uint32, n) // string -> last index with it
	for i := 0; i < n; i++ {
		d.skeys[i] = block[i*strLen : (i+1)*strLen]
		last[d.skeys[i]] = uint32(i)
	}
	d.distinct = len(last)
	order := shuffledOrder(n)
	var hb strings.Builder
	hb.Grow(n * strLen)
	for _, o := range order {
		hb.WriteString(d.skeys[o])
	}
	hblock := hb.String()
	for j, o := range order {
		d.hskeys[j] = hblock[j*strLen : (j+1)*strLen]
		d.hval[j] = last[d.skeys[o]] + 1
		d.hsum += uint64(d.hval[j])
	}
	return d
}

func phaseStr(a *args, d *strData) {
	n := a.n
	skeys, hskeys, hval := d.skeys, d.hskeys, d.hval
	settle()
	m := make(map[string]uint64)

	t0 := nanotime()
	for i := 0; i < n; i++ {
		m[skeys[i]] = uint64(i) + 1
	}
	t1 := nanotime()
	if a.verify {
		checkLen(len(m), d.distinct, "str insert")
	}
	result(a, "str", "insert", perOp(t0, t1, n), "ns/op")

	bad, sum := 0, uint64(0)
	t0 = nanotime()
	for i := 0; i < n; i++ {
		v, found := m[hskeys[i]]
		sum += v
		if !found || v != uint64(hval[i]) {
			bad++
		}
	}
	t1 = nanotime()
	if bad != 0 || sum != d.hsum {
		fail("str hit: %d wrong lookups, checksum %d want %d", bad, sum, d.hsum)
	}
	if a.verify {
		checkLen(len(m), d.distinct, "str hit")
	}
	result(a, "str", "hit", perOp(t0, t1, n), "ns/op")
}

// ---------------------------------------------------------------------------
// Latency during growth: N inserts, no hint, each batch of 64 timed.  A last
// partial batch is inserted but not timed.

func phaseLatency(a *args, d *u64Data) {
	n := a.n
	nb := n / batchSize
	if nb == 0 {
		fail("latency: --n must be at least %d", batchSize)
	}
	keys := d.keys
	batch := make([]int64, nb)
	settle()
	m := make(map[uint64]uint64)

	t := nanotime()
	for b := 0; b < nb; b++ {
		base := b * batchSize
		for i := base; i < base+batchSize; i++ {
			m[keys[i]] = uint64(i) + 1
		}
		t2 := nanotime()
		batch[b] = t2 - t
		t = t2
	}
	for i := nb * batchSize; i < n; i++ {
		m[keys[i]] = uint64(i) + 1
	}
	if a.verify {
		checkLen(len(m), n, "latency insert")
		for i := 0; i < n; i++ {
			if v, ok := m[keys[i]]; !ok || v != uint64(i)+1 {
				fail("latency: key %d lost or wrong", i)
			}
		}
	}
	sort.Slice(batch, func(i, j int) bool { return batch[i] < batch[j] })
	pct := func(p float64) float64 { // nearest rank, as bench/harness.h
		r := p * float64(nb)
		k := int(r)
		if float64(k) < r {
			k++
		}
		if k < 1 {
			k = 1
		}
		if k > nb {
			k = nb
		}
		return float64(batch[k-1]) / batchSize
	}
	result(a, "u64", "lat_p50", pct(0.50), "ns")
	result(a, "u64", "lat_p99", pct(0.99), "ns")
	result(a, "u64", "lat_p999", pct(0.999), "ns")
	result(a, "u64", "lat_worst_batch", float64(batch[nb-1]), "ns")
}

func main() {
	a := parse()
	var u *u64Data
	for _, p := range a.phases {
		switch p {
		case "u64":
			if u == nil {
				u = makeU64(a.n)
			}
			phaseU64(&a, u)
		case "str":
			phaseStr(&a, makeStr(a.n))
		case "latency":
			if u == nil {
				u = makeU64(a.n)
			}
			phaseLatency(&a, u)
		}
	}
	out.Flush()
}
