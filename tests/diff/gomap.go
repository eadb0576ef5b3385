// gomap: the reference side of mapguard's differential test (diff_go.c).
//
// It reads an op trace on stdin, applies it to a real Go 1.19 map and
// prints one line for every op that has a result.  diff_go applies the same
// trace to a mapguard map and compares the two outputs line by line.
//
// Trace format (one op a line, fields separated by one space):
//
//	kind u64|str       first line: map[uint64]uint64 or map[string]uint64
//	make HINT          second line: make(map, HINT); HINT is a uint64, taken
//	                   as Go's int (so 1<<63 and up are negative hints)
//	put K V            m[K] = V                         no output
//	get K              v, ok := m[K]                    "get OK V" (V 0 when absent)
//	del K              _, ok := m[K]; delete(m, K)      "del OK LEN"
//	len                                                 "len N"
//	dump               every entry, sorted by key       "dump N K:V K:V ..."
//	B                  hmap.B, read through unsafe      "B n"
//	clear              for k := range m { delete(m, k) } (mapclear: keeps B)
//	# ...              comment, ignored
//
// K is a decimal uint64 for u64 maps.  For str maps it is "x" followed by
// the key's bytes in lowercase hex ("x" alone is the empty key), so any
// byte, NUL included, can appear in a key; hex keys sort like their bytes.
// V is a decimal uint64.
//
// "gomap -selftest" checks that hmap.B is read from the right place (the
// B-after-inserts and hint tables of the reference notes, section 1.4/1.5)
// and exits non-zero if not.
//
// Build: GO111MODULE=off go build -o gomap gomap.go   (Go 1.19, no modules)
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"unsafe"
)

// hmapHeader returns the count and B fields of the runtime's hmap behind a
// map value.  Go 1.19 (runtime/map.go) lays hmap out as
//
//	type hmap struct { count int; flags uint8; B uint8; ... }
//
// and a map value is a *hmap.  count is returned so callers can check the
// layout against len(m).
func hmapHeader(mp unsafe.Pointer) (count int, b uint8) {
	h := *(*unsafe.Pointer)(mp)
	if h == nil {
		return 0, 0
	}
	count = *(*int)(h)
	b = *(*uint8)(unsafe.Add(h, unsafe.Sizeof(int(0))+1))
	return count, b
}

func bU64(m map[uint64]uint64) uint8 {
	c, b := hmapHeader(unsafe.Pointer(&m))
	if c != len(m) {
		fatalf("hmap layout mismatch: hmap.count %d, len %d", c, len(m))
	}
	return b
}

func bStr(m map[string]uint64) uint8 {
	c, b := hmapHeader(unsafe.Pointer(&m))
	if c != len(m) {
		fatalf("hmap layout mismatch: hmap.count %d, len %d", c, len(m))
	}
	return b
}

// The exact idiom the compiler turns into runtime.mapclear (Go 1.19 has no
// clear builtin).  mapclear keeps B.
func clearU64(m map[uint64]uint64) {
	for k := range m {
		delete(m, k)
	}
}

func clearStr(m map[string]uint64) {
	for k := range m {
		delete(m, k)
	}
}

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gomap: "+format+"\n", args...)
	os.Exit(2)
}

// hintInt converts a trace hint to the int Go's make receives.
func hintInt(h uint64) int { return int(h) }

func main() {
	if len(os.Args) == 2 && os.Args[1] == "-selftest" {
		os.Exit(selftest())
	}
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: gomap < trace   |   gomap -selftest")
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<16), 1<<26)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()

	lineno := 0
	next := func() ([]byte, bool) {
		for in.Scan() {
			lineno++
			l := in.Bytes()
			if len(l) == 0 || l[0] == '#' {
				continue
			}
			return l, true
		}
		if err := in.Err(); err != nil {
			fatalf("read: %v", err)
		}
		return nil, false
	}
	bad := func(l []byte, why string) {
		fatalf("line %d: %s: %q", lineno, why, l)
	}

	l, ok := next()
	var isStr bool
	switch {
	case ok && string(l) == "kind u64":
	case ok && string(l) == "kind str":
		isStr = true
	default:
		bad(l, "want 'kind u64' or 'kind str'")
	}
	l, ok = next()
	if !ok || len(l) < 6 || string(l[:5]) != "make " {
		bad(l, "want 'make HINT'")
	}
	hint, err := strconv.ParseUint(string(l[5:]), 10, 64)
	if err != nil {
		bad(l, "bad hint")
	}
	var mu map[uint64]uint64
	var ms map[string]uint64
	if isStr {
		ms = make(map[string]uint64, hintInt(hint))
	} else {
		mu = make(map[uint64]uint64, hintInt(hint))
	}

	var fields [3][]byte
	for {
		l, ok = next()
		if !ok {
			break
		}
		nf := 0
		start := 0
		for i := 0; i <= len(l); i++ {
			if i == len(l) || l[i] == ' ' {
				if nf == len(fields) {
					bad(l, "too many fields")
				}
				fields[nf] = l[start:i]
				nf++
				start = i + 1
			}
		}
		var ku uint64
		var ks string
		key := func() {
			if nf < 2 {
				bad(l, "missing key")
			}
			f := fields[1]
			if isStr {
				if len(f) == 0 || f[0] != 'x' {
					bad(l, "str key must be x<hex>")
				}
				b, err := hex.DecodeString(string(f[1:]))
				if err != nil {
					bad(l, "bad hex key")
				}
				ks = string(b)
			} else {
				var err error
				ku, err = strconv.ParseUint(string(f), 10, 64)
				if err != nil {
					bad(l, "bad u64 key")
				}
			}
		}
		want := func(n int) {
			if nf != n {
				bad(l, "wrong number of fields")
			}
		}
		switch string(fields[0]) {
		case "put":
			want(3)
			key()
			v, err := strconv.ParseUint(string(fields[2]), 10, 64)
			if err != nil {
				bad(l, "bad value")
			}
			if isStr {
				ms[ks] = v
			} else {
				mu[ku] = v
			}
		case "get":
			want(2)
			key()
			var v uint64
			var ok bool
			if isStr {
				v, ok = ms[ks]
			} else {
				v, ok = mu[ku]
			}
			fmt.Fprintf(out, "get %d %d\n", b2i(ok), v)
		case "del":
			want(2)
			key()
			var ok bool
			var n int
			if isStr {
				_, ok = ms[ks]
				delete(ms, ks)
				n = len(ms)
			} else {
				_, ok = mu[ku]
				delete(mu, ku)
				n = len(mu)
			}
			fmt.Fprintf(out, "del %d %d\n", b2i(ok), n)
		case "len":
			want(1)
			if isStr {
				fmt.Fprintf(out, "len %d\n", len(ms))
			} else {
				fmt.Fprintf(out, "len %d\n", len(mu))
			}
		case "B":
			want(1)
			if isStr {
				fmt.Fprintf(out, "B %d\n", bStr(ms))
			} else {
				fmt.Fprintf(out, "B %d\n", bU64(mu))
			}
		case "clear":
			want(1)
			if isStr {
				clearStr(ms)
			} else {
				clearU64(mu)
			}
		case "dump":
			want(1)
			if isStr {
				dumpStr(out, ms)
			} else {
				dumpU64(out, mu)
			}
		default:
			bad(l, "unknown op")
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func dumpU64(out *bufio.Writer, m map[uint64]uint64) {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var buf []byte
	buf = append(buf, "dump "...)
	buf = strconv.AppendInt(buf, int64(len(keys)), 10)
	for _, k := range keys {
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, k, 10)
		buf = append(buf, ':')
		buf = strconv.AppendUint(buf, m[k], 10)
	}
	buf = append(buf, '\n')
	out.Write(buf)
}

func dumpStr(out *bufio.Writer, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // bytewise, like memcmp then length
	var buf []byte
	buf = append(buf, "dump "...)
	buf = strconv.AppendInt(buf, int64(len(keys)), 10)
	for _, k := range keys {
		buf = append(buf, " x"...)
		buf = append(buf, hex.EncodeToString([]byte(k))...)
		buf = append(buf, ':')
		buf = strconv.AppendUint(buf, m[k], 10)
	}
	buf = append(buf, '\n')
	out.Write(buf)
}

// selftest checks the unsafe read of hmap.B against numbers the runtime's
// constants fix (reference notes 1.4, 1.5, 1.8).  Returns the exit status.
func selftest() int {
	fails := 0
	check := func(what string, got uint8, want uint8) {
		if got != want {
			fmt.Fprintf(os.Stderr, "selftest: %s: B = %d, want %d\n", what, got, want)
			fails++
		}
	}
	// B after n inserts into make(map, 0): the load factor 6.5 steps.
	steps := []struct {
		n int
		b uint8
	}{{0, 0}, {8, 0}, {9, 1}, {13, 1}, {14, 2}, {26, 2}, {27, 3}, {52, 3}, {53, 4},
		{104, 4}, {105, 5}, {208, 5}, {209, 6}, {416, 6}, {417, 7}}
	for _, s := range steps {
		mu := make(map[uint64]uint64, hintInt(0))
		ms := make(map[string]uint64, hintInt(0))
		for i := 0; i < s.n; i++ {
			mu[uint64(i)*0x9e3779b97f4a7c15] = 1
			ms[strconv.Itoa(i)] = 1
		}
		check(fmt.Sprintf("u64 after %d inserts", s.n), bU64(mu), s.b)
		check(fmt.Sprintf("str after %d inserts", s.n), bStr(ms), s.b)
		if s.n == 209 {
			clearU64(mu)
			clearStr(ms)
			check("u64 clear after 209 inserts", bU64(mu), 6)
			check("str clear after 209 inserts", bStr(ms), 6)
			if len(mu) != 0 || len(ms) != 0 {
				fmt.Fprintln(os.Stderr, "selftest: clear left entries")
				fails++
			}
		}
	}
	// B chosen by make(map, hint), hint known only at run time.
	hints := []struct {
		h uint64
		b uint8
	}{{0, 0}, {1, 0}, {8, 0}, {9, 1}, {13, 1}, {14, 2}, {26, 2}, {27, 3},
		{52, 3}, {53, 4}, {104, 4}, {105, 5}, {1000, 8}, {1000000, 18},
		{1 << 48, 0}, {1 << 62, 0}, {1 << 63, 0}, {^uint64(0), 0}}
	for _, h := range hints {
		mu := make(map[uint64]uint64, hintInt(h.h))
		ms := make(map[string]uint64, hintInt(h.h))
		check(fmt.Sprintf("u64 make hint %d", h.h), bU64(mu), h.b)
		check(fmt.Sprintf("str make hint %d", h.h), bStr(ms), h.b)
	}
	// The smallest hints whose bucket memory exceeds maxAlloc (1<<48 on
	// linux/amd64) and so are treated as 0: buckets are 144 bytes for
	// map[uint64]uint64 and 208 for map[string]uint64.
	check("u64 make hint (1<<48)/144+1",
		bU64(make(map[uint64]uint64, hintInt((1<<48)/144+1))), 0)
	check("str make hint (1<<48)/208+1",
		bStr(make(map[string]uint64, hintInt((1<<48)/208+1))), 0)
	if fails != 0 {
		fmt.Fprintf(os.Stderr, "selftest: %d failures\n", fails)
		return 1
	}
	fmt.Println("selftest ok")
	return 0
}
