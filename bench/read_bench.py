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
                      [--data DIR --steps 0,1,5,25] [--ceiling BIN] [--warm]
                      [--json FILE]

The store is written once by --ckptfs (kept with --keep and reused: delete
DIR/store after changing the format). "baseline" reads it with another
binary, e.g. a build of main, for before/after figures.

--data DIR reads checkpoints already made by gen_ckpt.py (DIR/step-XXXX/,
any number of files; --steps picks them, the first is the base) instead of
generating a 512 MiB base and 1-step delta: "seq" then reads every file of
the checkpoint in order, "mmap" loads every safetensors file of it.
--ceiling BIN adds the target "ceiling": bench/ceiling.c's /synthetic file,
of the checkpoint's size, read the same way ("seq" only: it has no
safetensors layout). --warm also times a warm re-read ("warm": sequential,
right after the cold one, same daemon, page cache kept). --json FILE writes
every run's seconds, the medians and the daemons' peak RSS (bench/run.sh
merges it).

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
seed, verify, paths = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
t0 = time.monotonic()
out = {}
for i, path in enumerate(paths):        # files in order, tensors shuffled in each
    fd = os.open(path, os.O_RDONLY)
    n = struct.unpack("<Q", os.pread(fd, 8, 0))[0]
    hdr = json.loads(os.pread(fd, n, 8))
    hdr.pop("__metadata__", None)
    mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    names = sorted(hdr)
    random.Random(seed).shuffle(names)
    for k in names:
        a, b = hdr[k]["data_offsets"]
        data = mm[8 + n + a:8 + n + b]       # page faults, in tensor order
        if verify:
            out[f"{i}:{k}"] = hashlib.sha256(data).hexdigest()
    mm.close()
    os.close(fd)
t = time.monotonic() - t0
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

    def hwm_kib(self):
        """VmHWM of the daemon (KiB), 0 if it is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

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


def loader(paths, seed, verify=False):
    r = subprocess.run(["/usr/bin/python3", "-c", LOADER, str(seed),
                        "1" if verify else "0"] + list(paths), check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout)


def seq_read(paths):
    t0 = time.monotonic()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(128 << 10):
                pass
    return time.monotonic() - t0


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def build_passthrough(d):
    if os.environ.get("PASSTHROUGH_LL"):
        return os.environ["PASSTHROUGH_LL"]
    src = "/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"
    out = os.path.join(d, "passthrough_ll")
    if os.path.exists(out):
        return out
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                           capture_output=True, text=True).stdout.split()
    r = subprocess.run(["cc", "-O2", "-o", out, src] + flags, capture_output=True)
    return out if r.returncode == 0 else None


def step_label(s):
    k = int(s.split("-")[1])
    return "base" if k == 0 else f"{k}-step delta"


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
                    help="comma-separated subset of disk,passthrough_ll,ceiling,ckptfs,"
                    "ckptfs-no-ra,baseline")
    ap.add_argument("--data", default="",
                    help="checkpoints already generated (DIR/step-XXXX/), kept")
    ap.add_argument("--steps", default="0,1",
                    help="checkpoints to read, the base first (default 0,1)")
    ap.add_argument("--ceiling", default="",
                    help="bench/ceiling binary: adds the 'ceiling' target (seq reads)")
    ap.add_argument("--warm", action="store_true",
                    help="also time a warm sequential re-read after each cold one")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("read_bench.py needs root (drop_caches, cold reads)")
    ckptfs = os.path.abspath(a.ckptfs)
    d = os.path.abspath(a.dir)
    data = os.path.abspath(a.data) if a.data else f"{d}/data"
    disk, store = f"{d}/disk", f"{d}/store"
    mnt, ptmnt, cmnt, log = f"{d}/mnt", f"{d}/ptmnt", f"{d}/ceilmnt", f"{d}/daemon.log"
    for p in (d, mnt, ptmnt, cmnt):
        os.makedirs(p, exist_ok=True)
    steps = [f"step-{int(k):04d}" for k in a.steps.split(",")]
    if not a.data and not all(os.path.isdir(f"{data}/{s}") for s in steps):
        sh("/usr/bin/python3", f"{HERE}/gen_ckpt.py", "--out", data, "--size-mb",
           str(a.size_mb), "--steps", a.steps, "--files", "1", "--quiet")
    files, tensors, size = {}, {}, {}
    for s in steps:
        if not os.path.isdir(f"{data}/{s}"):
            sys.exit(f"no checkpoint {data}/{s}")
        files[s] = sorted(os.path.relpath(os.path.join(r, f), f"{data}/{s}")
                          for r, _, fs in os.walk(f"{data}/{s}") for f in fs)
        tensors[s] = [f for f in files[s] if f.endswith(".safetensors")]
        size[s] = sum(os.path.getsize(f"{data}/{s}/{f}") for f in files[s])

    def copy_ckpt(s, dst):
        for f in files[s]:
            os.makedirs(os.path.dirname(f"{dst}/{f}"), exist_ok=True)
            shutil.copy(f"{data}/{s}/{f}", f"{dst}/{f}")

    # Plain disk copies on the same filesystem as the store.
    for s in steps:
        if not all(os.path.exists(f"{disk}/{s}/{f}") for f in files[s]):
            copy_ckpt(s, f"{disk}/{s}")
    opts = a.opts.split()
    base_argv = [ckptfs, "mount", "-f"] + opts
    kinds = {}
    if not os.path.exists(f"{store}/.done"):
        shutil.rmtree(store, ignore_errors=True)
        m = Mount(base_argv + [store, mnt], mnt, log)
        try:
            for s in steps:       # the first is the base, the others its deltas
                os.mkdir(f"{mnt}/sampler/{s}")
                copy_ckpt(s, f"{mnt}/sampler/{s}")
                os.sync()
            for s in steps:
                try:
                    kinds[s] = os.getxattr(f"{mnt}/sampler/{s}", "user.ckptfs.kind").decode()
                except OSError:
                    kinds[s] = "-"       # not ckptfs (bench/fake-ckptfs.sh)
            if kinds[steps[0]] not in ("base", "-"):
                raise RuntimeError(f"{steps[0]} was stored as {kinds[steps[0]]}, not a base")
            for s in steps[1:]:
                if kinds[s] not in ("delta", "-"):
                    print(f"# note: {s} was stored as {kinds[s]}", file=sys.stderr)
        finally:
            m.close()
        open(f"{store}/.done", "w").close()

    pt = None if a.no_passthrough else build_passthrough(d)
    targets = (["disk"] + (["passthrough_ll"] if pt else []) +
               (["ceiling"] if a.ceiling else []) + ["ckptfs", "ckptfs-no-ra"])
    if a.baseline:
        targets.append("baseline")
    if a.targets:
        targets = [t for t in targets if t in a.targets.split(",")]
        if "disk" not in targets:
            targets.insert(0, "disk")
    accesses = ["seq", "mmap"]

    def applies(target, s, kind):
        return kind == "seq" or (target != "ceiling" and tensors[s])

    def expected(root, s):
        return ({f: file_digest(f"{root}/{s}/{f}") for f in files[s]
                 if f not in tensors[s]},
                loader([f"{root}/{s}/{f}" for f in tensors[s]], a.seed, True)["sha"]
                if tensors[s] else {})
    expect = {s: expected(data, s) for s in steps}

    res = {}          # (target, step, kind) -> [seconds]
    ra_stats = {}
    hwm = {}          # target -> peak VmHWM (KiB) over its daemons
    verified = set()

    def one(target, s, kind):
        m = None
        root = None
        if target == "disk":
            root = disk
        elif target == "passthrough_ll":
            m = Mount([pt, "-f", "-o", f"source={disk},cache=always", ptmnt], ptmnt, log)
            root = ptmnt
        elif target == "ceiling":
            m = Mount([os.path.abspath(a.ceiling), "-o", f"size={size[s]}", cmnt], cmnt, log)
        else:
            extra = ["--readahead-mib=0"] if target == "ckptfs-no-ra" else []
            argv = ([os.path.abspath(a.baseline)] + base_argv[1:] if target == "baseline"
                    else base_argv)
            m = Mount(argv + extra + ["--gc-interval=0", store, mnt], mnt, log)
            root = f"{mnt}/sampler"
        if target == "ceiling":
            paths = [f"{cmnt}/synthetic"]
        else:
            paths = [f"{root}/{s}/{f}" for f in (files[s] if kind == "seq" else tensors[s])]
        warm = None
        try:
            for p in paths:
                os.stat(p)            # lookups and listing outside the timing
            drop_caches()
            if kind == "seq":
                t = seq_read(paths)
                if a.warm:
                    warm = seq_read(paths)
            else:
                t = loader(paths, a.seed)["seconds"]
            if m and target not in ("passthrough_ll", "ceiling"):
                ra_stats.setdefault((target, s, kind), m.stats())
            if m and target != "ceiling" and (target, s) not in verified:
                drop_caches()
                if expected(root, s) != expect[s]:
                    raise RuntimeError(f"{target} {s}: wrong bytes")
                verified.add((target, s))
            if m:
                hwm[target] = max(hwm.get(target, 0), m.hwm_kib())
        finally:
            if m:
                m.close()
        res.setdefault((target, s, kind), []).append(t)
        if warm is not None:
            res.setdefault((target, s, "warm"), []).append(warm)

    for r in range(a.repeat):
        for s in steps:
            for kind in accesses:
                for target in targets:
                    if not applies(target, s, kind):
                        continue
                    one(target, s, kind)
                    print(f"# run {r + 1}: {target} {s} {kind} "
                          f"{res[(target, s, kind)][-1]:.3f} s", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in res.items()}
    rows = accesses + (["warm"] if a.warm else [])
    sizes = sorted(set(size.values()))
    lines = [f"cold reads, {'/'.join(f'{b / 2**20:.0f}' for b in sizes)} MiB bf16 safetensors "
             f"checkpoints; median of {a.repeat}; seconds (MB/s) [ratio to plain disk]",
             "",
             "| checkpoint | access | " + " | ".join(targets) + " |",
             "|---|---|" + "---:|" * len(targets)]
    for s in steps:
        for kind in rows:
            if (targets[0], s, kind) not in med:
                continue
            cells = []
            for t in targets:
                v = med.get((t, s, kind))
                cells.append("-" if v is None else
                             f"{v:.2f} ({size[s] / v / 1e6:.0f}) [{med[('disk', s, kind)] / v:.2f}x]")
            lines.append(f"| {step_label(s)} | {kind} | " + " | ".join(cells) + " |")
    lines.append("")
    for s in steps:
        for t in [t for t in ("ckptfs", "ckptfs-no-ra", "baseline") if t in targets]:
            if (t, s, "mmap") in med:
                lines.append(f"- {step_label(s)}, {t}: mmap loader / sequential through the mount = "
                             f"{med[(t, s, 'seq')] / med[(t, s, 'mmap')]:.2f}x")
    for t, v in hwm.items():
        lines.append(f"- {t}: peak daemon RSS (VmHWM, max over its daemons) {v / 1024:.0f} MiB")
    for (t, s, kind), st in sorted(ra_stats.items()):
        if kind == "mmap" and st:
            ra = {k: v for k, v in st.items()
                  if k.startswith("readahead") or k in ("chunk_loads", "decoded_bytes")}
            lines.append(f"- stats {t} {s} mmap (first run): {json.dumps(ra)}")
    text = "\n".join(lines)
    print(text)
    with open(f"{d}/read_results.md", "w") as f:
        f.write(text + "\n")
    if a.json:
        out = {"repeat": a.repeat, "steps": steps, "targets": targets,
               "size_bytes": size, "kinds": kinds, "hwm_kib": hwm,
               "verified": sorted(f"{t} {s}" for t, s in verified),
               "runs": {}, "median": {}}
        for (t, s, kind), v in res.items():
            out["runs"].setdefault(t, {}).setdefault(s, {})[kind] = v
            out["median"].setdefault(t, {}).setdefault(s, {})[kind] = med[(t, s, kind)]
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if not a.keep:
        for p in (store, disk):
            shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    main()
