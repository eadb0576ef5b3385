#!/usr/bin/env python3
"""Check mapguard's USDT probes in libmapguard.so.

usage: check_usdt.py notes   LIB EVENTS_H
       check_usdt.py zero    LIB USDT_PROG
       check_usdt.py count   LIB USDT_PROG WORKDIR
       check_usdt.py scripts LIB TOOLS_DIR WORKDIR

notes    `readelf -n LIB` lists every probe of src/obs/events.h's table under
         provider mapguard, each with a semaphore inside section .probes
         (access and assign above all: their arguments cost).  No root needed.
zero     untraced, every semaphore reads 0 in a running process.
count    bpftrace, attached system-wide on LIB's path, counts exactly the
         events usdt_prog causes.  The handshake is deterministic: the
         script prints READY from BEGIN (after bpftrace attached its
         probes) before usdt_prog starts, and usdt_prog itself waits until
         the semaphore of every probe the script uses is raised.  Events of
         other processes (tests run in parallel) are filtered out by the
         pid usdt_prog reports through its own probe mgtest:begin.
scripts  every tools/bpftrace/*.bt compiles against LIB's probes
         (bpftrace --emit-elf: parse, semantic checks, code generation,
         nothing attached).

count and scripts exit 77 (skipped) when bpftrace is missing or cannot load
a program (not root, BPF not permitted).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def probes_in(lib):
    """{name: semaphore address} of provider mapguard in lib's notes."""
    out = subprocess.run(["readelf", "-n", lib], stdout=subprocess.PIPE, text=True,
                         timeout=60, check=True).stdout
    probes, prov, name = {}, None, None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Provider:"):
            prov = line.split()[1]
        elif line.startswith("Name:"):
            name = line.split()[1]
        elif line.startswith("Location:") and prov == "mapguard":
            m = re.search(r"Semaphore: (0x[0-9a-f]+)", line)
            if name in probes:
                # one probe name, several sites: same semaphore
                if probes[name] != int(m.group(1), 16):
                    fail("probe %s has two semaphores" % name)
            probes[name] = int(m.group(1), 16) if m else 0
    return probes


def section(lib, name):
    """(address, size) of a section of lib."""
    out = subprocess.run(["readelf", "-SW", lib], stdout=subprocess.PIPE, text=True,
                         timeout=60, check=True).stdout
    for line in out.splitlines():
        f = line.replace("[ ", "[").split()
        if len(f) > 5 and f[1] == name:
            return int(f[3], 16), int(f[5], 16)
    fail("%s has no section %s" % (lib, name))


def documented(events_h):
    """The probe names of the table in events.h."""
    names = []
    for line in open(events_h):
        m = re.match(r"\s*\*\s+MG_EV_\w+\(.*?\)\s+(\w+__\w+)\s", line)
        if m:
            names.append(m.group(1))
    if len(names) < 10:
        fail("found only %d probes in %s's table" % (len(names), events_h))
    return names


def notes(lib, events_h):
    found = probes_in(lib)
    want = documented(events_h)
    missing = [n for n in want if n not in found]
    if missing:
        fail("probes missing from %s: %s (found %s)" % (lib, missing, sorted(found)))
    extra = [n for n in found if n not in want]
    if extra:
        fail("probes not documented in events.h: %s" % extra)
    base, size = section(lib, ".probes")
    for n in want:
        sem = found[n]
        if sem == 0:
            fail("probe %s has no semaphore" % n)
        if not base <= sem < base + size:
            fail("semaphore of %s at %#x is outside .probes [%#x, %#x)" % (n, sem, base, base + size))
    print("ok: %d probes: %s" % (len(want), " ".join(want)))


def zero(lib, prog):
    sems = ["%#x" % s for s in probes_in(lib).values()]
    p = subprocess.run([prog, "zero"] + sems, timeout=60)
    if p.returncode != 0:
        fail("usdt_prog zero exited %d" % p.returncode)
    print("ok: %d semaphores read 0" % len(sems))


def need_bpftrace():
    bt = shutil.which("bpftrace")
    if not bt:
        skip("bpftrace is not installed (Debian: apt-get install bpftrace)")
    try:
        p = subprocess.run([bt, "-e", "BEGIN { exit(); }"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        skip("`bpftrace -e 'BEGIN { exit(); }'` timed out")
    if p.returncode != 0:
        skip("bpftrace cannot load a program here (root and BPF needed): %s"
             % p.stdout.strip().splitlines()[-1:])
    return bt


COUNTED = {  # bpftrace map -> probe
    "access": "map__access",
    "assign": "map__assign",
    "grow_start": "map__grow__start",
    "grow_done": "map__grow__done",
}


def count(lib, prog, work):
    bt = need_bpftrace()
    os.makedirs(work, exist_ok=True)
    lib = os.path.realpath(lib)
    prog = os.path.realpath(prog)
    f = "/pid == @pid/"
    script = ["BEGIN { printf(\"READY\\n\"); }",
              "usdt:%s:mgtest:begin { @pid = pid; }" % prog]
    for key, probe in COUNTED.items():
        script.append("usdt:%s:mapguard:%s %s { @%s = count(); }" % (lib, probe, f, key))
    # the arguments: the name (arg1) and the u64 key (arg2)
    script.append('usdt:%s:mapguard:map__access %s { if (str(arg1) == "usdt") '
                  '{ @access_named = count(); @access_keysum = sum(arg2); } }' % (lib, f))
    script.append('usdt:%s:mapguard:map__assign %s { if (str(arg1) == "usdt") '
                  '{ @assign_keysum = sum(arg2); } }' % (lib, f))
    script.append("usdt:%s:mgtest:end %s { exit(); }" % (prog, f))
    path = os.path.join(work, "count.bt")
    with open(path, "w") as fh:
        fh.write("\n".join(script) + "\n")
    sems = ["%#x" % probes_in(lib)[p] for p in COUNTED.values()]

    out_path = os.path.join(work, "count.out")
    out = open(out_path, "w+")
    bpf = subprocess.Popen(["timeout", "-s", "INT", "120", bt, "-B", "none", path],
                           stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            out.seek(0)
            text = out.read()
            if "READY" in text:
                break
            if bpf.poll() is not None:
                fail("bpftrace ended before it was ready:\n" + text)
            if time.time() > deadline:
                fail("bpftrace not ready after 90 s:\n" + text)
            time.sleep(0.05)
        n, m = 1000, 4000
        p = subprocess.run([prog, "count", str(n), str(m)] + sems, stdout=subprocess.PIPE,
                           timeout=120, text=True)
        if p.returncode != 0:
            fail("usdt_prog count exited %d" % p.returncode)
        want = json.loads(p.stdout.strip().splitlines()[-1])
        bpf.wait(timeout=60)
    finally:
        if bpf.poll() is None:
            bpf.send_signal(signal.SIGINT)
            try:
                bpf.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bpf.kill()
    out.seek(0)
    text = out.read()
    print(text)
    got = {k: int(v) for k, v in re.findall(r"^@(\w+): (\d+)$", text, re.M)}
    bad = []
    for key, val in want.items():
        if got.get(key, 0) != val:
            bad.append("%s: bpftrace counted %d, the program caused %d" % (key, got.get(key, 0), val))
    if want["grow_start"] < 5:
        bad.append("the program grew its maps only %d times" % want["grow_start"])
    if bad:
        fail("\n  ".join(["counts differ:"] + bad))
    print("ok: " + json.dumps(want))


def scripts(lib, tools, work):
    bt = need_bpftrace()
    os.makedirs(work, exist_ok=True)
    files = sorted(f for f in os.listdir(tools) if f.endswith(".bt"))
    if not files:
        fail("no scripts in " + tools)
    for f in files:
        elf = os.path.join(work, f + ".elf")
        p = subprocess.run([bt, "--emit-elf", elf, os.path.join(tools, f), lib, "somemap"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120)
        if p.returncode != 0 or not os.path.exists(elf):
            fail("%s does not compile against %s:\n%s" % (f, lib, p.stdout))
        print("ok: " + f)


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "notes":
        notes(a[1], a[2])
    elif len(a) == 3 and a[0] == "zero":
        zero(a[1], a[2])
    elif len(a) == 4 and a[0] == "count":
        count(a[1], a[2], a[3])
    elif len(a) == 4 and a[0] == "scripts":
        scripts(a[1], a[2], a[3])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
