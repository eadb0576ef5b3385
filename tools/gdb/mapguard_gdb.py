# mapguard_gdb.py - gdb support for mapguard maps (docs/gdb.md).
#
# Pretty-printers for struct mg_map and mg_stats, and the commands
#   mg-buckets MAP [N]   walk the first N buckets (and oldbuckets) of a map
#   mg-growth MAP        show the growth state of a map
#   mg-maps              list the named maps of the metrics registry
# on a live process or a core dump.  Load it with
#   (gdb) source tools/gdb/mapguard_gdb.py
# or let gdb auto-load it for libmapguard (libmapguard-gdb.py.in).
#
# Everything here reads the inferior's memory, which after a fatal may be
# half-written or freed: every read is guarded, and a printer shows what it
# could read rather than throwing.  The words (bucket, slot, tophash,
# overflow, evacuate, oldbuckets) are those of the essay in src/map.c.

import struct

import gdb
import gdb.printing

# ---------------------------------------------------------------------------
# The engine's constants.  The source of truth is src/internal.h; these
# mirror it (tests/gdb/check_constants.py compares them with the header, and
# check_layout() below with the debug info of the program being debugged).
# ---------------------------------------------------------------------------
MG_BUCKET_CNT = 8  # internal.h: MG_BUCKET_CNT (1 << MG_BUCKET_BITS)
MG_MAX_B = 58  # internal.h: MG_MAX_B
MG_LOAD_NUM = 13  # internal.h: MG_LOAD_NUM / MG_LOAD_DEN
MG_LOAD_DEN = 2
# Tophash values (internal.h: MG_EMPTY_REST .. MG_MIN_TOPHASH).
MG_EMPTY_REST = 0
MG_EMPTY_ONE = 1
MG_EVAC_X = 2
MG_EVAC_Y = 3
MG_EVAC_EMPTY = 4
MG_MIN_TOPHASH = 5
# Growth kinds (internal.h: MG_GROW_*).
MG_GROW_NONE = 0
MG_GROW_DOUBLE = 1
MG_GROW_SAME = 2
MG_GROW_SHRINK = 3
# Header magic (internal.h: MG_MAGIC_*).
MG_MAGIC_U64 = 0x4D47553634
MG_MAGIC_BYTES = 0x4D47425954
MG_MAGIC_FREED = 0x46524545
MG_MAGIC_MODE = 0x4D474D4F44
# Key kinds and modes (mapguard.h: mg_keykind, mg_mode).
MG_KEY_U64 = 0
MG_KEY_BYTES = 1
MODE_NAMES = ("unsync", "rwlock", "sharded", "readmostly", "snapshot", "actor")
# The layout this file reads with raw memory reads (internal.h: mg_ctrl,
# mg_slot, mg_ovf, mg_bkey) and the header size it was written against.
SIZEOF_CTRL = 16  # uint64_t tophash; mg_ovf *overflow
SIZEOF_SLOT = 16  # uint64_t key, val
OVF_SLOTS_OFFSET = 16  # mg_ovf: tophash, overflow, then slots[]
BKEY_DATA_OFFSET = 24  # mg_bkey: hash, len, dead, then data[]
SIZEOF_MAP = 208  # sizeof(struct mg_map) on LP64
# More old buckets than this are not scanned by mg-growth (one read each).
SCAN_MAX = 1 << 20

TOPHASH_NAMES = {
    MG_EMPTY_REST: "emptyRest",
    MG_EMPTY_ONE: "emptyOne",
    MG_EVAC_X: "evacuatedX",
    MG_EVAC_Y: "evacuatedY",
    MG_EVAC_EMPTY: "evacuatedEmpty",
}
GROW_NAMES = {
    MG_GROW_NONE: "none",
    MG_GROW_DOUBLE: "double",
    MG_GROW_SAME: "same-size",
    MG_GROW_SHRINK: "shrink",
}

_checked = False
_warnings = []


def _warn(msg):
    _warnings.append(msg)
    gdb.write("warning: mapguard_gdb: %s\n" % msg, gdb.STDERR)


def _lookup_type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        return None


def check_layout(force=False):
    """Compare the constants above with the debug info, once the program's
    types are known; warn (never fail) on a mismatch.  Returns True when the
    check ran."""
    global _checked
    if _checked and not force:
        return True
    m = _lookup_type("struct mg_map")
    if m is None:
        return False
    _checked = True
    try:
        if "little" not in gdb.execute("show endian", to_string=True):
            _warn("the target is not little endian: bucket words will read wrong")
    except gdb.error:
        pass
    names = set(f.name for f in m.fields())
    need = ("seed", "magic", "count", "buckets", "oldbuckets", "writer", "B",
            "grow", "keykind", "oldB", "nevacuate", "grows_total",
            "same_size_grows_total", "shrinks_total", "keybytes", "name")
    missing = [n for n in need if n not in names]
    if missing:
        _warn("struct mg_map has no field(s) %s: this script is out of date "
              "with src/internal.h" % ", ".join(missing))
    if m.sizeof != SIZEOF_MAP:
        _warn("sizeof(struct mg_map) is %d, this script expects %d: check it "
              "against src/internal.h" % (m.sizeof, SIZEOF_MAP))
    sizes = (("mg_ctrl", SIZEOF_CTRL), ("mg_slot", SIZEOF_SLOT),
             ("mg_ovf", OVF_SLOTS_OFFSET + MG_BUCKET_CNT * SIZEOF_SLOT),
             ("mg_bkey", BKEY_DATA_OFFSET))
    for tname, want in sizes:
        t = _lookup_type(tname)
        if t is not None and t.sizeof != want:
            _warn("sizeof(%s) is %d, this script expects %d" % (tname, t.sizeof, want))
    ovf = _lookup_type("mg_ovf")
    if ovf is not None:
        for f in ovf.strip_typedefs().fields():
            if f.name == "slots":
                lo, hi = f.type.range()
                if hi - lo + 1 != MG_BUCKET_CNT:
                    _warn("mg_ovf has %d slots, this script expects MG_BUCKET_CNT = %d"
                          % (hi - lo + 1, MG_BUCKET_CNT))
                if f.bitpos // 8 != OVF_SLOTS_OFFSET:
                    _warn("mg_ovf.slots is at offset %d, expected %d"
                          % (f.bitpos // 8, OVF_SLOTS_OFFSET))
    # Enumerators are in the debug info (the macros only with -g3).
    enums = (("MG_EMPTY_REST", MG_EMPTY_REST), ("MG_EMPTY_ONE", MG_EMPTY_ONE),
             ("MG_EVAC_X", MG_EVAC_X), ("MG_EVAC_Y", MG_EVAC_Y),
             ("MG_EVAC_EMPTY", MG_EVAC_EMPTY), ("MG_MIN_TOPHASH", MG_MIN_TOPHASH),
             ("MG_GROW_NONE", MG_GROW_NONE), ("MG_GROW_DOUBLE", MG_GROW_DOUBLE),
             ("MG_GROW_SAME", MG_GROW_SAME), ("MG_GROW_SHRINK", MG_GROW_SHRINK),
             ("MG_KEY_U64", MG_KEY_U64), ("MG_KEY_BYTES", MG_KEY_BYTES),
             ("MG_MAGIC_U64", MG_MAGIC_U64), ("MG_MAGIC_BYTES", MG_MAGIC_BYTES),
             ("MG_MAGIC_FREED", MG_MAGIC_FREED), ("MG_MAGIC_MODE", MG_MAGIC_MODE),
             ("MG_BUCKET_CNT", MG_BUCKET_CNT), ("MG_MAX_B", MG_MAX_B))
    for name, want in enums:
        try:
            got = int(gdb.parse_and_eval("(long long)(%s)" % name))
        except gdb.error:
            continue  # not in the debug info (a macro without -g3)
        if got != want:
            _warn("%s is %d in the program, this script says %d" % (name, got, want))
    for i, mname in enumerate(MODE_NAMES):
        try:
            got = int(gdb.parse_and_eval("(int)MG_%s" % mname.upper()))
        except gdb.error:
            continue
        if got != i:
            _warn("MG_%s is %d in the program, this script says %d"
                  % (mname.upper(), got, i))
    return True


# ---------------------------------------------------------------------------
# Guarded reads
# ---------------------------------------------------------------------------
class Unreadable(Exception):
    pass


def _inferior():
    return gdb.selected_inferior()


def read_bytes(addr, n):
    try:
        return bytes(_inferior().read_memory(addr, n))
    except (gdb.MemoryError, gdb.error, ValueError, OverflowError) as e:
        raise Unreadable("cannot read %d bytes at 0x%x (%s)" % (n, addr, e))


def read_u64s(addr, n):
    return struct.unpack("<%dQ" % n, read_bytes(addr, 8 * n))


def field(v, name):
    """int(v[name]), raising Unreadable on a memory error."""
    try:
        return int(v[name])
    except (gdb.MemoryError, gdb.error) as e:
        raise Unreadable("cannot read %s (%s)" % (name, e))


def read_cstr(addr, limit=200):
    """(text, length in bytes) of the C string at addr; (None, None) for
    NULL.  At most limit bytes are read."""
    if addr == 0:
        return None, None
    out = bytearray()
    try:
        while len(out) < limit:
            c = bytes(_inferior().read_memory(addr + len(out), 1))
            if c == b"\0":
                break
            out += c
        return out.decode("utf-8", "replace"), len(out)
    except (gdb.MemoryError, gdb.error) as e:
        raise Unreadable("name at 0x%x (%s)" % (addr, e))


def map_type():
    t = _lookup_type("struct mg_map")
    if t is None:
        raise gdb.GdbError("mapguard: no debug info for struct mg_map "
                           "(is libmapguard loaded, built with -g?)")
    return t


def map_value(addr):
    """The struct mg_map at addr (resolved from the library's debug info, so
    an opaque mg_map * from the application works too)."""
    return gdb.Value(addr).cast(map_type().pointer()).dereference()


def eval_map_addr(arg):
    """The address of the map an expression names: a pointer to mg_map (or
    any pointer or integer, taken as one), or an mg_map lvalue."""
    if not arg:
        raise gdb.GdbError("a map expression is required")
    v = gdb.parse_and_eval(arg)
    t = v.type.strip_typedefs()
    if t.code == gdb.TYPE_CODE_PTR:
        return int(v.cast(gdb.lookup_type("unsigned long")))
    if t.code == gdb.TYPE_CODE_INT:
        return int(v)
    if t.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_ARRAY) and v.address is not None:
        return int(v.address.cast(gdb.lookup_type("unsigned long")))
    raise gdb.GdbError("%s is not a map pointer" % arg)


def token_thread(token):
    """'thread TID (gdb thread N)' for a writer token (the address of the
    writing thread's mg_thread_rec, whose first word is its kernel tid)."""
    try:
        tid = struct.unpack("<q", read_bytes(token, 8))[0]
    except Unreadable:
        return "token 0x%x (unreadable)" % token
    s = "thread %d" % tid
    try:
        for th in _inferior().threads():
            if th.ptid[1] == tid:
                s += " (gdb thread %d)" % th.num
                break
    except gdb.error:
        pass
    return s + ", token 0x%x" % token


# ---------------------------------------------------------------------------
# A map's header, read once
# ---------------------------------------------------------------------------
class Table(object):
    """The fields of an mg_table that this file uses."""

    def __init__(self, addr):
        self.addr = addr
        v = gdb.Value(addr).cast(_lookup_type("mg_table").pointer()).dereference()
        self.ctrl = field(v, "ctrl")
        self.slots = field(v, "slots")
        self.nbuckets = field(v, "nbuckets")
        self.B = field(v, "B")
        self.noverflow = field(v, "noverflow")
        self.bytes = field(v, "bytes")
        self.grow_at = field(v, "grow_at")
        self.shrink_at = field(v, "shrink_at")


class MapInfo(object):
    """What could be read of the map at addr.  state: 'ok', 'mode',
    'freed', 'corrupt' or 'unreadable'; error: why reading stopped."""

    def __init__(self, addr):
        check_layout()
        self.addr = addr
        self.error = None
        self.name = self.name_len = None
        self.buckets = self.oldbuckets = None
        self.mode = None
        self.inner = None
        self.tables_bad = False
        try:
            self.v = map_value(addr)
            self.magic = field(self.v, "magic")
        except gdb.GdbError as e:  # no debug info for the library
            self.state = "nodebug"
            self.error = str(e)
            return
        except (Unreadable, gdb.MemoryError, gdb.error) as e:
            self.state = "unreadable"
            self.error = str(e)
            return
        if self.magic == MG_MAGIC_FREED:
            self.state = "freed"
            return
        if self.magic not in (MG_MAGIC_U64, MG_MAGIC_BYTES, MG_MAGIC_MODE):
            self.state = "corrupt"
            try:
                self.count = field(self.v, "count")
                self.B = field(self.v, "B")
            except Unreadable as e:
                self.error = str(e)
            return
        self.state = "mode" if self.magic == MG_MAGIC_MODE else "ok"
        try:
            self._read()
        except Unreadable as e:
            self.error = str(e)

    def _read(self):
        v = self.v
        self.keykind = field(v, "keykind")
        name = field(v, "name")
        try:
            self.name, self.name_len = read_cstr(name)
        except Unreadable:
            self.name = "<unreadable name at 0x%x>" % name
        if self.state == "mode":
            self._read_mode()
            return
        self.count = field(v, "count")
        self.B = field(v, "B")
        self.grow = field(v, "grow")
        self.oldB = field(v, "oldB")
        self.nevacuate = field(v, "nevacuate")
        self.grows_total = field(v, "grows_total")
        self.same_size_grows_total = field(v, "same_size_grows_total")
        self.shrinks_total = field(v, "shrinks_total")
        self.keybytes = field(v, "keybytes")
        self.writer = field(v, "writer")
        # As mg__check_header: an impossible B, or a "negative" count.
        if self.B > MG_MAX_B or self.count >= (1 << 63):
            self.state = "corrupt"
            return
        b = field(v, "buckets")
        o = field(v, "oldbuckets")
        self.tables_bad = True
        self.buckets = Table(b) if b else None
        self.oldbuckets = Table(o) if o else None
        self.tables_bad = False

    def _read_mode(self):
        mm = _lookup_type("struct mg_mmap")
        if mm is None:
            raise Unreadable("no debug info for struct mg_mmap")
        mv = gdb.Value(self.addr).cast(mm.pointer()).dereference()
        self.mode = field(mv, "mode")
        # RWLOCK and ACTOR keep their entries in one engine map, e.
        tname = {MODE_NAMES.index("rwlock"): "rw_map",
                 MODE_NAMES.index("actor"): "act_map"}.get(self.mode)
        t = _lookup_type(tname) if tname else None
        if t is not None:
            self.inner = field(gdb.Value(self.addr).cast(t.pointer()).dereference(), "e")

    # Derived values, as mg_stats_get computes them (src/map.c).
    def nbuckets(self):
        return 1 << self.B

    def load_factor(self):
        return float(self.count) / float(self.nbuckets())

    def overflow(self):
        n = 0
        for t in (self.buckets, self.oldbuckets):
            if t:
                n += t.noverflow
        return n

    def old_nbuckets(self):
        return self.oldbuckets.nbuckets if self.oldbuckets else 0

    def evacuated(self):
        """mg_stats.evacuated: old buckets below nevacuate (nevacuate counts
        groups of old buckets when shrinking)."""
        if not self.oldbuckets:
            return 0
        if self.grow == MG_GROW_SHRINK:
            return self.nevacuate << max(self.oldbuckets.B - self.B, 0)
        return self.nevacuate

    def bytes(self):
        n = map_type().sizeof + self.keybytes
        if self.name_len is not None:
            n += self.name_len + 1
        for t in (self.buckets, self.oldbuckets):
            if t:
                n += t.bytes
        return n

    def title(self):
        if self.name is None:
            nm = "(unnamed)"
        elif self.name.startswith("<unreadable"):
            nm = self.name
        else:
            nm = '"%s"' % self.name
        return "map %s @ 0x%x" % (nm, self.addr)

    def mode_name(self):
        if self.mode is None:
            return "unsync"
        if 0 <= self.mode < len(MODE_NAMES):
            return MODE_NAMES[self.mode]
        return "mode %d?" % self.mode

    def key_name(self):
        return "bytes" if self.keykind == MG_KEY_BYTES else "u64"

    def growing_text(self):
        if not self.oldbuckets:
            return "no"
        return "%s, %d/%d old buckets evacuated (nevacuate %d)" % (
            GROW_NAMES.get(self.grow, "kind %d?" % self.grow), self.evacuated(),
            self.old_nbuckets(), self.nevacuate)

    def writer_text(self):
        return "none" if self.writer == 0 else token_thread(self.writer)


# ---------------------------------------------------------------------------
# Pretty-printers
# ---------------------------------------------------------------------------
class MapPrinter(object):
    """struct mg_map: a summary of the header, never the raw words."""

    def __init__(self, val):
        self.val = val

    def _info(self):
        try:
            addr = int(self.val.address) if self.val.address is not None else None
        except gdb.error:
            addr = None
        if addr is None:
            return None
        return MapInfo(addr)

    def to_string(self):
        m = self._info()
        if m is None:
            return "mg_map (not in memory)"
        if m.state == "unreadable":
            return "mg_map @ 0x%x: <unreadable: %s>" % (m.addr, m.error)
        if m.state == "nodebug":
            return "mg_map @ 0x%x: <%s>" % (m.addr, m.error)
        if m.state == "freed":
            return "mg_map @ 0x%x: freed (magic MG_MAGIC_FREED: used after mg_free)" % m.addr
        if m.state == "corrupt":
            s = "mg_map @ 0x%x: corrupt header (magic 0x%x" % (m.addr, m.magic)
            if hasattr(m, "B"):
                s += ", B %d, count %d" % (m.B, m.count)
            return s + ")"
        parts = []
        try:
            parts.append("mode = %s" % m.mode_name())
            parts.append("keys = %s" % m.key_name())
            if m.state == "mode":
                if m.inner:
                    inner = MapInfo(m.inner)
                    parts.append("engine = 0x%x %s" % (m.inner, _engine_summary(inner)))
                else:
                    parts.append("engine = (not shown for this mode)")
            else:
                parts += [
                    "count = %d" % m.count,
                    "B = %d" % m.B,
                    "buckets = %d" % m.nbuckets(),
                    "load_factor = %.2f" % m.load_factor(),
                ]
                # The header says whether it grows; the tables, how far.
                if m.tables_bad:
                    parts.append("growing = %s" % GROW_NAMES.get(m.grow, "?"))
                else:
                    parts.append("growing = %s" % m.growing_text())
                    parts.append("overflow = %d" % m.overflow())
                parts += [
                    "grows_total = %d" % m.grows_total,
                    "same_size_grows_total = %d" % m.same_size_grows_total,
                    "shrinks_total = %d" % m.shrinks_total,
                    "writer = %s" % m.writer_text(),
                ]
                if not m.tables_bad:
                    parts.append("bytes = %d" % m.bytes())
        except (AttributeError, Unreadable):
            pass
        if m.error:
            parts.append("<unreadable: %s>" % m.error)
        return "%s {%s}" % (m.title().replace("map ", "mg_map ", 1), ", ".join(parts))


def _engine_summary(m):
    if m.state != "ok":
        return "(%s)" % m.state
    try:
        return "{count = %d, B = %d, growing = %s}" % (m.count, m.B, m.growing_text())
    except (AttributeError, Unreadable):
        return "<unreadable: %s>" % m.error


class StatsPrinter(object):
    """mg_stats: the fields, with the growth state in words."""

    FIELDS = ("count", "buckets", "overflow_buckets", "B", "load_factor",
              "growing", "same_size_grow", "shrinking", "evacuated",
              "old_buckets", "grows_total", "same_size_grows_total",
              "shrinks_total", "bytes")

    def __init__(self, val):
        self.val = val

    def to_string(self):
        parts = []
        try:
            for f in self.FIELDS:
                x = self.val[f]
                if f == "load_factor":
                    parts.append("load_factor = %.2f" % float(x))
                elif x.type.strip_typedefs().code == gdb.TYPE_CODE_BOOL:
                    parts.append("%s = %s" % (f, "true" if bool(x) else "false"))
                else:
                    parts.append("%s = %d" % (f, int(x)))
        except (gdb.MemoryError, gdb.error) as e:
            parts.append("<unreadable: %s>" % e)
        return "mg_stats {%s}" % ", ".join(parts)


class MapPointerPrinter(object):
    """mg_map *: the address and, when readable, the map's name."""

    def __init__(self, val):
        self.val = val

    def to_string(self):
        try:
            addr = int(self.val.cast(gdb.lookup_type("unsigned long")))
        except gdb.error:
            return "(mg_map *) ?"
        if addr == 0:
            return "(mg_map *) 0x0"
        m = MapInfo(addr)
        if m.state in ("ok", "mode") and m.name is not None:
            return '(mg_map *) 0x%x "%s"' % (addr, m.name)
        if m.state in ("freed", "corrupt", "unreadable"):
            return "(mg_map *) 0x%x <%s>" % (addr, m.state)
        return "(mg_map *) 0x%x" % addr


class MapguardPrinters(gdb.printing.PrettyPrinter):
    def __init__(self):
        super(MapguardPrinters, self).__init__("mapguard", [])

    def __call__(self, val):
        t = val.type.unqualified()
        if t.code == gdb.TYPE_CODE_TYPEDEF and t.name == "mg_stats":
            return StatsPrinter(val)
        t = t.strip_typedefs()
        if t.code == gdb.TYPE_CODE_STRUCT and t.tag == "mg_map":
            return MapPrinter(val)
        if t.code == gdb.TYPE_CODE_PTR:
            target = t.target().unqualified().strip_typedefs()
            if target.code == gdb.TYPE_CODE_STRUCT and target.tag == "mg_map":
                return MapPointerPrinter(val)
        return None


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------
def _slot_text(m, th, key, val):
    if th < MG_MIN_TOPHASH:
        return TOPHASH_NAMES[th]
    if m.keykind == MG_KEY_BYTES:
        try:
            hdr = read_u64s(key, 2)
            n = hdr[1]
            data = read_bytes(key + BKEY_DATA_OFFSET, min(n, 16)) if n else b""
            k = "len %d %r%s" % (n, data, "..." if n > 16 else "")
        except Unreadable:
            k = "<key 0x%x unreadable>" % key
        return "key %s val %d" % (k, val)
    return "key %d val %d" % (key, val)


def _read_bucket(ctrl_addr, slots_addr):
    """(tophash word, overflow link, [(key, val)] * 8) of one bucket."""
    th, ovf = read_u64s(ctrl_addr, 2)
    kv = read_u64s(slots_addr, 2 * MG_BUCKET_CNT)
    return th, ovf, [(kv[2 * j], kv[2 * j + 1]) for j in range(MG_BUCKET_CNT)]


def _print_chain(m, ctrl_addr, slots_addr, indent):
    """Print one bucket and its overflow chain; returns the chain length."""
    depth = 0
    seen = set()
    while True:
        th, ovf, kv = _read_bucket(ctrl_addr, slots_addr)
        tops = [(th >> (8 * j)) & 0xFF for j in range(MG_BUCKET_CNT)]
        gdb.write("%stophash %s\n" % (indent, " ".join("%02x" % t for t in tops)))
        last = MG_BUCKET_CNT
        while last > 0 and tops[last - 1] == MG_EMPTY_REST:
            last -= 1
        for j in range(last):
            gdb.write("%s  slot %d: %s\n" % (indent, j, _slot_text(m, tops[j], kv[j][0], kv[j][1])))
        if last < MG_BUCKET_CNT:
            gdb.write("%s  slots %d-%d: emptyRest\n" % (indent, last, MG_BUCKET_CNT - 1))
        if not ovf:
            return depth
        if ovf in seen or depth > 1000:
            gdb.write("%s  overflow chain loops at 0x%x\n" % (indent, ovf))
            return depth
        seen.add(ovf)
        depth += 1
        gdb.write("%soverflow 0x%x:\n" % (indent, ovf))
        ctrl_addr, slots_addr = ovf, ovf + OVF_SLOTS_OFFSET


def _old_state(th):
    """'evacuated' or 'not evacuated' for an old bucket, judged as Go's
    evacuated(b) does, by the tophash of its first slot."""
    h = th & 0xFF
    return "evacuated" if MG_EMPTY_ONE < h < MG_MIN_TOPHASH else "not evacuated"


def _info_or_error(arg):
    try:
        addr = eval_map_addr(arg)
    except gdb.GdbError:
        raise
    except gdb.error as e:  # a bad expression: gdb's message, no traceback
        raise gdb.GdbError(str(e))
    m = MapInfo(addr)
    if m.state == "nodebug":
        raise gdb.GdbError(m.error)
    if m.state == "unreadable":
        raise gdb.GdbError("map @ 0x%x: unreadable: %s" % (addr, m.error))
    if m.state == "freed":
        raise gdb.GdbError("map @ 0x%x: freed (magic MG_MAGIC_FREED)" % addr)
    if m.state == "corrupt":
        raise gdb.GdbError("map @ 0x%x: corrupt header (magic 0x%x)" % (addr, m.magic))
    if m.error:
        raise gdb.GdbError("%s: unreadable: %s" % (m.title(), m.error))
    return m


def _engine_of(m, cmd):
    """The engine map a command walks: m itself, or a mode map's engine."""
    if m.state != "mode":
        return m
    if not m.inner:
        raise gdb.GdbError("%s: mode %s keeps no single engine map; %s walks "
                           "engine maps only" % (m.title(), m.mode_name(), cmd))
    gdb.write("%s: mode %s, its engine map:\n" % (m.title(), m.mode_name()))
    return _info_or_error("(void *)0x%x" % m.inner)


class BucketsCommand(gdb.Command):
    """Walk a map's buckets: mg-buckets MAP [N]

Prints the first N buckets (default 8) of the bucket array and, while the
map grows, of oldbuckets: the tophash of each slot, the key and value of
live slots (u64 maps; byte keys: length and first bytes), each overflow
bucket of the chain, and whether each old bucket is evacuated."""

    def __init__(self):
        super(BucketsCommand, self).__init__("mg-buckets", gdb.COMMAND_DATA,
                                             gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if not args or len(args) > 2:
            raise gdb.GdbError("usage: mg-buckets MAP [N]")
        n = 8
        if len(args) == 2:
            try:
                n = int(gdb.parse_and_eval(args[1]))
            except gdb.error as e:
                raise gdb.GdbError(str(e))
        m = _engine_of(_info_or_error(args[0]), "mg-buckets")
        try:
            self._walk(m, n)
        except Unreadable as e:
            gdb.write("<unreadable: %s>\n" % e)

    def _walk(self, m, n):
        gdb.write("%s: count %d, B %d, keys %s\n" % (m.title(), m.count, m.B, m.key_name()))
        t = m.buckets
        if not t:
            gdb.write("no bucket array (empty map)\n")
            return
        if t.B != m.B or t.nbuckets != 1 << t.B:
            gdb.write("warning: the bucket array says B %d, %d buckets; the header "
                      "says B %d (invariant I1 broken)\n" % (t.B, t.nbuckets, m.B))
        shown = min(n, t.nbuckets)
        gdb.write("buckets @ 0x%x: B %d, %d buckets, %d overflow; first %d:\n"
                  % (t.addr, t.B, t.nbuckets, t.noverflow, shown))
        for i in range(shown):
            gdb.write("bucket %d:\n" % i)
            _print_chain(m, t.ctrl + i * SIZEOF_CTRL,
                         t.slots + i * MG_BUCKET_CNT * SIZEOF_SLOT, "  ")
        o = m.oldbuckets
        if not o:
            return
        shown = min(n, o.nbuckets)
        gdb.write("oldbuckets @ 0x%x: B %d, %d buckets, grow kind %s, nevacuate %d; first %d:\n"
                  % (o.addr, o.B, o.nbuckets, GROW_NAMES.get(m.grow, "?"), m.nevacuate, shown))
        for i in range(shown):
            th = read_u64s(o.ctrl + i * SIZEOF_CTRL, 1)[0]
            gdb.write("old bucket %d: %s\n" % (i, _old_state(th)))
            _print_chain(m, o.ctrl + i * SIZEOF_CTRL,
                         o.slots + i * MG_BUCKET_CNT * SIZEOF_SLOT, "  ")


def scan_evacuated(o):
    """How many old buckets are evacuated, judged by tophash (one read of
    the whole control array); None when the array is too big or unreadable."""
    if o.nbuckets > SCAN_MAX:
        return None
    try:
        words = read_u64s(o.ctrl, 2 * o.nbuckets)
    except Unreadable:
        return None
    return sum(1 for i in range(o.nbuckets)
               if MG_EMPTY_ONE < (words[2 * i] & 0xFF) < MG_MIN_TOPHASH)


class GrowthCommand(gdb.Command):
    """Show a map's growth state: mg-growth MAP

Prints the grow kind (double, same-size, shrink), old and new B,
nevacuate, the evacuated fraction as mg_stats reports it, and how many
old buckets a scan of their tophash finds evacuated (writes evacuate the
bucket they touch as well as the one at nevacuate)."""

    def __init__(self):
        super(GrowthCommand, self).__init__("mg-growth", gdb.COMMAND_DATA,
                                            gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        m = _engine_of(_info_or_error(arg.strip()), "mg-growth")
        try:
            self._show(m)
        except (Unreadable, AttributeError) as e:
            gdb.write("<unreadable: %s>\n" % e)

    def _show(self, m):
        t = m.buckets
        if not m.oldbuckets:
            gdb.write("%s: not growing\n" % m.title())
            gdb.write("  B = %d (%d buckets), count = %d, load_factor = %.2f\n"
                      % (m.B, m.nbuckets(), m.count, m.load_factor()))
            if t:
                gdb.write("  next grow check at count %d" % t.grow_at)
                if t.shrink_at:
                    gdb.write(", shrink check at count %d" % t.shrink_at)
                gdb.write("\n")
            gdb.write("  grows_total = %d, same_size_grows_total = %d, shrinks_total = %d\n"
                      % (m.grows_total, m.same_size_grows_total, m.shrinks_total))
            return
        o = m.oldbuckets
        kind = GROW_NAMES.get(m.grow, "kind %d?" % m.grow)
        gdb.write("%s: growing (%s)\n" % (m.title(), kind))
        gdb.write("  old B = %d (%d old buckets) -> new B = %d (%d buckets)\n"
                  % (o.B, o.nbuckets, m.B, m.nbuckets()))
        unit = "old bucket groups" if m.grow == MG_GROW_SHRINK else "old buckets"
        gdb.write("  nevacuate = %d (%s below it are evacuated)\n" % (m.nevacuate, unit))
        ev = m.evacuated()
        gdb.write("  evacuated = %d/%d old buckets (%.1f%%)\n"
                  % (ev, o.nbuckets, 100.0 * ev / o.nbuckets if o.nbuckets else 0.0))
        scanned = scan_evacuated(o)
        if scanned is None:
            gdb.write("  tophash scan: skipped (%d old buckets)\n" % o.nbuckets)
        else:
            gdb.write("  tophash scan: %d/%d old buckets evacuated\n" % (scanned, o.nbuckets))
        gdb.write("  count = %d, load_factor = %.2f, overflow = %d\n"
                  % (m.count, m.load_factor(), m.overflow()))
        gdb.write("  grows_total = %d, same_size_grows_total = %d, shrinks_total = %d\n"
                  % (m.grows_total, m.same_size_grows_total, m.shrinks_total))


class MapsCommand(gdb.Command):
    """List the named maps: mg-maps

Reads the metrics registry (src/obs/registry.c: reg, reg_n), where every
map created with a name is listed until mg_free.  Unnamed maps are not."""

    def __init__(self):
        super(MapsCommand, self).__init__("mg-maps", gdb.COMMAND_DATA, gdb.COMPLETE_NONE)

    def _sym(self, name):
        try:
            syms = gdb.lookup_static_symbols(name)
        except AttributeError:  # gdb < 10
            s = gdb.lookup_static_symbol(name)
            syms = [s] if s else []
        for s in syms:
            if s.symtab and s.symtab.filename.endswith("registry.c"):
                return s.value()
        return None

    def invoke(self, arg, from_tty):
        check_layout()
        reg, reg_n = self._sym("reg"), self._sym("reg_n")
        if reg is None or reg_n is None:
            raise gdb.GdbError("mapguard: no symbols for the registry (reg, reg_n "
                               "in src/obs/registry.c)")
        try:
            n = int(reg_n)
            base = int(reg)
            ptrs = read_u64s(base, n) if n else ()
        except (gdb.MemoryError, gdb.error, Unreadable) as e:
            raise gdb.GdbError("mapguard: registry unreadable: %s" % e)
        gdb.write("%d named map(s)\n" % n)
        for i, p in enumerate(ptrs):
            m = MapInfo(p)
            if m.state == "ok" and not m.error:
                gdb.write("  [%d] %s: %s, %s keys, count %d, B %d, growing %s\n"
                          % (i, m.title(), m.mode_name(), m.key_name(), m.count, m.B,
                             m.growing_text()))
            elif m.state == "mode" and not m.error:
                gdb.write("  [%d] %s: %s, %s keys\n" % (i, m.title(), m.mode_name(), m.key_name()))
            else:
                gdb.write("  [%d] map @ 0x%x: %s%s\n" % (i, p, m.state,
                                                          " (%s)" % m.error if m.error else ""))


def register(objfile=None):
    """Register the printers (globally: an application's opaque mg_map *
    should print too) and the commands.  Safe to call more than once."""
    gdb.printing.register_pretty_printer(None, MapguardPrinters(), replace=True)
    BucketsCommand()
    GrowthCommand()
    MapsCommand()
    check_layout()


register()
