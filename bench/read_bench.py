#!/usr/bin/python3
"""read_bench.py: cold reads through ckptfs vs plain disk vs a FUSE reference.

Measures, for a base checkpoint and a 1-step delta (bench/gen_ckpt.py, one
safetensors shard), cold (page cache dropped, freshly started daemon):

  seq   `cat FILE > /dev/null` (128 KiB reads)
  mmap  a safetensors-style loader: parse the header, mmap the file, copy
        every tensor out of the mapping in a seeded shuffled order (what
        safe_open / vLLM / SGLang do), page faults and all

on: plain disk, libfuse's passthrough_ll over the same disk (the cost of
FUSE itself, with the kernel's readahead), ckptfs with tensor-aware
read-ahead (default) and ckptfs with it off (--readahead-mib=0). Runs are
interleaved and each figure is the median of --repeat runs. Needs root
(drop_caches). Every file read through a mount is compared with the source
(sha256 of each tensor, once, outside the timed part).

  bench/read_bench.py [--size-mb 512] [--repeat 3] [--ckptfs build/src/cli/ckptfs]
                      [--dir /tmp/ckptfs-readbench] [--keep] [--no-passthrough]
                      [--opts "--cache-mib=256"] [--baseline OTHER_CKPTFS]
                      [--targets disk,ckptfs,...]

The store is written once by --ckptfs (kept with --keep and reused: delete
DIR/store after changing the format). "baseline" reads it with another
binary, e.g. a build of main, for before/after figures.

Prints a markdown table (also written to DIR/read_results.md).
"""
import argparse
import hashlib
import json
import mmap
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

LOADER = r'''
import json, mmap, os, random, struct, sys, time, hashlib
path, seed, verify = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
t0 = time.monotonic()
fd = os.open(path, os.O_RDONLY)
n = struct.unpack("<Q", os.pread(fd, 8, 0))[0]
hdr = json.loads(os.pread(fd, n, 8))
hdr.pop("__metadata__", None)
mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
names = sorted(hdr)
random.Random(seed).shuffle(names)
out = {}
for k in names:
    a, b = hdr[k]["data_offsets"]
    data = mm[8 + n + a:8 + n + b]       # page faults, in tensor order
    if verify:
        out[k] = hashlib.sha256(data).hexdigest()
t = time.monotonic() - t0
mm.close()
os.close(fd)
print(json.dumps({"seconds": t, "sha": out}))
'''


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def wait_mount(mnt, proc, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if subprocess.run(["mountpoint", "-q", mnt]).returncode == 0:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited {proc.returncode} before mounting {mnt}")
        time.sleep(0.05)
    raise RuntimeError(f"{mnt} did not mount")


class Mount:
    def __init__(self, argv, mnt, log):
        self.mnt = mnt
        self.logf = open(log, "a")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT)
        wait_mount(mnt, self.proc)

    def stats(self):
        try:
            return json.loads(os.getxattr(self.mnt, "user.ckptfs.stats"))
        except OSError:
            return {}

    def close(self):
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def loader(path, seed, verify=False):
    r = subprocess.run(["/usr/bin/python3", "-c", LOADER, path, str(seed),
                        "1" if verify else "0"], check=True, capture_output=True,
                       text=True)
    return json.loads(r.stdout)


def seq_read(path):
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while f.read(128 << 10):
            pass
    return time.monotonic() - t0


def build_passthrough(d):
    src = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
    out = os.path.join(d, "passthrough_ll")
    if os.path.exists(out):
        return out
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                           capture_output=True, text=True).stdout.split()
    r = subprocess.run(["cc", "-O2", "-o", out, src] + flags, capture_output=True)
    return out if r.returncode == 0 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ckptfs", default=os.path.join(HERE, "..", "build", "src", "cli", "ckptfs"))
    ap.add_argument("--dir", default="/tmp/ckptfs-readbench")
    ap.add_argument("--opts", default="", help="extra ckptfs mount options")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-passthrough", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline", default="",
                    help="another ckptfs binary (e.g. a build of main) as a column 'baseline'")
    ap.add_argument("--targets", default="",
                    help="comma-separated subset of disk,passthrough_ll,ckptfs,ckptfs-no-ra")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("read_bench.py needs root (drop_caches, cold reads)")
    ckptfs = os.path.abspath(a.ckptfs)
    d = os.path.abspath(a.dir)
    data, disk, store = f"{d}/data", f"{d}/disk", f"{d}/store"
    mnt, ptmnt, log = f"{d}/mnt", f"{d}/ptmnt", f"{d}/daemon.log"
    for p in (d, mnt, ptmnt):
        os.makedirs(p, exist_ok=True)
    steps = ["step-0000", "step-0001"]
    shard = "model-00001-of-00001.safetensors"
    if not all(os.path.exists(f"{data}/{s}/{shard}") for s in steps):
        sh("/usr/bin/python3", f"{HERE}/gen_ckpt.py", "--out", data, "--size-mb",
           str(a.size_mb), "--steps", "0,1", "--files", "1", "--quiet")
    size = os.path.getsize(f"{data}/{steps[0]}/{shard}")
    # Plain disk copies on the same filesystem as the store.
    for s in steps:
        if not os.path.exists(f"{disk}/{s}/{shard}"):
            os.makedirs(f"{disk}/{s}", exist_ok=True)
            shutil.copy(f"{data}/{s}/{shard}", f"{disk}/{s}/{shard}")
    opts = a.opts.split()
    base_argv = [ckptfs, "mount", "-f"] + opts
    if not os.path.exists(f"{store}/.done"):
        shutil.rmtree(store, ignore_errors=True)
        m = Mount(base_argv + [store, mnt], mnt, log)
        try:
            for s in steps:       # step-0000 is the base, step-0001 its delta
                os.mkdir(f"{mnt}/sampler/{s}")
                shutil.copy(f"{data}/{s}/{shard}", f"{mnt}/sampler/{s}/{shard}")
                os.sync()
            kinds = [os.getxattr(f"{mnt}/sampler/{s}", "user.ckptfs.kind").decode()
                     for s in steps]
            assert kinds == ["base", "delta"], kinds
        finally:
            m.close()
        open(f"{store}/.done", "w").close()

    pt = None if a.no_passthrough else build_passthrough(d)
    targets = ["disk"] + (["passthrough_ll"] if pt else []) + ["ckptfs", "ckptfs-no-ra"]
    if a.baseline:
        targets.append("baseline")
    if a.targets:
        targets = [t for t in targets if t in a.targets.split(",")]
        if "disk" not in targets:
            targets.insert(0, "disk")
    expect = {s: loader(f"{data}/{s}/{shard}", a.seed, True)["sha"] for s in steps}

    res = {}          # (target, step, kind) -> [seconds]
    ra_stats = {}
    verified = set()

    def one(target, s, kind):
        m = None
        if target == "disk":
            path = f"{disk}/{s}/{shard}"
        elif target == "passthrough_ll":
            m = Mount([pt, "-f", "-o", f"source={disk},cache=always", ptmnt], ptmnt, log)
            path = f"{ptmnt}/{s}/{shard}"
        else:
            extra = ["--readahead-mib=0"] if target == "ckptfs-no-ra" else []
            argv = ([os.path.abspath(a.baseline)] + base_argv[1:] if target == "baseline"
                    else base_argv)
            m = Mount(argv + extra + ["--gc-interval=0", store, mnt], mnt, log)
            path = f"{mnt}/sampler/{s}/{shard}"
        try:
            os.stat(path)             # lookups and listing outside the timing
            drop_caches()
            if kind == "seq":
                t = seq_read(path)
            else:
                t = loader(path, a.seed)["seconds"]
            if m and target != "passthrough_ll":
                ra_stats.setdefault((target, s, kind), m.stats())
            if m and (target, s) not in verified:
                drop_caches()
                got = loader(path, a.seed + 1, True)["sha"]
                if got != expect[s]:
                    raise RuntimeError(f"{target} {s}: wrong bytes")
                verified.add((target, s))
        finally:
            if m:
                m.close()
        res.setdefault((target, s, kind), []).append(t)

    for r in range(a.repeat):
        for s in steps:
            for kind in ("seq", "mmap"):
                for target in targets:
                    one(target, s, kind)
                    print(f"# run {r + 1}: {target} {s} {kind} "
                          f"{res[(target, s, kind)][-1]:.3f} s", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in res.items()}
    lines = [f"cold reads, {size / 2**20:.0f} MiB bf16 safetensors, one shard; "
             f"median of {a.repeat}; seconds (MB/s) [ratio to plain disk]",
             "",
             "| checkpoint | access | " + " | ".join(targets) + " |",
             "|---|---|" + "---:|" * len(targets)]
    for s, label in zip(steps, ["base", "1-step delta"]):
        for kind in ("seq", "mmap"):
            cells = []
            for t in targets:
                v = med[(t, s, kind)]
                cells.append(f"{v:.2f} ({size / v / 1e6:.0f}) [{med[('disk', s, kind)] / v:.2f}x]")
            lines.append(f"| {label} | {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    for s, label in zip(steps, ["base", "1-step delta"]):
        for t in [t for t in ("ckptfs", "ckptfs-no-ra", "baseline") if t in targets]:
            lines.append(f"- {label}, {t}: mmap loader / sequential through the mount = "
                         f"{med[(t, s, 'seq')] / med[(t, s, 'mmap')]:.2f}x")
    for (t, s, kind), st in sorted(ra_stats.items()):
        if kind == "mmap" and st:
            ra = {k: v for k, v in st.items()
                  if k.startswith("readahead") or k in ("chunk_loads", "decoded_bytes")}
            lines.append(f"- stats {t} {s} mmap (first run): {json.dumps(ra)}")
    text = "\n".join(lines)
    print(text)
    with open(f"{d}/read_results.md", "w") as f:
        f.write(text + "\n")
    if not a.keep:
        for p in (store, disk):
            shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    main()
