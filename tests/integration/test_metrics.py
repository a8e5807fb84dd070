"""Issue 12: observability. A real Prometheus (Debian's `prometheus`)
scrapes `--metrics` during a base + delta + hotload + promotion + gc run, and
its HTTP API must report what was done; `promtool check metrics` accepts the
endpoint; `cat MNT/.stats` gives the same counters; doc/METRICS.md lists
exactly the endpoint's families; 200 parallel scrapes during a `cp` fail
none and leave the copy exact; per-checkpoint figures; `ckptfs stat`;
progress lines on a terminal only; syslog in the background."""
import concurrent.futures
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (CKPTFS, MountTest, StandIn, perturb_safetensors, random_file,
                            requires_fuse, sha256_file, write_safetensors)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
with open(CKPTFS, "rb") as _f:
    _bin = _f.read()
    SANITIZED = b"__asan_init" in _bin or b"__tsan_init" in _bin
    del _bin


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """A strict reader of the text format: every line is a comment (HELP or
    TYPE of the family the samples that follow belong to) or a sample;
    returns {(name, frozenset(labels)): value} and {family: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ")
            assert typ in ("counter", "gauge", "histogram"), line
            assert fam not in types, "family twice: " + fam
            types[fam] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), frozenset(LABEL.findall(m.group(3) or ""))
        assert any(name == f or name.startswith(f + "_") for f in types), line
        key = (name, labels)
        assert key not in samples, "series twice: %r" % line
        samples[key] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@requires_fuse
class Metrics(MountTest):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        super().tearDown()

    def scrape(self, path="/metrics"):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path),
                                    timeout=10) as r:
            self.assertIn("text/plain; version=0.0.4", r.headers["Content-Type"])
            return r.read().decode()

    def start_prometheus(self):
        pport = free_port()
        cfg = os.path.join(self.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: ckptfs\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.port)
        log = open(os.path.join(self.tmp, "prometheus.log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg,
                              "--storage.tsdb.path=" + os.path.join(self.tmp, "tsdb"),
                              "--web.listen-address=127.0.0.1:%d" % pport,
                              "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.prom = "http://127.0.0.1:%d" % pport
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.prom + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            self.assertIsNone(p.poll(), "prometheus exited")
            time.sleep(0.2)
        self.fail("prometheus did not become ready")

    def prom_query(self, q):
        url = self.prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=10) as r:
            d = json.load(r)
        self.assertEqual(d["status"], "success")
        return {frozenset((k, v) for k, v in x["metric"].items()
                          if k not in ("job", "instance", "__name__")): float(x["value"][1])
                for x in d["data"]["result"]}

    @unittest.skipUnless(PROMETHEUS and PROMTOOL, "Debian's prometheus package is not installed")
    def test_prometheus_scrapes_a_checkpoint_run(self):
        m = self.mount(args=["--metrics=127.0.0.1:%d" % self.port, "--gc-interval=1",
                             "--gc-grace=2", "--chunk-kib=256"])
        self.start_prometheus()
        # A base and a delta of a small bf16 model, plus config.json.
        for s in ("s0", "s1"):
            os.makedirs(os.path.join(self.src, s))
        write_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                          [("w", "BF16", (512, 2048)), ("b", "F32", (4096,))], seed=4)
        perturb_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                            os.path.join(self.src, "s1", "model.safetensors"), 0.02, seed=5)
        sizes = {}
        for s in ("s0", "s1"):
            with open(os.path.join(self.src, s, "config.json"), "w") as f:
                json.dump({"step": s}, f)
            os.mkdir(m.path("sampler", s))
            for n in sorted(os.listdir(os.path.join(self.src, s))):
                shutil.copy(os.path.join(self.src, s, n), m.path("sampler", s, n))
                sizes[s] = sizes.get(s, 0) + os.path.getsize(os.path.join(self.src, s, n))
        self.assertEqual(os.getxattr(m.path("sampler", "s1"), "user.ckptfs.kind"), b"delta")
        # One hotload of the delta to a loopback SGLang stand-in.
        srv = StandIn(self.tmp, "sglang")
        self.addCleanup(srv.stop)
        with open(m.path("deployments", "sg"), "w") as f:
            json.dump({"protocol": "sglang", "url": srv.url, "timeout_s": 30,
                       "model_path": m.mnt + "/sampler/{checkpoint}"}, f)
        fd = os.open(m.path("sampler", "s1", "hotload"), os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"sg\n")
        os.close(fd)
        # A promotion, and a train-state checkpoint removed for gc to reclaim.
        os.symlink("../sampler/s0", m.path("models", "m0"))
        os.mkdir(m.path("state", "tmp"))
        before = set(self.chunk_keys())
        random_file(m.path("state", "tmp", "opt.bin"), 3 << 20, seed=9)
        tmp_keys = set(self.chunk_keys()) - before
        self.assertGreater(len(tmp_keys), 0)
        shutil.rmtree(m.path("state", "tmp"))
        # Its chunks are referenced by nothing now: the mount's gc (every
        # second, grace 2 s) deletes exactly them.
        deadline = time.time() + 30
        while time.time() < deadline:
            samples, types = parse_exposition(self.scrape())
            if value(samples, "ckptfs_gc_deleted_objects_total") >= len(tmp_keys):
                break
            time.sleep(0.3)
        self.assertFalse(tmp_keys & set(self.chunk_keys()), "gc did not reclaim them")
        self.assertTrue(before <= set(self.chunk_keys()), "gc deleted live chunks")
        reclaimed = len(tmp_keys)

        # What was done, as the endpoint tells it.
        stored = {s: int(os.getxattr(m.path("sampler", s), "user.ckptfs.stored_bytes"))
                  for s in ("s0", "s1")}
        expect = {
            ("ckptfs_commits_total", (("kind", "base"), ("result", "ok"))): 2,
            ("ckptfs_commits_total", (("kind", "delta"), ("result", "ok"))): 2,
            ("ckptfs_commits_total", (("kind", "state"), ("result", "ok"))): 1,
            ("ckptfs_logical_bytes_written_total", (("kind", "base"),)): sizes["s0"],
            ("ckptfs_logical_bytes_written_total", (("kind", "delta"),)): sizes["s1"],
            ("ckptfs_logical_bytes_written_total", (("kind", "state"),)): 3 << 20,
            ("ckptfs_stored_bytes_written_total", (("kind", "base"),)): stored["s0"],
            ("ckptfs_stored_bytes_written_total", (("kind", "delta"),)): stored["s1"],
            ("ckptfs_commit_seconds_count", (("kind", "base"),)): 2,
            ("ckptfs_hotloads_total", (("deployment", "sg"), ("result", "ok"))): 1,
            ("ckptfs_hotload_seconds_count", (("deployment", "sg"),)): 1,
            ("ckptfs_promotions_total", (("result", "ok"),)): 1,
            ("ckptfs_gc_deleted_objects_total", ()): reclaimed,
            ("ckptfs_checksum_failures_total", ()): None,
        }
        samples, types = parse_exposition(self.scrape())
        for (name, labels), want in expect.items():
            if want is None:
                self.assertFalse([k for k in samples if k[0] == name], name)
                continue
            self.assertEqual(value(samples, name, **dict(labels)), want, (name, labels))
        self.assertGreater(value(samples, "ckptfs_gc_runs_total", result="ok"), 0)
        self.assertGreater(value(samples, "ckptfs_fuse_operations_total", op="write"), 0)
        self.assertGreater(value(samples, "ckptfs_store_requests_total",
                                 backend="s3" if self.s3 else "local", op="put",
                                 status="ok"), 0)
        if self.s3:	# the chunk cache in front of S3 (--cache-dir)
            self.assertGreater(value(samples, "ckptfs_cache_bytes", cache="disk"), 0)
        self.assertGreater(value(samples, "process_resident_memory_bytes"), 1 << 20)
        # The delta stored far less than the base.
        self.assertLess(stored["s1"] * 5, stored["s0"])

        # promtool accepts the endpoint's output as it is.
        text = self.scrape()
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

        # .stats: the same registry through the mount (resolved, not listed).
        self.assertNotIn(".stats", os.listdir(m.mnt))
        with open(m.path(".stats")) as f:
            stats, _ = parse_exposition(f.read())
        for (name, labels) in expect:
            self.assertEqual(value(stats, name, **dict(labels)),
                             value(samples, name, **dict(labels)), name)
        for fam in ("ckptfs_commits_total", "ckptfs_hotloads_total",
                    "ckptfs_gc_deleted_bytes_total", "ckptfs_promotions_total"):
            self.assertEqual({k: v for k, v in stats.items() if k[0] == fam},
                             {k: v for k, v in samples.items() if k[0] == fam}, fam)

        # doc/METRICS.md lists exactly the families the endpoint serves.
        with open(os.path.join(ROOT, "doc", "METRICS.md")) as f:
            documented = set(re.findall(r"^\| `([a-z_:]+)` \|", f.read(), re.M))
        self.assertEqual(documented, set(types))

        # Prometheus scraped it: its API agrees once a scrape after the
        # run is in (counters only grow, so wait for equality).
        deadline = time.time() + 30
        while True:
            got = {}
            for (name, labels), want in expect.items():
                if want is None:
                    continue
                got[(name, labels)] = self.prom_query(name).get(frozenset(labels), 0.0)
            want = {k: float(v) for k, v in expect.items() if v is not None}
            if got == want or time.time() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(got, want)
        up = self.prom_query('up{job="ckptfs"}')
        self.assertEqual(list(up.values()), [1.0])
        # The example dashboard's queries name only documented series and
        # are valid PromQL (evaluated by this Prometheus).
        with open(os.path.join(ROOT, "examples", "grafana", "ckptfs.json")) as f:
            dash = json.load(f)
        for panel in dash["panels"]:
            for t in panel["targets"]:
                for n in re.findall(r"\b((?:ckptfs|process)_[a-z_]+)", t["expr"]):
                    self.assertIn(re.sub(r"_bucket$", "", n), types, t["expr"])
                q = (t["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
                     .replace("$job", ".*"))
                self.prom_query(q)
        m.stop()
        log = m.log()
        self.assertRegex(log, r"committed s1/model\.safetensors \(delta\): \d+ bytes, "
                              r"\d+ stored \(ratio 0\.\d+\)")
        self.assertIn("hotload s1 -> sg: start", log)
        self.assertIn("metrics at http://127.0.0.1:%d/metrics" % self.port, log)

    def test_per_checkpoint_figures_and_stat(self):
        # (-o log_level=warn: commits log at info, so none appears.)
        m = self.mount(args=["--chunk-kib=64", "-o", "log_level=warn"])
        os.makedirs(os.path.join(self.src, "a"))
        os.makedirs(os.path.join(self.src, "b"))
        write_safetensors(os.path.join(self.src, "a", "model.safetensors"),
                          [("w", "BF16", (256, 1024))], seed=1)
        # b differs from a in its last 64 KiB chunk only: 7 of 8+ chunks
        # of the delta are all-zero.
        with open(os.path.join(self.src, "a", "model.safetensors"), "rb") as f:
            data = bytearray(f.read())
        data[-100] ^= 0x01
        with open(os.path.join(self.src, "b", "model.safetensors"), "wb") as f:
            f.write(data)
        n_chunks = (len(data) + (64 << 10) - 1) // (64 << 10)
        for s in ("a", "b"):
            os.mkdir(m.path("sampler", s))
            shutil.copy(os.path.join(self.src, s, "model.safetensors"),
                        m.path("sampler", s, "model.safetensors"))
        x = {s: {k: os.getxattr(m.path("sampler", s), "user.ckptfs." + k).decode()
                 for k in ("logical_bytes", "stored_bytes", "stored_ratio", "commit_seconds")}
             for s in ("a", "b")}
        for s in ("a", "b"):
            ratio = int(x[s]["stored_bytes"]) / int(x[s]["logical_bytes"])
            self.assertAlmostEqual(float(x[s]["stored_ratio"]), ratio, places=3)
            self.assertGreater(float(x[s]["commit_seconds"]), 0)
        zf = float(os.getxattr(m.path("sampler", "b"), "user.ckptfs.zero_chunk_fraction"))
        self.assertAlmostEqual(zf, (n_chunks - 1) / n_chunks, places=3)
        with self.assertRaises(OSError):	# a base has no zero-chunk fraction
            os.getxattr(m.path("sampler", "a"), "user.ckptfs.zero_chunk_fraction")
        with open(m.path("checkpoints.jsonl")) as f:
            rows = {r["name"]: r for r in map(json.loads, f)}
        self.assertEqual(rows["b"]["zero_chunk_fraction"], round(zf, 4))
        self.assertIsNone(rows["a"]["zero_chunk_fraction"])
        self.assertAlmostEqual(rows["a"]["stored_ratio"], float(x["a"]["stored_ratio"]),
                               places=3)
        m.stop()
        self.assertNotIn("committed", m.log())
        r = self.run_ckptfs("stat", self.store, "--job", "default", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        ck = {c["name"]: c for c in st["checkpoints"]}
        self.assertEqual(set(ck), {"a", "b"})
        self.assertEqual(ck["b"]["kind"], "delta")
        self.assertEqual(ck["b"]["base"], "a")
        for s in ("a", "b"):
            self.assertEqual(ck[s]["logical_bytes"], int(x[s]["logical_bytes"]))
            self.assertEqual(ck[s]["stored_bytes"], int(x[s]["stored_bytes"]))
        self.assertEqual(st["totals"]["logical_bytes"],
                         sum(int(x[s]["logical_bytes"]) for s in ("a", "b")))
        r = self.run_ckptfs("stat", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^NAME\s+KIND\s+BASE\s+LOGICAL\s+STORED\s+RATIO")
        self.assertRegex(r.stdout, r"(?m)^b\s+delta\s+a\s")
        self.assertRegex(r.stdout, r"(?m)^total\s")

    def test_checksum_failure_counted(self):
        """A corrupt chunk reads as EIO and is counted in .stats (no
        --metrics needed: the registry is the same)."""
        if self.s3:
            self.skipTest("the disk cache keeps the verified copy (test_tamper covers S3)")
        m = self.mount(args=["--chunk-kib=64"])
        os.mkdir(m.path("sampler", "k"))
        random_file(m.path("sampler", "k", "f.bin"), 256 << 10, seed=8)
        m.stop()
        key = self.chunk_keys()[0]
        self.corrupt_object(key, 40)
        m = self.mount()
        with open(m.path(".stats")) as f:
            samples, _ = parse_exposition(f.read())
        self.assertEqual(value(samples, "ckptfs_checksum_failures_total", object="chunk"), 0)
        with open(m.path("sampler", "k", "f.bin"), "rb") as f:
            with self.assertRaises(OSError) as cm:
                f.read()
        self.assertEqual(cm.exception.errno, errno.EIO)
        with open(m.path(".stats")) as f:
            samples, _ = parse_exposition(f.read())
        self.assertGreaterEqual(
            value(samples, "ckptfs_checksum_failures_total", object="chunk"), 1)
        self.assertGreaterEqual(
            value(samples, "ckptfs_fuse_errors_total", op="read", errno="EIO"), 1)
        with self.assertRaises(OSError) as cm:
            open(m.path(".stats"), "w")
        self.assertEqual(cm.exception.errno, errno.EACCES)
        m.cleanup()

    def test_parallel_scrapes_during_cp(self):
        m = self.mount(args=["--metrics=127.0.0.1:%d" % self.port])
        src = os.path.join(self.src, "big.bin")
        random_file(src, 96 << 20, seed=3)
        os.mkdir(m.path("sampler", "c"))
        self.scrape()

        def rss():
            with open("/proc/%d/status" % m.proc.pid) as f:
                return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) << 10

        base_rss = rss()
        cp = subprocess.Popen(["cp", src, m.path("sampler", "c", "big.bin")])
        peak = [base_rss]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.02)
        w = threading.Thread(target=watch)
        w.start()

        def one(_):
            text = self.scrape()
            parse_exposition(text)
            return len(text)
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
                sizes = list(ex.map(one, range(200)))
        finally:
            self.assertEqual(cp.wait(timeout=120), 0)
            stop.set()
            w.join()
        self.assertEqual(len(sizes), 200)
        self.assertTrue(all(s > 1000 for s in sizes))
        self.assertEqual(sha256_file(m.path("sampler", "c", "big.bin")), sha256_file(src))
        # Scrapes render into per-request buffers of a few KiB, and the
        # copy keeps a few chunks in flight (~90 MiB alone): under 160 MiB more
        # (ASan keeps up to 256 MiB of freed memory in quarantine; TSan's
        # shadow memory grows with what the copy touches).
        print("metrics: RSS %.1f MiB before, peak %.1f MiB during cp + 200 scrapes"
              % (base_rss / 2**20, peak[0] / 2**20), file=sys.stderr)
        limit = (160 << 20) + ((384 << 20) if SANITIZED else 0)
        self.assertLess(peak[0] - base_rss, limit, (base_rss, peak[0]))
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port) as r:
            samples, _ = parse_exposition(r.read().decode())
        self.assertEqual(value(samples, "ckptfs_commits_total", kind="base", result="ok"), 1)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://127.0.0.1:%d/" % self.port)
        self.assertEqual(cm.exception.code, 404)
        cm.exception.close()
        m.stop()

    def test_progress_on_a_terminal_only(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "p"))
        random_file(m.path("sampler", "p", "f.bin"), 2 << 20, seed=5)
        m.stop()
        for cmd in (["gc", "--grace", "0"], ["fsck"]):
            line = " ".join([CKPTFS] + cmd + [self.store])
            tty = subprocess.run(["script", "-qec", line, "/dev/null"], capture_output=True,
                                 env=dict(os.environ, **self.store_env))
            out = tty.stdout.decode(errors="replace")
            self.assertEqual(tty.returncode, 0, out)
            self.assertRegex(out, r"\r%s: \d+ \w+.*, done" % cmd[0], out)
            piped = subprocess.run([CKPTFS] + cmd + [self.store], capture_output=True,
                                   env=dict(os.environ, **self.store_env))
            self.assertEqual(piped.returncode, 0, piped.stderr)
            self.assertNotIn(b"\r", piped.stderr + piped.stdout)
            self.assertNotIn(b"done", piped.stderr)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                         "needs root and unshare for a private /dev/log")
    def test_syslog_in_the_background(self):
        """Without -f the daemon logs to syslog: /dev/log, bound in a mount
        namespace of its own to a datagram socket this test listens on."""
        sock_path = os.path.join(self.tmp, "log.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        lst.bind(sock_path)
        lst.settimeout(0.5)
        os.chmod(sock_path, 0o666)
        mnt = os.path.join(self.tmp, "bgmnt")
        os.makedirs(mnt)
        src = os.path.join(self.src, "x.bin")
        random_file(src, 1 << 20, seed=6)
        script = """set -e
mount -t tmpfs tmpfs /dev
mknod -m 666 /dev/fuse c 10 229
mknod -m 666 /dev/null c 1 3
touch /dev/log
mount --bind "$SOCK" /dev/log
"$CKPTFS" mount --log-level=debug "$STORE" "$MNT"
mkdir "$MNT/sampler/bg"
cp "$SRC" "$MNT/sampler/bg/x.bin"
fusermount3 -u "$MNT"
"""
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                           env=dict(os.environ, SOCK=sock_path, CKPTFS=CKPTFS,
                                    STORE=self.store, MNT=mnt, SRC=src, **self.store_env),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = []
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                lines.append(lst.recv(65536).decode(errors="replace"))
            except socket.timeout:
                if any("unmounting" in x for x in lines):
                    break
        lst.close()
        text = "\n".join(lines)
        self.assertRegex(text, r"<\d+>.*ckptfs\[\d+\]: mounted ")
        self.assertRegex(text, r"ckptfs\[\d+\]: committed bg/x\.bin \(base\): 1048576 bytes")
        self.assertEqual(r.stderr, "", "a background daemon writes nothing to stderr")


if __name__ == "__main__":
    unittest.main(verbosity=2)
