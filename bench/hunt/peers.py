#!/usr/bin/env python3
"""The peers of bench/hunt/run: their inputs from the indicator file, and the comparisons.

  peers.py filters IOCS.txt WORK   nfdump filter (`ip in [ … ]`, addresses and networks) and
                                   ripgrep patterns (addresses, names, URLs; rg has no CIDR)
  peers.py compare WORK            timings, pugmark hunt = its one-query-per-indicator oracle,
                                   MISP = plain, and per indicator: pugmark's flow hits against
                                   nfdump's matching flows, its syslog hits against rg's lines
  peers.py check WORK              check timings, fast path = event-by-event path
"""
import collections
import ipaddress
import json
import re
import sys


def indicators(path):
    out = []
    for line in open(path):
        v = line.split("#")[0].strip()
        if v:
            out.append(v)
    return out


def net_of(v):
    try:
        return ipaddress.ip_network(v, strict=False)
    except ValueError:
        return None


def filters(iocs, work):
    vals = indicators(iocs)
    nets = [v for v in vals if net_of(v) is not None]
    with open(f"{work}/nfdump.filter", "w") as f:
        f.write("ip in [ " + " ".join(nets) + " ]\n")
    with open(f"{work}/rg.patterns", "w") as f:
        for v in vals:
            if "/" not in v or "://" in v:
                f.write(v + "\n")


def timing(path):
    s, kb = open(path).read().split()
    return float(s), int(kb)


def compare(work):
    best = min(timing(f"{work}/hunt.time.{i}") for i in (1, 2, 3))
    misp = timing(f"{work}/hunt-misp.time")
    each = timing(f"{work}/hunt-each.time")
    nfd = timing(f"{work}/nfdump.time")
    rg = timing(f"{work}/rg.time")
    hunt = json.load(open(f"{work}/hunt.json"))
    print(f"pugmark hunt, plain list: {best[0]:.2f} s (best of 3), max RSS {best[1] // 1024} MB; "
          f"{len(hunt['hits'])} hits, truncated {hunt['truncated']}, "
          f"{len({h['indicator'] for h in hunt['hits']})} indicators hit")
    print(f"pugmark hunt, MISP JSON: {misp[0]:.2f} s; same hits as the plain list: "
          f"{json.load(open(f'{work}/hunt-misp.json')) == hunt}")
    print(f"pugmark hunt --one-query-per-indicator (old path, oracle): {each[0]:.2f} s; "
          f"same answer: {json.load(open(f'{work}/hunt-each.json')) == hunt}; "
          f"speed-up {each[0] / best[0]:.1f}x")
    print(f"nfdump -f 'ip in [...]' (flows only): {nfd[0]:.2f} s, max RSS {nfd[1] // 1024} MB "
          f"→ pugmark is {nfd[0] / best[0]:.2f}x nfdump's speed")
    print(f"rg -w -F -f (syslog text only, no CIDRs): {rg[0]:.2f} s → pugmark is {rg[0] / best[0]:.2f}x rg's speed")

    vals = indicators(f"{work}/iocs/iocs.txt")
    nets = {v: net_of(v) for v in vals if net_of(v) is not None}
    allhits = json.load(open(f"{work}/hunt-all.json"))["hits"]
    ours_flow = collections.Counter(h["indicator"] for h in allhits if h["observer"] == "network")
    ours_text = collections.Counter(h["indicator"] for h in allhits
                                    if h["observer"] != "network" and "/" not in h["indicator"])
    flow_seqs = {h["seq"] for h in allhits if h["observer"] == "network"}
    text_seqs = {h["seq"] for h in allhits if h["observer"] != "network" and "/" not in h["indicator"]}

    # nfdump: count each matching flow for every indicator covering one of its addresses.
    by_addr = collections.Counter()
    nf_flows = 0
    for line in open(f"{work}/nfdump.out"):
        parts = line.split()
        if len(parts) < 2:
            continue
        nf_flows += 1
        for a in set(parts[:2]):
            by_addr[a] += 1
    theirs_flow = collections.Counter()
    singles = {v: n for v, n in nets.items() if n.num_addresses == 1}
    wide = {v: n for v, n in nets.items() if n.num_addresses > 1}
    single_key = {str(n.network_address): v for v, n in singles.items()}
    for a, n in by_addr.items():
        if a in single_key:
            theirs_flow[single_key[a]] += n
        ip = ipaddress.ip_address(a)
        for v, net in wide.items():
            if net.version == ip.version and ip in net:
                theirs_flow[v] += n
    # Canonical spelling: pugmark prints indicators as parsed (`2001:db8::1`, `10.0.0.0/8`).
    canon = lambda v: str(net_of(v).network_address) if nets[v].num_addresses == 1 and "/" not in v else str(nets[v])
    theirs_flow = collections.Counter({canon(v): n for v, n in theirs_flow.items()})
    diff = {k: (ours_flow.get(k, 0), theirs_flow.get(k, 0)) for k in set(ours_flow) | set(theirs_flow)
            if ours_flow.get(k, 0) != theirs_flow.get(k, 0)}
    print(f"flows: pugmark {len(flow_seqs)} distinct flows hit by {len(ours_flow)} indicators; "
          f"nfdump {nf_flows} flows, {len(theirs_flow)} indicators; per-indicator counts equal: {not diff}"
          + (f" (differ: {sorted(diff.items())[:5]})" if diff else ""))

    # rg: each matching line, every address indicator it names as a word.
    word = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?![\w])")
    addr_ind = {str(n.network_address): v for v, n in singles.items() if "/" not in v}
    theirs_text = collections.Counter()
    rg_lines = 0
    for line in open(f"{work}/rg.out", errors="replace"):
        rg_lines += 1
        for a in set(word.findall(line)):
            if a in addr_ind:
                theirs_text[addr_ind[a]] += 1
    diff = {k: (ours_text.get(k, 0), theirs_text.get(k, 0)) for k in set(ours_text) | set(theirs_text)
            if ours_text.get(k, 0) != theirs_text.get(k, 0)}
    print(f"syslog text: pugmark {len(text_seqs)} distinct events; rg {rg_lines} lines; "
          f"per-indicator counts equal: {not diff}" + (f" (differ: {sorted(diff.items())[:5]})" if diff else ""))


def check(work):
    fast = timing(f"{work}/check.time")
    slow = timing(f"{work}/check-events.time")
    a = json.load(open(f"{work}/check.json"))
    b = json.load(open(f"{work}/check-events.json"))
    print(f"pugmark check: {fast[0]:.2f} s, max RSS {fast[1] // 1024} MB; examined {a['examined']}; "
          f"by kind {a['by_kind']}")
    print(f"pugmark check --from-events (old path, oracle): {slow[0]:.2f} s, max RSS {slow[1] // 1024} MB; "
          f"same findings: {a == b}; speed-up {slow[0] / fast[0]:.1f}x")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "filters":
        filters(sys.argv[2], sys.argv[3])
    elif cmd == "compare":
        compare(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2])
