#!/usr/bin/env python3
"""Sorts the samples of two `perf record -g` runs (Deno.serve and edge-node, each alone on a
pinned CPU under the same load) into stages by symbol, and prints a side-by-side table of
microseconds per request, given each server's measured CPU per request.

Usage: benches/perf-stages.py DENO.data EDGE.data DENO_US EDGE_US
"""
import subprocess, sys, re, collections
def cats(data):
    out = subprocess.run(["perf","report","-i",data,"--no-children","--sort","comm,dso,sym","-g","none","-q","--percent-limit","0"],capture_output=True,text=True).stdout
    c = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s{2,}(\S+)\s+\[(.)\]\s+(.*)$", line)
        if not m: continue
        pct, comm, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
        s = sym
        if kind == 'k':
            if re.search(r"finish_task_switch|schedule|_raw_spin_unlock_irq|futex|try_to_wake|enqueue|dequeue|pick_next|update_curr|psi_|select_task", s): k = "kernel: scheduler, wake-ups"
            elif re.search(r"epoll|ep_|eventfd", s): k = "kernel: epoll, eventfd"
            else: k = "kernel: TCP, syscalls"
        elif dso.startswith("[JIT]") or s.startswith("Builtins_") or "v8::internal" in s or "v8::" in s or s.startswith("0x0000"): k = "V8 (JIT, builtins, runtime)"
        elif "hyper" in s or "httparse" in s or "http::header" in s or "h1::" in s: k = "HTTP parse/encode (hyper)"
        elif "tokio" in s or "mio::" in s or "futures_util" in s or "futures_core" in s: k = "async runtime (tokio)"
        elif "deno_core" in s or "deno_" in s or "serde_v8" in s: k = "deno_core, deno ops"
        elif "js_runtime" in s: k = "isola js-runtime (ops, hand-over)"
        elif "edge_node" in s or "prometheus" in s or "tracing" in s: k = "isola edge-node (front, pool, logs, metrics)"
        elif re.search(r"^_?mi_|malloc|free|alloc::|mi_", s): k = "allocator"
        elif re.search(r"memmove|memcpy|memset|memcmp", s): k = "memcpy"
        elif "clock_gettime" in s or "vdso" in dso: k = "clock reads"
        elif dso.startswith("libc"): k = "libc (syscall stubs)"
        else: k = "other user"
        c[k] += pct
    return c
d, e = cats(sys.argv[1]), cats(sys.argv[2])
dus, eus = float(sys.argv[3]), float(sys.argv[4])
keys = sorted(set(d)|set(e), key=lambda k: -(e.get(k,0)*eus))
print(f"| stage | Deno.serve µs/request | edge-node µs/request |")
print("|---|---:|---:|")
for k in keys:
    print(f"| {k} | {d.get(k,0)*dus/100:.2f} | {e.get(k,0)*eus/100:.2f} |")
print(f"| total | {sum(d.values())*dus/100:.2f} | {sum(e.values())*eus/100:.2f} |")
