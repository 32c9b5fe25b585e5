#!/usr/bin/env python3
"""rsyslog under the faults of pugmark's fault-injection suite (tests/faults.rs), for
BENCHMARKS.md: the same sender chain (logger -> rsyslog imtcp -> omrelp) into
rsyslog imrelp -> omfile on a small tmpfs filled mid-stream, and rsyslog imptcp -> omfile
under a 1024-descriptor limit with 5000 idle connections.

usage: rsyslog_faults.py CYCLES   (needs root for the tmpfs, rsyslogd, logger, prlimit)
Prints one `RSYSLOG ...` line per fault class.
"""
import os, socket, subprocess, sys, tempfile, time

CYCLES = int(sys.argv[1]) if len(sys.argv) > 1 else 1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(p, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {p}")


def rsyslogd(work, conf, prefix=()):
    os.makedirs(f"{work}/work", exist_ok=True)
    path = f"{work}/rsyslog.conf"
    with open(path, "w") as f:
        f.write(f'global(workDirectory="{work}/work")\n' + conf)
    return subprocess.Popen(
        [*prefix, "rsyslogd", "-n", "-f", path, "-i", f"{work}/pid"],
        stdout=subprocess.DEVNULL,
        stderr=open(f"{work}/err", "w"),
    )


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def count(path, tag):
    try:
        with open(path, errors="replace") as f:
            lines = [l for l in f if f"{tag}-" in l]
    except FileNotFoundError:
        return 0, 0
    ids = {l.split(f"{tag}-", 1)[1][:6] for l in lines}
    return len(ids), len(lines)


def fill(d):
    f = os.path.join(d, "filler")
    with open(f, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        except OSError:
            pass
    return f


def disk_full(root):
    disk = f"{root}/disk"
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk], check=True)
    try:
        relp, inp = free_port(), free_port()
        out = f"{disk}/out.log"
        b = rsyslogd(f"{root}/b", f'''module(load="imrelp")
input(type="imrelp" port="{relp}" address="127.0.0.1" ruleset="store")
ruleset(name="store") {{ action(type="omfile" file="{out}") }}
''')
        wait_port(relp)
        a = rsyslogd(f"{root}/a", f'''module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{inp}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omrelp" target="127.0.0.1" port="{relp}" template="RSYSLOG_SyslogProtocol23Format"
         action.resumeRetryCount="-1" action.resumeInterval="1" action.resumeIntervalMax="1"
         queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="256")
}}
''')
        wait_port(inp)
        n = 5000 * CYCLES
        logger = subprocess.Popen(
            ["logger", "--rfc5424", "--tcp", "-n", "127.0.0.1", "-P", str(inp), "-t", "rsfull"],
            stdin=subprocess.PIPE, text=True)
        resumes = []
        per_cycle = n // CYCLES
        for c in range(CYCLES):
            for i in range(c * per_cycle, (c + 1) * per_cycle):
                logger.stdin.write(f"rsfull-{i:06} payload\n")
                if i % 100 == 99:
                    logger.stdin.flush()
                    time.sleep(0.01)
                if i == c * per_cycle + per_cycle // 3:
                    filler = fill(disk)
                if i == c * per_cycle + 2 * per_cycle // 3:
                    time.sleep(1.5)
                    before = os.path.getsize(out) if os.path.exists(out) else 0
                    os.remove(filler)
                    t = time.time()
                    while time.time() - t < 30:
                        if os.path.exists(out) and os.path.getsize(out) > before:
                            break
                        time.sleep(0.01)
                    resumes.append(round(time.time() - t, 3))
        logger.stdin.close()
        logger.wait()
        time.sleep(8)
        stop(a)
        stop(b)
        unique, total = count(out, "rsfull")
        print(f"RSYSLOG disk-full: cycles {CYCLES}, sent {n}, stored {unique}, lost {n - unique}, "
              f"duplicates {total - unique}, resume s {resumes}", flush=True)
    finally:
        subprocess.run(["umount", "-l", disk])


def fd_limit(root):
    port = free_port()
    out = f"{root}/fd.log"
    r = rsyslogd(f"{root}/c", f'''module(load="imptcp")
input(type="imptcp" port="{port}" address="127.0.0.1" ruleset="store")
ruleset(name="store") {{ action(type="omfile" file="{out}") }}
''', prefix=("prlimit", "--nofile=1024:1024", "--"))
    wait_port(port)
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (12000, 12000))
    results = []
    held_counts = []
    for c in range(CYCLES):
        held, failed = [], 0
        for _ in range(5000):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                held.append(s)
            except OSError:
                failed += 1
                # The backlog is full (nothing accepts any more): every further connect
                # would wait out its timeout too.
                if failed >= 50:
                    break
        held_counts.append(len(held))
        time.sleep(0.5)
        # A sender while the idle ones are held: is it served?
        tag = f"rsfd{c}"
        served_during = False
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(f"<13>1 - h t - - - {tag}-000000 during\n".encode())
            s.close()
            time.sleep(1)
            served_during = count(out, tag)[0] > 0
        except OSError:
            pass
        for s in held:
            s.close()
        time.sleep(1)
        alive = r.poll() is None
        sent = 100
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            for i in range(1, sent + 1):
                s.sendall(f"<13>1 - h t - - - {tag}-{i:06} after\n".encode())
            s.close()
        except OSError:
            pass
        time.sleep(2)
        after = count(out, tag)[0] - (1 if served_during else 0)
        results.append((failed, served_during, alive, after))
    stop(r)
    lost = sum(100 - a for *_, a in results)
    print(f"RSYSLOG fd-limit: cycles {CYCLES}, 5000 idle tried each; connected {held_counts}; connect failures "
          f"{[f for f, *_ in results]}, new sender served while held {[d for _, d, *_ in results]}, "
          f"alive {all(a for _, _, a, _ in results)}, after: sent {100 * CYCLES}, lost {lost}", flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as root:
        disk_full(root)
        fd_limit(root)
