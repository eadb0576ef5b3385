# check_constants.py - run inside gdb after tools/gdb/mapguard_gdb.py
# (gdb -batch -x mapguard_gdb.py -x check_constants.py PROG): the
# extension's copies of the engine's constants must equal src/internal.h,
# its mode names src/modes/mode.c, and its layout the debug info of PROG.
# Prints MG-CONSTANTS-OK when all hold, one MISMATCH line per difference.
import os
import re

import gdb

src = os.environ["MG_SOURCE_DIR"]
internal = open(os.path.join(src, "src", "internal.h")).read()
modec = open(os.path.join(src, "src", "modes", "mode.c")).read()
ext = globals()  # the extension was sourced into this namespace
bad = []
checked = 0


def expect(name, header_value):
    global checked
    checked += 1
    mine = ext.get(name)
    if mine != header_value:
        bad.append("%s: internal.h says %r, mapguard_gdb.py says %r" % (name, header_value, mine))


def define(name):
    m = re.search(r"^#define\s+%s\s+\(?([0-9a-fA-Fx]+)u?\)?" % name, internal, re.M)
    if not m:
        bad.append("%s: no #define in internal.h" % name)
        return None
    return int(m.group(1), 0)


bits = define("MG_BUCKET_BITS")
if bits is not None:
    expect("MG_BUCKET_CNT", 1 << bits)
for name in ("MG_MAX_B", "MG_LOAD_NUM", "MG_LOAD_DEN", "MG_MAGIC_U64",
             "MG_MAGIC_BYTES", "MG_MAGIC_FREED", "MG_MAGIC_MODE"):
    v = define(name)
    if v is not None:
        expect(name, v)

# The anonymous enums: values in order, explicit or implicit.
for first in ("MG_EMPTY_REST", "MG_GROW_NONE"):
    m = re.search(r"enum\s*\{([^}]*\b%s\b[^}]*)\}" % first, internal)
    if not m:
        bad.append("no enum with %s in internal.h" % first)
        continue
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    nxt = 0
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split("=")]
        val = int(parts[1], 0) if len(parts) == 2 else nxt
        expect(parts[0], val)
        nxt = val + 1

m = re.search(r"mode_names\[\]\s*=\s*\{([^}]*)\}", modec)
names = tuple(re.findall(r'"([a-z]+)"', m.group(1))) if m else None
checked += 1
if names != ext.get("MODE_NAMES"):
    bad.append("mode names: mode.c says %r, mapguard_gdb.py says %r" % (names, ext.get("MODE_NAMES")))

# The layout, against the program's debug info.
del ext["_warnings"][:]
if not ext["check_layout"](force=True):
    bad.append("no debug info for struct mg_map in the program")
for w in ext["_warnings"]:
    bad.append("layout: " + w)

for b in bad:
    print("MISMATCH " + b)
if not bad:
    print("MG-CONSTANTS-OK %d constants" % checked)
