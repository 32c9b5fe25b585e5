"""Timed `who` queries over the query API: N queries per client, C clients at once, each a
real HTTP request with a bearer token (answered 200, or 403 for a VO role asking about
another VO's address). Prints {"requests", "clients", "errors", "p50_ms", "p99_ms", "rps"}.

    load.py BASE_URL TOKEN N C ANSWERS_JSON
"""
import json, sys, time, urllib.request, threading
base, token, n, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
qs = [q for q in json.load(open(sys.argv[5])) if q["kind"] == "who"]
lat = []; errs = [0]; lock = threading.Lock()
def worker(i):
    for j in range(n):
        q = qs[(i * n + j) % len(qs)]
        k = "ip" if "ip" in q else ("host" if "host" in q else "mac")
        url = f"{base}/api/v1/who?{k}={q[k]}&at={q['at']}"
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req) as r: r.read()
        except urllib.error.HTTPError as e:
            if e.code != 403:
                with lock: errs[0] += 1
        except Exception:
            with lock: errs[0] += 1
        with lock: lat.append(time.perf_counter() - t)
ts = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
t0 = time.perf_counter()
for t in ts: t.start()
for t in ts: t.join()
el = time.perf_counter() - t0
lat.sort()
p = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] * 1000
print(json.dumps({"requests": len(lat), "clients": conc, "errors": errs[0], "p50_ms": round(p(0.5), 2), "p99_ms": round(p(0.99), 2), "rps": round(len(lat) / el, 1)}))
