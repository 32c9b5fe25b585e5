#!/usr/bin/env python3
"""Each web UI page's server time (its Server-Timing `page;dur`) and client time, logged in with
an API token through the login form like a browser. Stdlib only.

  pages.py BASE TOKEN ANSWERS.json ROUNDS  → one line per page: p50 / p95 / max (ms), bytes;
  then how the check page's answers stood (current, trailing, pending: api::checkjobs)
"""
import http.cookiejar, urllib.error, json, re, statistics, sys, time, urllib.parse, urllib.request

base, token, answers, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
jar = http.cookiejar.CookieJar()
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
page = op.open(base + "/ui/login").read().decode()
csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
op.open(base + "/ui/login", urllib.parse.urlencode({"token": token, "csrf": csrf, "next": "/ui/"}).encode()).read()

qs = [q for q in json.load(open(answers)) if q["kind"] == "who" and "ip" in q and q["expect"].get("matches")]
def pages(i):
    q = qs[i % len(qs)]
    vm = q["expect"]["matches"][0]["vm_uuid"]
    e = urllib.parse.quote
    return [
        ("home", "/ui/"),
        ("who", f"/ui/who?ip={e(q['ip'])}&at={e(q['at'])}"),
        ("search", f"/ui/search?q={e(q['ip'])}"),
        ("search+facet", f"/ui/search?q={e(q['ip'])}&observer=hypervisor"),
        ("timeline vm", f"/ui/timeline?vm={vm}"),
        ("timeline ip", f"/ui/timeline?ip={e(q['ip'])}"),
        ("check", "/ui/check"),
        ("hunt", f"/ui/hunt?indicators={e(q['ip'])}"),
        ("cases", "/ui/cases"),
    ]

server, client, size, status, standing = {}, {}, {}, {}, {}
for i in range(rounds):
    for name, url in pages(i):
        t0 = time.perf_counter()
        try:
            r = op.open(base + url)
        except urllib.error.HTTPError as err:  # 403 "not yours" for a VO: a page all the same
            r = err
        body = r.read()
        client.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        m = re.search(r"dur=([0-9.]+)", r.headers.get("server-timing", ""))
        server.setdefault(name, []).append(float(m.group(1)) if m else float("nan"))
        size.setdefault(name, []).append(len(body))
        status.setdefault(name, []).append(r.status)
        if name == "check":  # answered from the background checks: say which standing
            st = "pending" if b'class="pending"' in body else "trailing" if b"standing-trailing" in body else "current"
            standing[st] = standing.get(st, 0) + 1
        assert r.status in (200, 403), (url, r.status)

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

for name in server:
    s, c = server[name], client[name]
    print(f"{name:13s} server p50 {q(s,.5):7.1f} p95 {q(s,.95):7.1f} max {max(s):7.1f} ms | "
          f"client p50 {q(c,.5):7.1f} ms | {int(statistics.mean(size[name]))//1024} KiB | n={len(s)}, refused {status[name].count(403)}")
print("check page answers: " + ", ".join(f"{k} {v}" for k, v in sorted(standing.items())))
