#!/usr/bin/env python3
"""Instructions per request by function and by source line of the profiled program, counted
through inlining: callgrind_annotate charges an inlined `Option::map` or slice index to the std
file it comes from, and so hides which of our lines paid for it. This script charges every
instruction to the innermost frame that lies in the program's own sources (addr2line -i), so a
fat LTO build, where nearly everything is inlined into a few functions, still shows where its
instructions go.

    OUT=/tmp/cg LINES=1 benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1'

runs it for you; by hand, on a profile recorded with `--dump-instr=yes`:

    benches/scripts/callgrind-lines.py /tmp/cg.1 target/perf/examples/hello REQUESTS [MIN]

MIN (default 2) hides rows below that many instructions per request. Needs addr2line (binutils).
Only the program's own object is counted (not libc: its memcpy shows in callgrind_annotate).

First comes a table by stage of a request's trip through pinion, by the source file of each
instruction's innermost own frame (see `STAGES`): parsing, routing, the handler layers, the
actor hop, the response's encoding, the connection and reactor.
"""
import collections
import os
import re
import subprocess
import sys


def costs(profile, binary):
    """Exclusive instruction counts by address, for the object `binary`."""
    name = os.path.basename(binary)
    objects, current, addr, call_line, width = {}, None, 0, False, 1
    found = collections.Counter()
    with open(profile) as f:
        for line in f:
            m = re.match(r"(c?)ob=\((\d+)\)\s*(.*)", line)
            if m:
                if m.group(3):
                    objects[m.group(2)] = m.group(3).strip()
                if not m.group(1):
                    current = objects.get(m.group(2), "")
                continue
            if line.startswith("calls="):
                # The next cost line is the call's inclusive cost: its position counts, its
                # cost is the callee's.
                call_line = True
                continue
            if line.startswith("positions:"):
                # `instr`, or `instr line`: the cost follows that many position fields.
                width = len(line.split()) - 1
                continue
            fields = line.split()
            if len(fields) <= width or not re.fullmatch(r"0x[0-9a-fA-F]+|[+-]\d+|\*", fields[0]):
                continue
            pos = fields[0]
            addr = int(pos, 16) if pos.startswith("0x") else addr if pos == "*" else addr + int(pos)
            if call_line:
                call_line = False
            elif current and os.path.basename(current) == name:
                found[addr] += int(fields[width])
    if not found:
        sys.exit(f"no instruction of {name} in {profile}: was it recorded with --dump-instr=yes?")
    return found


def frames(binary, addrs):
    """addr2line's inline chain (innermost first) for each address: [(function, file:line)]."""
    out = subprocess.run(
        ["addr2line", "-i", "-f", "-C", "-a", "-e", binary] + [hex(a) for a in addrs],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    chains, at, i = {}, None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            at = int(out[i], 16)
            chains[at] = []
            i += 1
        else:
            chains[at].append((out[i], out[i + 1] if i + 1 < len(out) else "?"))
            i += 2
    return chains


# A request's stages by source file (first match wins); anything else is "other".
STAGES = [
    ("HTTP parse: head, fields, framing, request buffers", r"^src/http/(scan|head|request|conn|body|spares)"),
    ("routing and middleware", r"^src/web/(router|middleware)"),
    ("handler layers, WebRequest, answer hand-off and delivery", r"^src/web/(handler|dispatch|request|server|worker)"),
    ("actor hop: pool, mailbox, process, run queue", r"^src/(pool/|process/|shard/(mod|executor|spawn))"),
    ("response slots and encoding", r"^src/http/(outgoing|encode|response)"),
    ("connection and reactor: reads, writes, timers", r"^src/(web/conn|shard/(io|turn|reactor))"),
    ("the example's own code", r"^examples/"),
]


def stage_of(where):
    for name, pattern in STAGES:
        if re.search(pattern, where):
            return name
    return "other (std and crates inlined outside our frames, unknown lines)"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    profile, binary, requests = sys.argv[1], sys.argv[2], float(sys.argv[3])
    least = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    found = costs(profile, binary)
    chains = frames(binary, sorted(found))
    by_function, by_line, by_stage = collections.Counter(), collections.Counter(), collections.Counter()
    for addr, n in found.items():
        chain = chains.get(addr) or [("?", "?")]
        # The innermost frame in the program's own sources (not the toolchain's, not a crate's
        # from the registry); the innermost frame of all if there is none.
        own = [f for f in chain if not re.search(r"/rustc/|/\.cargo/registry/|^\?", f[1])]
        function, where = (own or chain)[0]
        where = re.sub(r" \(discriminator \d+\)", "", where)
        where = re.sub(r"^.*?/(src|examples|benches)/", r"\1/", where)
        by_function[function] += n
        by_line[where] += n
        by_stage[stage_of(where)] += n
    total = sum(found.values()) / requests
    print(f"{total:.0f} instructions per request in {os.path.basename(binary)} itself")
    print("\nby stage (the source file of the innermost own frame):")
    for key, n in by_stage.most_common():
        print(f"{n / requests:8.1f}  {key}")
    for title, table in (("by function", by_function), ("by line", by_line)):
        print(f"\n{title} (instructions per request, the innermost frame of the program's own):")
        for key, n in table.most_common():
            if n / requests < least:
                break
            print(f"{n / requests:8.1f}  {key[:140]}")


if __name__ == "__main__":
    main()
