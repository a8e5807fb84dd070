#!/usr/bin/python3
"""Size and time of the standard tools on one checkpoint: the numbers ckptfs must beat.

    baselines.py BASE_DIR [STEP_DIR] [--no-patch-from] [--no-xdelta] [--env FILE]

With STEP_DIR (a delta checkpoint), for every file of STEP_DIR, paired with the file of
the same relative path in BASE_DIR (a file the base lacks, or of another size, is
compressed whole, as ckptfs stores it):

  raw             bytes of the file
  xor+zstd-1      XOR with the base (numpy, in 4 MiB pieces) piped to `zstd -1 -c`
                  -- the yardstick of the delta target (ckptfs <= 0.85 x this)
  planes+zstd-1   the same XOR, but each 4 MiB piece of a tensor written as byte planes
                  (byte 0 of every element, then byte 1, ...; safetensors header gives
                  the element width) -- what a plane-splitting encoder gets from zstd -1
  patch-from      `zstd -19 --long=31 -T2 --patch-from=BASE FILE -c` (refuses > 2 GiB)
  xdelta3         `xdelta3 -e -c -s BASE FILE` (default 64 MiB source window)

Without STEP_DIR (a base checkpoint): raw, zstd-1 of the file, planes+zstd-1.

Times are wall seconds on this machine, including reading inputs from the page cache
(run it warm); "peak RSS" is the tool's max resident set from /usr/bin/time. Sizes are
compressed bytes; ratio = raw / compressed. Use --env FILE to also write the totals as
shell variables (BL_*) for run.sh.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

PIECE = 4 << 20                 # bytes per XOR piece and per plane-split block
PATCH_FROM_LIMIT = 2 << 30      # zstd --patch-from refuses larger files
MiB = 1 << 20


# --------------------------------------------------------------------------- input

def safetensors_layout(path):
    """[(start, end, element width)] covering the file; None if not safetensors."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > min(size - 8, 100 << 20):
                return None
            hdr = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    width = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2,
             "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
    spans = [(0, 8 + n, 1)]
    tensors = sorted((v["data_offsets"][0], v["data_offsets"][1], width.get(v["dtype"], 1))
                     for k, v in hdr.items() if k != "__metadata__")
    pos = 8 + n
    for a, b, w in tensors:
        if 8 + n + a > pos:
            spans.append((pos, 8 + n + a, 1))
        spans.append((8 + n + a, 8 + n + b, w))
        pos = 8 + n + b
    if pos < size:
        spans.append((pos, size, 1))
    return spans


def pieces(path, base, planes):
    """Yield the bytes to compress: file (XOR base), optionally as byte planes."""
    spans = safetensors_layout(path) if planes else None
    if spans is None:
        spans = [(0, os.path.getsize(path), 1)]
    with open(path, "rb") as f, (open(base, "rb") if base else open(os.devnull, "rb")) as g:
        for start, end, w in spans:
            f.seek(start)
            if base:
                g.seek(start)
            step = PIECE // w * w if w > 1 else PIECE
            for off in range(start, end, step):
                n = min(step, end - off)
                a = np.frombuffer(f.read(n), dtype=np.uint8)
                if base:
                    a = a ^ np.frombuffer(g.read(n), dtype=np.uint8)
                if w > 1 and n % w == 0:
                    a = a.reshape(-1, w).T.copy()   # planes, byte 0 first
                yield a.data if a.flags.c_contiguous else a.tobytes()


# --------------------------------------------------------------------------- tools

def count_output(cmd, feed=None):
    """Run cmd, feed it the byte pieces from `feed` on stdin (or none), count stdout.

    Returns (bytes out, wall seconds, peak RSS KiB of the tool or None)."""
    with open(os.devnull, "w") as devnull:
        rss_file = f"/tmp/.baselines-rss-{os.getpid()}"
        full = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd \
            if os.access("/usr/bin/time", os.X_OK) else cmd
        t0 = time.monotonic()
        p = subprocess.Popen(full, stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=devnull)
        err = []

        def writer():
            try:
                for piece in feed:
                    p.stdin.write(piece)
            except BaseException as e:     # noqa: BLE001 - reported below
                err.append(e)
            finally:
                p.stdin.close()

        th = None
        if feed:
            th = threading.Thread(target=writer, daemon=True)
            th.start()
        total = 0
        while True:
            buf = p.stdout.read(1 << 20)
            if not buf:
                break
            total += len(buf)
        if th:
            th.join()
        rc = p.wait()
        dt = time.monotonic() - t0
    rss = None
    try:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1])
        os.unlink(rss_file)
    except (OSError, ValueError, IndexError):
        pass
    if err:
        raise err[0]
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}")
    return total, dt, rss


def run_file(base, cur, args):
    """All measurements for one file; base is None when it is stored whole."""
    r = {"raw": os.path.getsize(cur)}
    r["xor_zstd1"] = count_output(["zstd", "-1", "-c", "-q"], pieces(cur, base, False))
    r["planes_zstd1"] = count_output(["zstd", "-1", "-c", "-q"], pieces(cur, base, True))
    if base is None:
        return r
    if args.patch_from:
        if r["raw"] > PATCH_FROM_LIMIT or os.path.getsize(base) > PATCH_FROM_LIMIT:
            r["patch_from"] = "skipped: > 2 GiB"
        else:
            r["patch_from"] = count_output(
                ["zstd", f"-{args.patch_level}", "--long=31", "-T2", "-q", "-c",
                 f"--patch-from={base}", cur])
    if args.xdelta:
        r["xdelta3"] = count_output(["xdelta3", "-e", "-c", "-f", "-s", base, cur])
    return r


# --------------------------------------------------------------------------- report

def files_of(d):
    out = []
    for root, _, names in os.walk(d):
        for n in names:
            out.append(os.path.relpath(os.path.join(root, n), d))
    return sorted(out)


def human(n):
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("base", help="base checkpoint directory")
    ap.add_argument("step", nargs="?", help="delta checkpoint directory")
    ap.add_argument("--no-patch-from", dest="patch_from", action="store_false",
                    help="skip zstd --patch-from (slow: about 1-2 MB/s at -19)")
    ap.add_argument("--patch-level", type=int, default=19, help="zstd level for patch-from")
    ap.add_argument("--no-xdelta", dest="xdelta", action="store_false",
                    help="skip xdelta3 (slow: a few MB/s)")
    ap.add_argument("--env", help="also write totals as shell variables to this file")
    args = ap.parse_args()

    delta = args.step is not None and os.path.realpath(args.step) != os.path.realpath(args.base)
    top = args.step if delta else args.base
    results = {}
    for rel in files_of(top):
        cur = os.path.join(top, rel)
        base = os.path.join(args.base, rel) if delta else None
        if base and (not os.path.isfile(base) or os.path.getsize(base) != os.path.getsize(cur)):
            base = None
        t0 = time.monotonic()
        results[rel] = run_file(base, cur, args)
        if results[rel]["raw"] >= MiB:
            print(f"  {rel}: {time.monotonic() - t0:.1f} s", file=sys.stderr)

    cols = [("xor_zstd1", "xor+zstd-1" if delta else "zstd-1"),
            ("planes_zstd1", "planes+zstd-1")]
    if delta:
        cols += [("patch_from", f"patch-from -{args.patch_level}"), ("xdelta3", "xdelta3")]
    totals = {"raw": 0}
    for key, _ in cols:
        totals[key] = [0, 0.0, 0, True]      # bytes, seconds, max rss, complete
    for r in results.values():
        totals["raw"] += r["raw"]
        for key, _ in cols:
            v = r.get(key)
            if isinstance(v, tuple):
                t = totals[key]
                t[0] += v[0]
                t[1] += v[1]
                t[2] = max(t[2], v[2] or 0)
            else:
                totals[key][3] = False

    raw = totals["raw"]
    what = f"{args.step} vs base {args.base}" if delta else f"{args.base} (whole)"
    print(f"\n#### Baselines: {what}")
    print(f"raw: {raw} bytes ({human(raw)}) in {len(results)} files\n")
    print("| method | bytes | raw/bytes | vs xor+zstd-1 | time s | MB/s | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = totals["xor_zstd1"][0]
    for key, label in cols:
        b, s, rss, complete = totals[key]
        if not complete:
            reasons = {r[key] for r in results.values()
                       if key in r and not isinstance(r[key], tuple)}
            label += " (" + ("; ".join(sorted(reasons)) or "skipped") + ")"
            if b == 0:
                print(f"| {label} | - | - | - | - | - | - |")
                continue
            label += ", partial"
        mbs = raw / 1e6 / max(s, 1e-9)
        print(f"| {label} | {b} | {raw / max(1, b):.2f}x | {b / max(1, ref):.3f} "
              f"| {s:.2f} | {mbs:.{0 if mbs >= 10 else 2}f} | {rss / 1024:.0f} MiB |")
    if len(results) > 1:
        print("\nper file (bytes):\n")
        print("| file | raw | " + " | ".join(label for _, label in cols) + " |")
        print("|---|---:|" + "---:|" * len(cols))
        for rel, r in results.items():
            vals = [str(r[k][0]) if isinstance(r.get(k), tuple) else "-" for k, _ in cols]
            print(f"| {rel} | {r['raw']} | " + " | ".join(vals) + " |")

    if args.env:
        with open(args.env, "w") as f:
            f.write(f"BL_RAW={raw}\n")
            for key, _ in cols:
                b, s, rss, complete = totals[key]
                name = key.upper()
                f.write(f"BL_{name}={b if complete else ''}\n")
                f.write(f"BL_{name}_SECONDS={s:.3f}\n")
                f.write(f"BL_{name}_RSS_KIB={rss}\n")


if __name__ == "__main__":
    main()
