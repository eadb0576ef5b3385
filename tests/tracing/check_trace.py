#!/usr/bin/env python3
"""Validate the growth timeline (src/obs/trace.c) that trace_prog writes.

usage: check_trace.py TRACE_PROG {env|api|synthetic} WORKDIR

  env        trace_prog workload under MAPGUARD_TRACE=FILE (finished at exit)
  api        trace_prog workload FILE (mg_trace_start / mg_trace_stop)
  threads    trace_prog threads FILE (four threads' maps into one trace)
  synthetic  trace_prog synthetic FILE (the event macros on stand-ins)

The file must load with json.load; every event must carry the Chrome Trace
Event fields; each map's growth events must match its mg_stats counters,
pair up (B then E on the map's track) and follow B's sequence; evacuation
counters must stay bounded (at most STEPS + 2 per growth) and monotonic.
"""
import json
import os
import subprocess
import sys

STEPS = 64  # trace.c TR_STEPS


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(cmd, env=None):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=240, text=True)
    sys.stderr.write(p.stderr)
    check(p.returncode == 0, "%s exited %d" % (" ".join(cmd), p.returncode))
    return p.stdout


def load(path):
    check(os.path.exists(path), "no trace file " + path)
    with open(path, encoding="utf-8") as f:
        try:
            ev = json.load(f)
        except ValueError as e:
            fail("%s is not valid JSON: %s" % (path, e))
    check(isinstance(ev, list) and ev, "the trace is not a non-empty JSON array")
    for e in ev:
        for k in ("name", "ph", "pid", "tid", "ts"):
            check(k in e, "event without %r: %r" % (k, e))
        if e["ph"] != "M":
            check("cat" in e and "args" in e, "event without cat/args: %r" % e)
    ts = [float(e["ts"]) for e in ev if e["ph"] != "M"]
    check(ts == sorted(ts), "timestamps go backwards")
    pids = {e["pid"] for e in ev}
    check(len(pids) == 1, "more than one pid: %r" % pids)
    check(ev[0]["name"] == "process_name", "first event is not process_name")
    return ev


def tracks(ev):
    """thread_name -> list of tids (a name may own several tracks)."""
    out = {}
    for e in ev:
        if e["ph"] == "M" and e["name"] == "thread_name":
            out.setdefault(e["args"]["name"], []).append(e["tid"])
    return out


def growths(ev, tid):
    """The growths of one track, checked for pairing and counter bounds:
    a list of (B event, E event, counter samples)."""
    out, cur, samples = [], None, []
    mine = [e for e in ev if e["tid"] == tid and e["ph"] in "BEC"]
    for e in mine:
        if e["ph"] == "B":
            check(cur is None, "B inside an open growth on tid %d: %r" % (tid, e))
            cur, samples = e, []
        elif e["ph"] == "E":
            check(cur is not None, "E without B on tid %d: %r" % (tid, e))
            check(e["name"] == cur["name"], "E %r closes B %r" % (e["name"], cur["name"]))
            out.append((cur, e, samples))
            cur = None
        else:
            check(e["name"].startswith("evacuated "), "bad counter %r" % e["name"])
            v = e["args"]["fraction"]
            check(0 <= v <= 1, "fraction out of range: %r" % v)
            if cur is not None:
                samples.append(v)
    check(cur is None, "a B without E on tid %d" % tid)
    for b, e, s in out:
        check(len(s) <= STEPS + 2, "%d counter samples in one growth" % len(s))
        check(s == sorted(s), "evacuated fraction goes backwards: %r" % s)
    return out


def check_map(ev, name, st):
    tids = tracks(ev).get(name)
    check(tids and len(tids) == 1, "no single track named %r: %r" % (name, tracks(ev)))
    g = growths(ev, tids[0])
    grows = [x for x in g if x[0]["name"] == "grow"]
    shrinks = [x for x in g if x[0]["name"] == "shrink"]
    want = st["grows_total"] + st["same_size_grows_total"]
    check(len(grows) == want, "%s: %d grow events, grows_total + same_size_grows_total = %d"
          % (name, len(grows), want))
    check(len(shrinks) == st["shrinks_total"],
          "%s: %d shrink events, shrinks_total = %d" % (name, len(shrinks), st["shrinks_total"]))
    same = [x for x in grows if x[0]["args"]["kind"] == "same-size"]
    check(len(same) == st["same_size_grows_total"], "%s: %d same-size grows, want %d"
          % (name, len(same), st["same_size_grows_total"]))
    prev = None
    for b, e, s in g:
        a = b["args"]
        kind = a["kind"]
        if kind == "double":
            check(a["newB"] == a["oldB"] + 1, "double: %r" % a)
        elif kind == "same-size":
            check(a["newB"] == a["oldB"], "same-size: %r" % a)
        else:
            check(kind == "shrink" and a["newB"] < a["oldB"], "shrink: %r" % a)
        if prev is not None:
            check(a["oldB"] == prev, "%s: growth from B=%d after one to B=%d" % (name, a["oldB"], prev))
        prev = a["newB"]
        ea = e["args"]
        check("unfinished" not in ea, "%s: growth left unfinished: %r" % (name, ea))
        check(ea["B"] == a["newB"], "%s: E at B=%d for a growth to %d" % (name, ea["B"], a["newB"]))
        check(ea["evacuated"] == ea["units"],
              "%s: %d of %d units reported evacuated (MG_EV_EVACUATE once per unit)"
              % (name, ea["evacuated"], ea["units"]))
        check(s and s[-1] == 1, "%s: counter never reached 1: %r" % (name, s[-5:]))
    check(prev == st["B"], "%s: last growth ends at B=%r, the map has B=%d" % (name, prev, st["B"]))
    return g


def workload(ev, st):
    g = check_map(ev, "timeline", st["timeline"])
    doubles = [x for x in g if x[0]["args"]["kind"] == "double"]
    check(len(doubles) >= 5, "timeline: only %d doublings" % len(doubles))
    check([x[0]["args"]["newB"] for x in doubles] ==
          sorted(x[0]["args"]["newB"] for x in doubles), "B sequence not increasing")
    check(st["timeline"]["shrinks_total"] >= 1, "the workload did not shrink")
    check_map(ev, 'churn "q"', st["churn"])
    check(st["churn"]["same_size_grows_total"] >= 1, "no same-size grow")
    check_map(ev, "map " + st["anon_addr"], st["anon"])
    promotes = [e for e in ev if e["ph"] == "i" and e["name"] == "promote"]
    publishes = [e for e in ev if e["ph"] == "i" and e["name"] == "publish"]
    check(len(promotes) == st["promotions_total"], "%d promote events, promotions_total %d"
          % (len(promotes), st["promotions_total"]))
    check(len(publishes) == st["snapshots_published_total"],
          "%d publish events, snapshots_published_total %d"
          % (len(publishes), st["snapshots_published_total"]))
    check(st["promotions_total"] >= 1, "no promotion in the workload")
    check(st["snapshots_published_total"] >= 1, "no publish in the workload")
    print("ok: %d events; timeline %d growths, promotions %d, publishes %d"
          % (len(ev), len(g), len(promotes), len(publishes)))


def threads(ev, st):
    total = 0
    for name, s in st.items():
        check(s["shrinks_total"] >= 1 and s["grows_total"] >= 5, "%s: %r" % (name, s))
        total += len(check_map(ev, name, s))
    print("ok: %d events, %d growths on %d maps" % (len(ev), total, len(st)))


def synthetic(ev, st):
    t = tracks(ev)
    big = growths(ev, t["big"][0])
    check(len(big) == 1, "big: %d growths" % len(big))
    b, e, s = big[0]
    check(b["args"] == {"oldB": 16, "newB": 17, "kind": "double", "entries": 123}, repr(b["args"]))
    check(e["args"]["evacuated"] == 65536 and e["args"]["units"] == 65536, repr(e["args"]))
    check(len(s) == STEPS + 1 and s[0] == 0 and s[-1] == 1, "big: %d samples" % len(s))
    # trace_prog.c's name; ill-formed UTF-8 becomes U+FFFD, one per maximal
    # subpart, as Python decodes it (errors="replace")
    raw = (b'quote" back\\ tab\t nl\n \xc3\xa9 bad\xff f5\xf5\x80\x80\x80'
           b' over\xc0\xaf\xe0\x80\xaf sur\xed\xa0\x80 big\xf4\x90\x80\x80'
           b' ok\xf0\x9f\x98\x80 end\xe2\x82')
    odd = raw.decode("utf-8", "replace")
    check(odd.count("\ufffd") == 18 and "\U0001f600" in odd, repr(odd))
    check(odd in t, "escaped name missing: %r" % list(t))
    og = growths(ev, t[odd][0])
    check(len(og) == 1 and og[0][0]["args"]["kind"] == "same-size", repr(og))
    check(len(t["first"]) == 1 and len(t["second"]) == 1 and t["first"] != t["second"],
          "address reuse: %r" % t)
    first = growths(ev, t["first"][0])
    check(len(first) == 1 and first[0][1]["args"].get("interrupted") is True, repr(first))
    second = growths(ev, t["second"][0])
    check(len(second) == 1 and second[0][0]["args"]["kind"] == "shrink", repr(second))
    inst = [(e["name"], e["args"]) for e in ev if e["ph"] == "i" and e["tid"] == t["modes"][0]]
    check(inst == [("promote", {"entries": 7}), ("publish", {"version": 9})], repr(inst))
    check("child" not in t, "a forked child wrote to the trace")
    check(not any(e["name"] == "map__overflow" for e in ev), "overflow in the timeline")
    opn = growths(ev, t["map " + st["open_addr"]][0])
    check(len(opn) == 1 and opn[0][1]["args"].get("unfinished") is True, repr(opn))
    fatal = [e for e in ev if e["name"] == "fatal"]
    check(len(fatal) == 1 and fatal[0]["args"]["message"] == "concurrent map writes"
          and fatal[0]["s"] == "p", repr(fatal))
    print("ok: %d events" % len(ev))


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    prog, mode, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "trace-%s.json" % mode)
    if os.path.exists(path):
        os.unlink(path)
    env = dict(os.environ)
    env.pop("MAPGUARD_TRACE", None)
    if mode == "env":
        env["MAPGUARD_TRACE"] = path
        out = run([prog, "workload"], env)
    elif mode == "api":
        out = run([prog, "workload", path], env)
    elif mode in ("synthetic", "threads"):
        out = run([prog, mode, path], env)
    else:
        fail("unknown mode " + mode)
    st = json.loads(out.strip().splitlines()[-1])
    ev = load(path)
    {"synthetic": synthetic, "threads": threads}.get(mode, workload)(ev, st)


if __name__ == "__main__":
    main()
