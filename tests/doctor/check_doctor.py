#!/usr/bin/env python3
"""Checks `mapguard doctor` (tools/mapguard/doctor.c) from the outside.

check_doctor.py MAPGUARD json   the full run as JSON: valid, the twelve causes
                                in order, every field, ok=true, exit status 0,
                                the measured numbers each cause promises
check_doctor.py MAPGUARD cli    --list, a cause by name and by number, the
                                text form of one cause, a bad cause (exit 2)
"""
import json
import subprocess
import sys

CAUSES = ["concurrent-writes", "read-during-write", "iter-during-write", "nil-map",
          "freed-map", "mutate-during-range", "growth-stall", "hash-flood",
          "readmostly-thrash", "cow-lost-updates", "cold-start", "shrink"]
FIELDS = ["cause", "index", "title", "scenario", "happened", "expected", "caught_by",
          "numbers", "output", "fix", "verdict", "ok"]
# Numbers each measured cause must report (their values are timings or
# counts shown to the reader; only the verdict's facts are checked here).
NUMBERS = {
    "mutate-during-range": ["duplicates", "missed", "stale_values", "grows"],
    "growth-stall": ["mapguard_worst_us", "mapguard_worst_cpu_us", "mapguard_p999_us",
                     "rehash_worst_us", "rehash_worst_cpu_us", "grows_total",
                     "timeline_grow_events"],
    "hash-flood": ["overflow_buckets", "buckets", "longest_chain",
                   "fixed_hash_longest_chain", "same_size_grows_total"],
    "readmostly-thrash": ["readmostly_mops_w0", "sharded_mops_w25", "misses_w25",
                          "promotions_w25", "switch_point_pct"],
    "cow-lost-updates": ["naive_lost", "snapshot_lost"],
    "cold-start": ["grows_no_hint", "grows_hint", "worst_us_no_hint"],
    "shrink": ["peak_bytes", "after_bytes", "shrinks_total"],
}
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(exe, *args):
    p = subprocess.run([exe, "doctor", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def check_json(exe):
    rc, out, err = run(exe, "--json")
    check(rc == 0, f"doctor --json exit status {rc} (stderr: {err.strip()[:500]})")
    try:
        doc = json.loads(out)
    except ValueError as e:
        check(False, f"doctor --json is not valid JSON: {e}")
        print(out[:2000])
        return
    check(isinstance(doc, list), "the JSON is a list")
    names = [c.get("cause") for c in doc]
    check(names == CAUSES, f"the causes, in order: {names}")
    for i, c in enumerate(doc):
        name = c.get("cause")
        for f in FIELDS:
            check(f in c, f"{name}: field {f}")
        check(c.get("index") == i + 1, f"{name}: index {c.get('index')}")
        check(c.get("ok") is True, f"{name}: ok is {c.get('ok')} "
              f"(happened: {c.get('happened')}; caught_by: {c.get('caught_by')}; "
              f"output: {str(c.get('output'))[:1500]})")
        check(isinstance(c.get("numbers"), dict), f"{name}: numbers is an object")
        for f in ("title", "scenario", "happened", "expected", "caught_by", "fix"):
            check(isinstance(c.get(f), str) and c.get(f), f"{name}: {f} is a non-empty string")
        for k in NUMBERS.get(name, []):
            check(isinstance(c.get("numbers", {}).get(k), (int, float)),
                  f"{name}: numbers.{k}")
        if name and name.startswith(("concurrent", "read-", "iter-", "nil-", "freed")):
            check(c.get("caught_by", "").startswith("fatal error: "),
                  f"{name}: caught_by is the report's first line")
    by = {c.get("cause"): c for c in doc}
    if "concurrent-writes" in by:
        check("both call sites" in by["concurrent-writes"]["caught_by"] or
              "both threads" in by["concurrent-writes"]["caught_by"],
              "concurrent-writes: the report names both threads")
    if "freed-map" in by:
        cb = by["freed-map"]["caught_by"]
        check("use of freed map" in cb and "corrupted map header" in cb,
              f"freed-map: freed and corrupted both caught: {cb}")
    n = by.get("cow-lost-updates", {}).get("numbers", {})
    check(n.get("snapshot_lost") == 0, "cow-lost-updates: MG_SNAPSHOT lost nothing")
    n = by.get("cold-start", {}).get("numbers", {})
    check(n.get("grows_hint") == 0, "cold-start: no grow with the hint")
    n = by.get("shrink", {}).get("numbers", {})
    if "peak_bytes" in n and "after_bytes" in n:
        check(n["after_bytes"] * 10 < n["peak_bytes"], "shrink: under 1/10 of the peak")
    # Print the numbers: the test log then carries the run's measurements.
    for c in doc:
        print(c.get("cause"), json.dumps(c.get("numbers")))


def check_cli(exe):
    rc, out, _ = run(exe, "--list")
    check(rc == 0, "--list exits 0")
    listed = [l.split()[1] for l in out.splitlines()[1:] if l.strip()]
    check(listed == CAUSES, f"--list names the twelve causes in order: {listed}")
    rc, out, _ = run(exe, "nil-map", "--json")
    doc = json.loads(out)
    check(rc == 0 and len(doc) == 1 and doc[0]["cause"] == "nil-map" and doc[0]["ok"],
          "a cause by name: one result, ok")
    rc, out, _ = run(exe, "--json", "4")
    doc = json.loads(out)
    check(rc == 0 and len(doc) == 1 and doc[0]["cause"] == "nil-map",
          "a cause by number")
    rc, out, _ = run(exe, "freed-map")
    check(rc == 0, "freed-map (text) exits 0")
    for s in ("[1/1] freed-map", "caught by: fatal error: use of freed map",
              "caught by: fatal error: corrupted map header", "fix:",
              "verdict:   CAUGHT as expected", "1 of 1 causes"):
        check(s in out, f"freed-map text shows {s!r}")
    rc, _, err = run(exe, "no-such-cause")
    check(rc == 2 and "no such cause" in err, f"a bad cause exits 2 (got {rc})")
    rc, _, _ = run(exe, "--bogus")
    check(rc == 2, "a bad option exits 2")


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("json", "cli"):
        print(__doc__)
        return 2
    (check_json if sys.argv[2] == "json" else check_cli)(sys.argv[1])
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
