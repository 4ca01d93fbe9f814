"""Start-to-ready time of a tokenwarden server, for scripts/bench.sh.

    startup.py --bin TW --command gateway|agent --template CONF --dir DIR --reps N
               [--rss-after SECONDS]

CONF is a config whose listen ports are written @PORT@ (the listener with /readyz) and @PORT2@
(another listener). Each repetition takes free ports, spawns `TW COMMAND --config FILE` and
polls GET /readyz every 0.5 ms until it answers 200: the time from spawn to that answer. With
--rss-after, the last process's VmRSS is read that many seconds after it became ready. Prints
one JSON object: {"ms": [...], "rss_kb": N | null}.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rss-after", type=float)
    args = ap.parse_args()
    template = open(args.template).read()
    times, rss = [], None
    for rep in range(args.reps):
        port, port2 = free_ports(2)
        conf = os.path.join(args.dir, f"{args.command}-start-{rep}.toml")
        with open(conf, "w") as f:
            f.write(template.replace("@PORT@", str(port)).replace("@PORT2@", str(port2)))
        log = open(os.path.join(args.dir, f"{args.command}-start-{rep}.log"), "w")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [args.bin, args.command, "--config", conf],
            cwd=args.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )
        try:
            while not ready(port):
                if proc.poll() is not None:
                    sys.exit(f"{args.command} exited with {proc.returncode}; see {log.name}")
                if time.perf_counter() - t0 > 30:
                    sys.exit(f"{args.command} not ready after 30 s; see {log.name}")
                time.sleep(0.0005)
            times.append(round((time.perf_counter() - t0) * 1000, 1))
            if args.rss_after is not None and rep == args.reps - 1:
                time.sleep(args.rss_after)
                rss = vm_rss_kb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    print(json.dumps({"ms": times, "rss_kb": rss}))


if __name__ == "__main__":
    main()
