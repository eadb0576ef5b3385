// conc_go.go - the workload's concurrent phases (/work/shared/workload.md,
// "Concurrent phases") on Go 1.19's two answers to a shared map:
//
//	conc_go --mode syncmap|rwmutex [--threads 1,2] [--seconds 1] [--n N]
//	        [--mixes r100,r90w10,r50w50,churn90] [--verify]
//
// syncmap is sync.Map (Load, Store, LoadAndDelete); rwmutex is a
// map[uint64]uint64 behind one sync.RWMutex (RLock for reads, Lock for
// writes).  Same command line, checks and output as bench/conc_harness.h,
// whose loop this file repeats: T goroutines wait for a start signal, run
// batchOps ops at a time until a stop flag the main goroutine sets after
// --seconds, count locally, and the totals are summed at the end.  Go's
// scheduler places the goroutines (GOMAXPROCS is the CPU count); nothing
// is pinned.  The generators repeat bench/workload.h.
//
// Single file, package main, no modules: built by mg_add_go_program.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // for go:linkname
)

const (
	impl           = "go"
	prog           = "conc_go"
	golden         = 0x9E3779B97F4A7C15
	keySeed        = 42
	concSeed       = 1000
	concSeedMix    = 100
	batchOps       = 64 // ops between two looks at the stop flag
	maxThreads     = 1024
	defaultN       = 1000000
	defaultSeconds = 1.0
)

// nanotime is the runtime's CLOCK_MONOTONIC reading, the C programs' clock.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// key returns output number i (0-based) of splitmix64 seeded 42.
func key(i uint64) uint64 { return mix(keySeed + (i+1)*golden) }

func concIndex(r, n uint64) uint64 { return ((r & 0xffffffff) * n) >> 32 }

func churnKey(n uint64, t uint, w uint64) uint64 {
	return key(2*n + uint64(t)<<32 + w/2)
}

// valueOK: v is i + 1, or a draw r whose key index is idx.
func valueOK(v, idx, n uint64) bool { return v == idx+1 || concIndex(v, n) == idx }

type mixDef struct {
	name        string
	id          uint64
	readPercent uint64
	churn       bool
}

var mixes = []mixDef{
	{"r100", 0, 100, false},
	{"r90w10", 1, 90, false},
	{"r50w50", 2, 50, false},
	{"churn90", 3, 90, true},
}

// ---------------------------------------------------------------------------
// The two maps.  Each has its own worker loop, written out, so that the
// timed loop holds no interface call besides the map's own.

type rwMap struct {
	mu sync.RWMutex
	m  map[uint64]uint64
}

type counts struct {
	ops, misses, wrong, failed uint64
	start, end                 int64
}

type runState struct {
	n           uint64
	mix         mixDef
	stop        atomic.Bool
	ready, done sync.WaitGroup
	start       chan struct{}
}

func workerRW(rs *runState, mp *rwMap, t uint, c *counts) {
	n, rp, churn := rs.n, rs.mix.readPercent, rs.mix.churn
	state := uint64(concSeed + concSeedMix*rs.mix.id + uint64(t))
	var done, misses, wrong, failed, w uint64
	rs.ready.Done()
	<-rs.start
	c.start = nanotime()
	for {
		for i := 0; i < batchOps; i++ {
			state += golden
			r := mix(state)
			idx := concIndex(r, n)
			if (r>>32)%100 < rp {
				mp.mu.RLock()
				v, ok := mp.m[key(idx)]
				mp.mu.RUnlock()
				if !ok {
					misses++
				} else if !valueOK(v, idx, n) {
					wrong++
				}
			} else if !churn {
				k := key(idx)
				mp.mu.Lock()
				mp.m[k] = r
				mp.mu.Unlock()
			} else {
				k := churnKey(n, t, w)
				mp.mu.Lock()
				if w&1 != 0 {
					l := len(mp.m)
					delete(mp.m, k)
					if len(mp.m) != l-1 {
						failed++
					}
				} else {
					mp.m[k] = r
				}
				mp.mu.Unlock()
				w++
			}
		}
		done += batchOps
		if rs.stop.Load() {
			break
		}
	}
	c.end = nanotime()
	if churn && w&1 != 0 { // untimed: take back the last fresh key
		k := churnKey(n, t, w)
		mp.mu.Lock()
		if _, ok := mp.m[k]; !ok {
			failed++
		}
		delete(mp.m, k)
		mp.mu.Unlock()
	}
	c.ops, c.misses, c.wrong, c.failed = done, misses, wrong, failed
	rs.done.Done()
}

func workerSync(rs *runState, m *sync.Map, t uint, c *counts) {
	n, rp, churn := rs.n, rs.mix.readPercent, rs.mix.churn
	state := uint64(concSeed + concSeedMix*rs.mix.id + uint64(t))
	var done, misses, wrong, failed, w uint64
	rs.ready.Done()
	<-rs.start
	c.start = nanotime()
	for {
		for i := 0; i < batchOps; i++ {
			state += golden
			r := mix(state)
			idx := concIndex(r, n)
			if (r>>32)%100 < rp {
				v, ok := m.Load(key(idx))
				if !ok {
					misses++
				} else if !valueOK(v.(uint64), idx, n) {
					wrong++
				}
			} else if !churn {
				m.Store(key(idx), r)
			} else {
				k := churnKey(n, t, w)
				if w&1 != 0 {
					if _, ok := m.LoadAndDelete(k); !ok {
						failed++
					}
				} else {
					m.Store(k, r)
				}
				w++
			}
		}
		done += batchOps
		if rs.stop.Load() {
			break
		}
	}
	c.end = nanotime()
	if churn && w&1 != 0 {
		if _, ok := m.LoadAndDelete(churnKey(n, t, w)); !ok {
			failed++
		}
	}
	c.ops, c.misses, c.wrong, c.failed = done, misses, wrong, failed
	rs.done.Done()
}

// ---------------------------------------------------------------------------
// Command line and output (bench/conc_harness.h).

type args struct {
	mode    string
	n       uint64
	seconds float64
	verify  bool
	threads []uint
	mixes   []mixDef
}

var out = bufio.NewWriter(os.Stdout)

var modes = []string{"syncmap", "rwmutex"}

func usage(w *os.File) {
	fmt.Fprintf(w, "usage: %s [--mode NAME] [--threads 1,2] [--seconds 1] [--n 1000000]\n"+
		"          [--mixes r100,r90w10,r50w50,churn90] [--verify]\n"+
		"  --mode     one of: syncmap (default) rwmutex\n"+
		"  --threads  comma list of thread counts, each run in turn\n"+
		"  --seconds  measured seconds per mix and thread count\n"+
		"  --n        preloaded keys\n"+
		"  --mixes    comma list, run in the order given\n"+
		"  --verify   after each run, check every preloaded key and the length\n", prog)
}

func fail(format string, a ...interface{}) {
	out.Flush()
	fmt.Fprintf(os.Stderr, "%s: error: %s\n", prog, fmt.Sprintf(format, a...))
	os.Exit(1)
}

func bad(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, fmt.Sprintf(format, a...))
	usage(os.Stderr)
	os.Exit(2)
}

func parse() args {
	a := args{mode: modes[0], n: defaultN, seconds: defaultSeconds,
		threads: []uint{1, 2}, mixes: mixes}
	argv := os.Args[1:]
	for i := 0; i < len(argv); i++ {
		s := argv[i]
		if s == "--verify" {
			a.verify = true
			continue
		}
		if s == "--help" || s == "-h" {
			usage(os.Stdout)
			os.Exit(0)
		}
		if i+1 >= len(argv) {
			bad("bad or incomplete argument '%s'", s)
		}
		i++
		val := argv[i]
		switch s {
		case "--mode":
			if val != modes[0] && val != modes[1] {
				bad("unknown mode '%s'", val)
			}
			a.mode = val
		case "--n":
			v, err := strconv.ParseUint(val, 10, 64)
			if err != nil || v < 1 || v > (1<<32-1)/2 {
				bad("bad --n '%s'", val)
			}
			a.n = v
		case "--seconds":
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || !(v > 0) || v > 3600 {
				bad("bad --seconds '%s'", val)
			}
			a.seconds = v
		case "--threads":
			a.threads = nil
			for _, f := range strings.Split(val, ",") {
				v, err := strconv.ParseUint(f, 10, 32)
				if err != nil || v < 1 || v > maxThreads {
					bad("bad --threads '%s'", val)
				}
				a.threads = append(a.threads, uint(v))
			}
		case "--mixes":
			a.mixes = nil
			for _, f := range strings.Split(val, ",") {
				found := false
				for _, m := range mixes {
					if m.name == f {
						a.mixes = append(a.mixes, m)
						found = true
					}
				}
				if !found {
					bad("bad mix '%s' in --mixes", f)
				}
			}
		default:
			bad("bad or incomplete argument '%s'", s)
		}
	}
	return a
}

// ---------------------------------------------------------------------------

type bench struct {
	a  *args
	rw *rwMap
	sm *sync.Map
}

func (b *bench) put(k, v uint64) {
	if b.rw != nil {
		b.rw.m[k] = v
	} else {
		b.sm.Store(k, v)
	}
}

func (b *bench) get(k uint64) (uint64, bool) {
	if b.rw != nil {
		v, ok := b.rw.m[k]
		return v, ok
	}
	v, ok := b.sm.Load(k)
	if !ok {
		return 0, false
	}
	return v.(uint64), true
}

func (b *bench) length() int {
	if b.rw != nil {
		return len(b.rw.m)
	}
	l := 0
	b.sm.Range(func(_, _ interface{}) bool { l++; return true })
	return l
}

// checkAll reads every preloaded key from this goroutine alone.
func (b *bench) checkAll(pristine bool, after string) {
	n := b.a.n
	lost, wrong := 0, 0
	for i := uint64(0); i < n; i++ {
		v, ok := b.get(key(i))
		if !ok {
			lost++
		} else if (pristine && v != i+1) || (!pristine && !valueOK(v, i, n)) {
			wrong++
		}
	}
	if lost != 0 || wrong != 0 {
		fail("after %s: %d preloaded keys missing, %d wrong values", after, lost, wrong)
	}
}

func (b *bench) checkLen(after string) {
	if l := b.length(); uint64(l) != b.a.n {
		fail("after %s: length %d, want %d", after, l, b.a.n)
	}
}

func (b *bench) measure(mx mixDef, nthreads uint) {
	rs := &runState{n: b.a.n, mix: mx, start: make(chan struct{})}
	cs := make([]counts, nthreads)
	rs.ready.Add(int(nthreads))
	rs.done.Add(int(nthreads))
	for t := uint(0); t < nthreads; t++ {
		if b.rw != nil {
			go workerRW(rs, b.rw, t, &cs[t])
		} else {
			go workerSync(rs, b.sm, t, &cs[t])
		}
	}
	rs.ready.Wait()
	close(rs.start)
	time.Sleep(time.Duration(b.a.seconds * 1e9))
	rs.stop.Store(true)
	rs.done.Wait()
	var ops, misses, wrong, failed uint64
	first, last := int64(1<<63-1), int64(0)
	for i := range cs {
		c := &cs[i]
		ops += c.ops
		misses += c.misses
		wrong += c.wrong
		failed += c.failed
		if c.start < first {
			first = c.start
		}
		if c.end > last {
			last = c.end
		}
	}
	if misses != 0 || wrong != 0 || failed != 0 {
		fail("%s, %d threads: %d reads of preloaded keys missed, %d read impossible values, %d writes failed",
			mx.name, nthreads, misses, wrong, failed)
	}
	secs := float64(last-first) / 1e9
	mops := 0.0
	if secs > 0 {
		mops = float64(ops) / secs / 1e6
	}
	fmt.Fprintf(out, "result impl=%s mode=%s mix=%s threads=%d n=%d value=%.3f unit=Mops/s ops=%d seconds=%.3f\n",
		impl, b.a.mode, mx.name, nthreads, b.a.n, mops, ops, secs)
	out.Flush()
}

func main() {
	a := parse()
	b := &bench{a: &a}
	if a.mode == "rwmutex" {
		b.rw = &rwMap{m: make(map[uint64]uint64)}
	} else {
		b.sm = &sync.Map{}
	}
	for i := uint64(0); i < a.n; i++ {
		b.put(key(i), i+1)
	}
	b.checkAll(true, "preload") // the read-once pass
	b.checkLen("preload")
	pristine := true
	for _, mx := range a.mixes {
		for _, t := range a.threads {
			b.measure(mx, t)
			if mx.readPercent < 100 && !mx.churn {
				pristine = false
			}
			if a.verify {
				after := fmt.Sprintf("%s with %d threads", mx.name, t)
				b.checkAll(pristine, after)
				b.checkLen(after)
			}
		}
	}
	out.Flush()
}
