"""Issue 9: kill -9 the daemon at random points of base and delta writes,
remount, and check what survived: every acknowledged file (close() returned
0) byte-exact, every file whose writes never all reached the daemon absent,
a file whose close() failed either absent or exact, never torn; `ckptfs
fsck` clean at the end. Plus item 9: a daemon restarted with the same PID
(PID 1, as in a container) next to a killed one's temp files.

CKPTFS_CRASHLOOP_TRIALS (default 8) and CKPTFS_CRASHLOOP_SEED choose the
trial count and the random points; bench/crashloop.sh runs many.
"""
import errno
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import ckptfs_testlib
from ckptfs_testlib import (SUSPICIOUS, MountTest, model_tensors, perturb_safetensors,
                            requires_fuse, sha256_file, write_safetensors)

DATA = None
VARIANTS = 4          # model.safetensors versions trials cycle through
PIECE = 256 << 10     # bytes per write(2)


def setUpModule():
    global DATA
    DATA = tempfile.mkdtemp(prefix="ckptfs-crash-", dir=os.environ.get("CKPTFS_TEST_TMP"))
    prev = os.path.join(DATA, "model-0.safetensors")
    write_safetensors(prev, model_tensors(12, hidden=256), seed=5)
    for v in range(1, VARIANTS):
        cur = os.path.join(DATA, "model-%d.safetensors" % v)
        perturb_safetensors(prev, cur, 0.05, seed=50 + v)
        prev = cur


def tearDownModule():
    shutil.rmtree(DATA, ignore_errors=True)


class Killer:
    """Kills the daemon once, a random few milliseconds after fire(), from
    another thread, so the kill lands while the writer's next operations
    are in flight."""

    def __init__(self, proc, rng):
        self.proc, self.jitter = proc, rng.uniform(0, 0.02)
        self.thread = None

    def fire(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._kill)
            self.thread.start()

    @property
    def fired(self):
        return self.thread is not None

    def _kill(self):
        time.sleep(self.jitter)
        self.proc.kill()

    def join(self):
        self.fire()
        self.thread.join()


def kill_and_reap(test, m):
    """After the Killer: reap the daemon, drop its dead mount, scan its log."""
    m.proc.wait()
    m.proc = None
    m.logf.close()
    subprocess.run(["fusermount3", "-u", "-z", m.mnt], check=False,
                   stderr=subprocess.DEVNULL)
    bad = SUSPICIOUS.search(m.log())
    test.assertIsNone(bad, "suspicious daemon output:\n" + m.log())


@requires_fuse
class CrashLoop(MountTest):
    def plan(self, t, rng):
        """Files of trial t: (name, source path or bytes)."""
        files = [("config.json", json.dumps({"trial": t, "hidden": 256}).encode()),
                 ("model.safetensors", os.path.join(DATA, "model-%d.safetensors" % (t % VARIANTS)))]
        n = rng.randrange(1, 5 << 20)
        files.append(("extra.bin", rng.randbytes(n)))
        rng.shuffle(files)
        return files

    def write_trial(self, m, t, rng, record):
        """Write checkpoint step-t, firing the kill when the byte count
        reaches a random point. Fills record[path] with the expected sha256
        and the outcome: 'acked', 'maybe' (close failed) or 'absent'."""
        files = self.plan(t, rng)
        total = sum(len(s) if isinstance(s, bytes) else os.path.getsize(s) for _, s in files)
        kill_at = rng.uniform(0, total * 1.1)     # past total: after everything was acked
        killer = Killer(m.proc, rng)
        done = 0
        ck = "step-%04d" % t
        record[ck] = {"dir": "maybe", "kind_base": "maybe"}
        try:
            if kill_at < total * 0.02:
                killer.fire()
            os.mkdir(m.path("sampler", ck))
            record[ck]["dir"] = "acked"
            if t % 2 == 0:   # every other checkpoint a forced base, the rest deltas
                os.setxattr(m.path("sampler", ck), "user.ckptfs.kind", b"base")
                record[ck]["kind_base"] = "acked"
            for name, src in files:
                if isinstance(src, bytes):
                    data = src
                else:
                    with open(src, "rb") as f:
                        data = f.read()
                rel = os.path.join(ck, name)
                record[rel] = {"sha": ckptfs_testlib.hashlib.sha256(data).hexdigest(),
                               "state": "absent"}
                fd = os.open(m.path("sampler", ck, name), os.O_CREAT | os.O_WRONLY, 0o644)
                try:
                    for off in range(0, len(data), PIECE):
                        os.write(fd, data[off:off + PIECE])
                        done += min(PIECE, len(data) - off)
                        if done >= kill_at:
                            killer.fire()
                except OSError:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    raise
                record[rel]["state"] = "maybe"
                os.close(fd)
                record[rel]["state"] = "acked"
        except OSError as e:
            if not killer.fired:
                raise AssertionError("trial %d: %s before the kill" % (t, e))
        killer.join()
        kill_and_reap(self, m)

    def verify(self, m, record, names):
        for ck in names:
            st = record[ck]
            path = m.path("sampler", ck)
            if st["dir"] == "acked":
                self.assertTrue(os.path.isdir(path), "acknowledged mkdir %s lost" % ck)
            if st["kind_base"] == "acked":
                self.assertEqual(os.getxattr(path, "user.ckptfs.kind"), b"base", ck)
            listed = set(os.listdir(path)) if os.path.isdir(path) else set()
            for rel, f in record.items():
                if not rel.startswith(ck + "/"):
                    continue
                name = rel[len(ck) + 1:]
                p = os.path.join(path, name)
                if f["state"] == "acked":
                    self.assertIn(name, listed, "acknowledged %s lost" % rel)
                if f["state"] == "absent":
                    self.assertNotIn(name, listed, "unacknowledged %s visible" % rel)
                f["present"] = name in listed
                if name in listed:
                    self.assertEqual(sha256_file(p), f["sha"], "wrong bytes in %s" % rel)
                listed.discard(name)
            self.assertEqual(listed, set(), "files nobody wrote in %s" % ck)

    def test_kill9_during_writes(self):
        trials = int(os.environ.get("CKPTFS_CRASHLOOP_TRIALS", "8"))
        seed = int(os.environ.get("CKPTFS_CRASHLOOP_SEED", str(random.randrange(1 << 31))))
        rng = random.Random(seed)
        record, acked = {}, 0
        t0 = time.time()
        for t in range(trials):
            m = self.mount("m%d" % t)
            if t:
                self.verify(m, record, ["step-%04d" % (t - 1)])
            self.write_trial(m, t, rng, record)
        m = self.mount("final")
        self.verify(m, record, ["step-%04d" % t for t in range(trials)])
        m.stop()
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        files = [f for f in record.values() if "state" in f]
        states = [f["state"] for f in files]
        acked = states.count("acked")
        maybe_in = sum(1 for f in files if f["state"] == "maybe" and f["present"])
        tmp_note = ""
        if not self.s3:
            tmp_note = "; %d temp files left in .tmp" % len(
                os.listdir(os.path.join(self.store, ".tmp")))
        print("crashloop: seed %d, %d trials in %.1f s: %d files acknowledged and "
              "byte-exact, %d close() failed (%d of them committed, byte-exact), %d "
              "unacknowledged and absent; fsck clean%s" %
              (seed, trials, time.time() - t0, acked, states.count("maybe"), maybe_in,
               states.count("absent"), tmp_note))


@requires_fuse
class TempFiles(MountTest):
    """Item 9: .tmp leftovers of a killed daemon never collide with a
    restarted one of the same PID, and stale ones are swept."""

    def setUp(self):
        if ckptfs_testlib.BACKEND == "s3":
            self.skipTest("temp files are the local store's")
        if not shutil.which("unshare") or subprocess.run(
                ["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
            self.skipTest("cannot make a PID namespace (unshare)")
        super().setUp()
        # The daemon as PID 1 of a fresh PID namespace, as a container
        # entrypoint: every restart has the same PID.
        wrapper = os.path.join(self.tmp, "ckptfs-pid1")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec unshare --pid --fork --kill-child=SIGKILL %s \"$@\"\n"
                    % os.path.abspath(ckptfs_testlib.CKPTFS))
        os.chmod(wrapper, 0o755)
        self.real_bin, ckptfs_testlib.CKPTFS = ckptfs_testlib.CKPTFS, wrapper

    def tearDown(self):
        ckptfs_testlib.CKPTFS = getattr(self, "real_bin", ckptfs_testlib.CKPTFS)
        super().tearDown()

    def leftover(self, name, age_s):
        p = os.path.join(self.store, ".tmp", name)
        with open(p, "wb") as f:
            f.write(b"x" * 1000)
        os.utime(p, (time.time() - age_s, time.time() - age_s))
        return name

    def test_restart_as_pid1_after_kill9(self):
        m = self.mount("a")
        os.mkdir(m.path("sampler", "one"))
        fd = os.open(m.path("sampler", "one", "big.bin"), os.O_CREAT | os.O_WRONLY, 0o644)
        for _ in range(12):
            os.write(fd, os.urandom(1 << 20))
        m.kill9()
        try:
            os.close(fd)
        except OSError:
            pass
        # What a PID-1 daemon naming temp files <pid>-<seq> leaves when
        # killed mid-put: the names the next PID-1 daemon picks first.
        young = [self.leftover("1-%d" % s, 0) for s in range(1, 65)]
        stale = [self.leftover("1-%d" % s, 7200) for s in range(100, 104)]
        stale.append(self.leftover("00112233445566778899aabbccddeeff", 7200))

        m = self.mount("b")
        os.mkdir(m.path("sampler", "two"))
        data = os.urandom(3 << 20)
        with open(m.path("sampler", "two", "w.bin"), "wb") as f:
            f.write(data)
        os.mkdir(m.path("state", "s1"))
        tmp = set(os.listdir(os.path.join(self.store, ".tmp")))
        self.assertEqual(tmp & set(stale), set(), "stale temp files survived the mount")
        self.assertEqual(tmp & set(young), set(young), "a young temp file was swept")
        m.stop()
        self.assertIn("removed 5 stale temporary files", m.log())

        # Once old enough, gc sweeps the rest.
        for n in young:
            p = os.path.join(self.store, ".tmp", n)
            os.utime(p, (time.time() - 7200, time.time() - 7200))
        r = self.run_ckptfs("gc", "--grace", "3600", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(os.listdir(os.path.join(self.store, ".tmp")), [])

        m = self.mount("c")
        self.assertEqual(sha256_file(m.path("sampler", "two", "w.bin")),
                         ckptfs_testlib.hashlib.sha256(data).hexdigest())
        self.assertTrue(os.path.isdir(m.path("state", "s1")))
        m.stop()
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
