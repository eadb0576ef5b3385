// readmostly_go: the reference side of mapguard's MG_READMOSTLY differential
// test (diff_readmostly.c).
//
// It reads an op trace on stdin, applies it to a real Go 1.19 sync.Map with
// uint64 keys and values, and after every op prints its result and the
// map's private state: len(read.m) (deleted and expunged entries included),
// read.amended, len(dirty) (-1 for nil) and misses.  diff_readmostly applies
// the same trace to a MG_READMOSTLY map and compares the lines.
//
// Trace (one op a line, fields separated by one space; K and V decimal
// uint64):
//
//	new            a fresh sync.Map            "new | STATE"
//	load K         Load                        "load OK V | STATE"    (V 0 when !OK)
//	store K V      Store                       "store | STATE"
//	los K V        LoadOrStore                 "los LOADED ACTUAL | STATE"
//	lad K          LoadAndDelete               "lad OK V | STATE"     (V 0 when !OK)
//	del K          Delete                      "del | STATE"
//	range          Range to the end            "range N SUMK SUMV | STATE"
//	rangestop N    Range, f false at call N    "rangestop CALLS | STATE"
//	# ...          comment, ignored
//
// After the last op it prints one more line, counting what the trace made
// the sync.Map do, so the C side can tell that a mix reached every path:
//
//	# events promotions=N copies=N expunged=N unexpunged=N
//
// promotions: dirty became read (dirty nil again); copies: dirtyLocked made
// a new dirty map; expunged: entries of read left out of such a copy;
// unexpunged: a Store or LoadOrStore that brought an expunged key back.
//
// STATE is "r=READLEN a=AMENDED(0/1) d=DIRTYLEN m=MISSES".  OK and LOADED are
// 0 or 1; sums are mod 2^64.
//
// "readmostly_go -selftest" checks that the private fields are read from the
// right places: the mirror structs below against reflect's view of sync.Map
// and sync.readOnly, and the state sequence documented in
// go-map-semantics.md section 2.1.  It exits non-zero on any mismatch.
//
// Build: GO111MODULE=off go build -o readmostly_go readmostly_go.go (Go 1.19)
package main

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// mapMirror has Go 1.19's sync.Map layout (sync/map.go):
//
//	type Map struct { mu Mutex; read atomic.Value; dirty map[any]*entry; misses int }
//
// read holds a readOnly{m map[any]*entry; amended bool}.  *entry is a
// pointer, so map[any]unsafe.Pointer has the same layout and len.
type mapMirror struct {
	mu     sync.Mutex
	read   atomic.Value
	dirty  map[any]unsafe.Pointer
	misses int
}

type readOnlyMirror struct {
	m       map[any]unsafe.Pointer
	amended bool
}

// eface is the layout of an interface value: readOnly is not
// pointer-shaped, so the data word points to a copy of it.
type eface struct {
	typ, data unsafe.Pointer
}

type state struct {
	readLen  int
	amended  bool
	dirtyLen int
	misses   int
}

func (s state) String() string {
	a := 0
	if s.amended {
		a = 1
	}
	return fmt.Sprintf("r=%d a=%d d=%d m=%d", s.readLen, a, s.dirtyLen, s.misses)
}

func stateOf(m *sync.Map) state {
	mm := (*mapMirror)(unsafe.Pointer(m))
	var s state
	if r := mm.read.Load(); r != nil {
		ro := (*readOnlyMirror)((*eface)(unsafe.Pointer(&r)).data)
		s.readLen = len(ro.m)
		s.amended = ro.amended
	}
	if mm.dirty == nil {
		s.dirtyLen = -1
	} else {
		s.dirtyLen = len(mm.dirty)
	}
	s.misses = mm.misses
	return s
}

type events struct{ promotions, copies, expunged, unexpunged int }

func readOf(m *sync.Map) map[any]unsafe.Pointer {
	mm := (*mapMirror)(unsafe.Pointer(m))
	if r := mm.read.Load(); r != nil {
		return (*readOnlyMirror)((*eface)(unsafe.Pointer(&r)).data).m
	}
	return nil
}

// isExpunged: by sync.Map's invariants an entry of read.m is expunged
// exactly when dirty exists and lacks the key.
func isExpunged(m *sync.Map, k uint64) bool {
	dirty := (*mapMirror)(unsafe.Pointer(m)).dirty
	_, inRead := readOf(m)[k]
	_, inDirty := dirty[k]
	return inRead && dirty != nil && !inDirty
}

// count records what op f did, given the state before it.
func (e *events) count(m *sync.Map, f []string, before state, wasExpunged bool) {
	if f[0] == "new" {
		return
	}
	after := stateOf(m)
	if before.dirtyLen >= 0 && after.dirtyLen < 0 {
		e.promotions++
	}
	if before.dirtyLen < 0 && after.dirtyLen >= 0 {
		e.copies++
		dirty := (*mapMirror)(unsafe.Pointer(m)).dirty
		for k := range readOf(m) {
			if _, ok := dirty[k]; !ok {
				e.expunged++
			}
		}
	}
	if wasExpunged && (f[0] == "store" || f[0] == "los") {
		k, _ := strconv.ParseUint(f[1], 10, 64)
		if !isExpunged(m, k) {
			e.unexpunged++
		}
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "readmostly_go: "+format+"\n", args...)
	os.Exit(2)
}

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

// apply runs one op and returns its output line (without the state).
func apply(m **sync.Map, f []string) string {
	arg := func(i int) uint64 {
		if i >= len(f) {
			fatalf("op %q: missing argument", strings.Join(f, " "))
		}
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			fatalf("op %q: %v", strings.Join(f, " "), err)
		}
		return v
	}
	val := func(v any) uint64 {
		if v == nil {
			return 0
		}
		return v.(uint64)
	}
	switch f[0] {
	case "new":
		*m = new(sync.Map)
		return "new"
	case "load":
		v, ok := (*m).Load(arg(1))
		return fmt.Sprintf("load %d %d", b01(ok), val(v))
	case "store":
		(*m).Store(arg(1), arg(2))
		return "store"
	case "los":
		a, loaded := (*m).LoadOrStore(arg(1), arg(2))
		return fmt.Sprintf("los %d %d", b01(loaded), val(a))
	case "lad":
		v, ok := (*m).LoadAndDelete(arg(1))
		return fmt.Sprintf("lad %d %d", b01(ok), val(v))
	case "del":
		(*m).Delete(arg(1))
		return "del"
	case "range":
		var n, sk, sv uint64
		(*m).Range(func(k, v any) bool {
			n++
			sk += k.(uint64)
			sv += v.(uint64)
			return true
		})
		return fmt.Sprintf("range %d %d %d", n, sk, sv)
	case "rangestop":
		stop := arg(1)
		var calls uint64
		(*m).Range(func(k, v any) bool {
			calls++
			return calls < stop
		})
		return fmt.Sprintf("rangestop %d", calls)
	}
	fatalf("unknown op %q", f[0])
	return ""
}

// checkLayout compares the mirrors with reflect's view of the real types.
func checkLayout() []string {
	var bad []string
	field := func(t reflect.Type, name string) reflect.StructField {
		f, ok := t.FieldByName(name)
		if !ok {
			bad = append(bad, fmt.Sprintf("%v has no field %s", t, name))
		}
		return f
	}
	same := func(what string, real, mirror reflect.StructField) {
		if real.Offset != mirror.Offset || real.Type.Size() != mirror.Type.Size() ||
			real.Type.Kind() != mirror.Type.Kind() {
			bad = append(bad, fmt.Sprintf("%s: real offset %d size %d kind %v, mirror %d %d %v",
				what, real.Offset, real.Type.Size(), real.Type.Kind(), mirror.Offset,
				mirror.Type.Size(), mirror.Type.Kind()))
		}
	}
	rt, mt := reflect.TypeOf(sync.Map{}), reflect.TypeOf(mapMirror{})
	if rt.Size() != mt.Size() || rt.NumField() != mt.NumField() {
		bad = append(bad, fmt.Sprintf("sync.Map: size %d, %d fields; mirror %d, %d",
			rt.Size(), rt.NumField(), mt.Size(), mt.NumField()))
	}
	for _, n := range []string{"mu", "read", "dirty", "misses"} {
		same("sync.Map."+n, field(rt, n), field(mt, n))
	}
	var m sync.Map
	m.Store(uint64(1), uint64(1))
	r := (*mapMirror)(unsafe.Pointer(&m)).read.Load()
	if r == nil {
		bad = append(bad, "read holds nothing after a Store")
		return bad
	}
	ro, rm := reflect.TypeOf(r), reflect.TypeOf(readOnlyMirror{})
	if ro.Kind() != reflect.Struct || ro.Name() != "readOnly" || ro.Size() != rm.Size() {
		bad = append(bad, fmt.Sprintf("read holds a %v (size %d), not a readOnly like the mirror (size %d)",
			ro, ro.Size(), rm.Size()))
		return bad
	}
	for _, n := range []string{"m", "amended"} {
		same("readOnly."+n, field(ro, n), field(rm, n))
	}
	return bad
}

// The documented sequence (go-map-semantics.md section 2.1) with keys
// a=1 b=2 c=3 n=14 zz=26 and a stored nil written as the value 0.
var selftestSeq = []struct{ op, want string }{
	{"new", "new | r=0 a=0 d=-1 m=0"},
	{"store 1 1", "store | r=0 a=1 d=1 m=0"},
	{"load 1", "load 1 1 | r=1 a=0 d=-1 m=0"}, // a miss promotes: 1 >= len(dirty)
	{"store 2 2", "store | r=1 a=1 d=2 m=0"},  // dirty := copy(read) + b
	{"store 1 10", "store | r=1 a=1 d=2 m=0"}, // in read: lock-free
	{"load 26", "load 0 0 | r=1 a=1 d=2 m=1"},
	{"load 26", "load 0 0 | r=2 a=0 d=-1 m=0"}, // 2 >= 2: promote
	{"los 1 99", "los 1 10 | r=2 a=0 d=-1 m=0"},
	{"los 3 3", "los 0 3 | r=2 a=1 d=3 m=0"},
	{"los 3 4", "los 1 3 | r=2 a=1 d=3 m=1"}, // a hit in dirty counts a miss
	{"store 14 0", "store | r=2 a=1 d=4 m=1"},
	{"load 14", "load 1 0 | r=2 a=1 d=4 m=2"}, // a stored "nil" is present
	{"new", "new | r=0 a=0 d=-1 m=0"},
	{"store 1 1", "store | r=0 a=1 d=1 m=0"},
	{"store 2 2", "store | r=0 a=1 d=2 m=0"},
	{"range", "range 2 3 3 | r=2 a=0 d=-1 m=0"}, // Range promotes at once
	{"del 1", "del | r=2 a=0 d=-1 m=0"},         // in read: p = nil, lock-free
	{"store 3 3", "store | r=2 a=1 d=2 m=0"},    // a expunged, not copied
	{"store 1 11", "store | r=2 a=1 d=3 m=0"},   // a unexpunged
}

func selftest() int {
	bad := checkLayout()
	var m *sync.Map
	for i, s := range selftestSeq {
		if i == 0 && len(bad) > 0 {
			break // reading through a wrong mirror could crash
		}
		got := apply(&m, strings.Fields(s.op)) + " | " + stateOf(m).String()
		if got != s.want {
			bad = append(bad, fmt.Sprintf("step %d %q: got %q, want %q", i, s.op, got, s.want))
		}
	}
	for _, b := range bad {
		fmt.Fprintln(os.Stderr, "selftest:", b)
	}
	if len(bad) > 0 {
		return 1
	}
	fmt.Printf("selftest: layout and %d documented steps ok\n", len(selftestSeq))
	return 0
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-selftest" {
		os.Exit(selftest())
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	var m *sync.Map
	var ev events
	for in.Scan() {
		line := in.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if m == nil && f[0] != "new" {
			fatalf("the trace must start with new")
		}
		var before state
		wasExpunged := false
		if m != nil {
			before = stateOf(m)
			if len(f) > 1 {
				k, _ := strconv.ParseUint(f[1], 10, 64)
				wasExpunged = isExpunged(m, k)
			}
		}
		res := apply(&m, f)
		ev.count(m, f, before, wasExpunged)
		fmt.Fprintf(out, "%s | %s\n", res, stateOf(m))
	}
	if err := in.Err(); err != nil {
		fatalf("reading the trace: %v", err)
	}
	fmt.Fprintf(out, "# events promotions=%d copies=%d expunged=%d unexpunged=%d\n",
		ev.promotions, ev.copies, ev.expunged, ev.unexpunged)
}
