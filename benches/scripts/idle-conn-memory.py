#!/usr/bin/env python3
"""Memory per idle keep-alive connection, for each server command given: the server starts on
127.0.0.1 (pinned to core 0), N connections each send one `GET /plaintext` and read the answer,
then stay open and idle; the growth of the server's RSS divided by N is printed. Every server
runs in turn, in the order given, and is stopped before the next.

    cargo build --release --example hello
    benches/scripts/idle-conn-memory.py [-n 5000] \
        'target/release/examples/hello --port {port} --cores 1' \
        '../shared/bench/peers/target/release/actix_web {port}' ...

Needs an open-files limit above N (the script raises its own soft limit as far as allowed).
"""
import argparse
import os
import resource
import shlex
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_listening(port, proc, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def measure(cmd, port, n):
    argv = ["taskset", "-c", "0"] + shlex.split(cmd.replace("{port}", str(port)))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_listening(port, proc)
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        request = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            socks.append(s)
        for s in socks:
            got = b""
            while b"Hello, World!" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("the server closed a keep-alive connection")
                got += chunk
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        return before, after
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000, help="idle connections (default 5000)")
    ap.add_argument("--port", type=int, default=18531)
    ap.add_argument("servers", nargs="+", help="server commands with {port}")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        sys.exit(f"the open-files limit is below {want}: raise it (ulimit -n {want})")
    print(f"{'server':<40} {'RSS before':>11} {'RSS after':>10} {'per connection':>15}")
    for cmd in args.servers:
        before, after = measure(cmd, args.port, args.n)
        name = os.path.basename(shlex.split(cmd)[0])
        print(f"{name:<40} {before:>8} KiB {after:>6} KiB {(after - before) * 1024 / args.n:>11.0f} B")


if __name__ == "__main__":
    main()
