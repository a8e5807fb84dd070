"""Issue 4: promotion by symlink and mv (deltas materialized, models pinned),
refusals with their errnos, TTL expiry and gc (CLI and periodic), gc beside
a writer, train-state checkpoints, cross-job reads, snapshot aliases."""
import errno
import json
import os
import stat
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest, perturb_safetensors, random_file,
                            requires_fuse, sha256_file, sha256_tree, write_safetensors)


def xattr(path, name):
    try:
        return os.getxattr(path, "user.ckptfs." + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


@requires_fuse
class Promotion(MountTest):
    def setUp(self):
        super().setUp()
        self.m = self.mount()
        for s in ("s0", "s1"):
            os.makedirs(os.path.join(self.src, s))
        write_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                          [("w", "BF16", (2048, 2048)), ("n", "BF16", (2048,))], seed=1)
        perturb_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                            os.path.join(self.src, "s1", "model.safetensors"), 0.03, seed=2)
        for s in ("s0", "s1"):
            with open(os.path.join(self.src, s, "config.json"), "w") as f:
                f.write('{"s": "%s"}' % s)
            os.mkdir(self.m.path("sampler", s))
            subprocess.run(["cp", "-r", os.path.join(self.src, s) + "/.",
                            self.m.path("sampler", s)], check=True)
        self.want = {s: sha256_tree(os.path.join(self.src, s)) for s in ("s0", "s1")}

    def test_symlink_and_mv_pin_the_weights(self):
        m = self.m
        self.assertEqual(xattr(m.path("sampler", "s1"), "kind"), "delta")
        os.symlink("../sampler/s1", m.path("models", "tuned-1"))      # a delta
        os.symlink("../sampler/s0", m.path("models", "base-0"))       # a base
        self.assertTrue(os.path.isdir(m.path("models", "tuned-1")))
        self.assertEqual(sha256_tree(m.path("models", "tuned-1")), self.want["s1"])
        self.assertEqual(xattr(m.path("models", "tuned-1"), "promoted_from"), "default/sampler/s1")
        self.assertEqual(xattr(m.path("models", "tuned-1"), "source_snapshot"),
                         xattr(m.path("sampler", "s1"), "snapshot"))
        # The base model shares its chunks: promoting it stored nothing new.
        before = len(self.chunk_keys())
        os.symlink("../sampler/s0", m.path("models", "base-0b"))
        self.assertEqual(len(self.chunk_keys()), before)
        # Read-only.
        self.assertErrno(errno.EROFS, open, m.path("models", "tuned-1", "x"), "wb")
        self.assertErrno(errno.EROFS, open, m.path("models", "tuned-1", "config.json"), "r+b")
        self.assertErrno(errno.EROFS, os.mkdir, m.path("models", "tuned-1", "d"))
        # mv promotes and removes the source.
        os.rename(m.path("sampler", "s1"), m.path("models", "moved"))
        self.assertNotIn("s1", os.listdir(m.path("sampler")))
        self.assertEqual(sorted(os.listdir(m.path("models"))),
                         ["base-0", "base-0b", "moved", "tuned-1"])
        # Delete every source, expire nothing, collect garbage: models survive.
        shutil.rmtree(m.path("sampler", "s0"))
        m.stop()
        r = self.run_ckptfs("gc", "--grace", "0", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.mount("mnt2")
        self.assertEqual(sha256_tree(m.path("models", "tuned-1")), self.want["s1"])
        self.assertEqual(sha256_tree(m.path("models", "moved")), self.want["s1"])
        self.assertEqual(sha256_tree(m.path("models", "base-0")), self.want["s0"])
        # rm -r unpromotes; gc then reclaims what only that model held.
        shutil.rmtree(m.path("models", "tuned-1"))
        shutil.rmtree(m.path("models", "moved"))
        self.assertEqual(sorted(os.listdir(m.path("models"))), ["base-0", "base-0b"])
        m.stop()
        before = self.store_bytes("chunks/")
        self.assertEqual(self.run_ckptfs("gc", "--grace", "0", self.store).returncode, 0)
        self.assertLess(self.store_bytes("chunks/"), before)
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)

    def test_symlink_is_usable_at_once_and_becomes_the_directory(self):
        """`ln -s` makes a directory, but the kernel holds what symlink(2)
        made as a symlink: every stat, ls -l and rm in the next seconds must
        work (reporting a directory too early made the kernel answer EIO),
        and once the kernel has let go, models/ID is the directory."""
        m = self.m
        link = m.path("models", "fresh")
        os.symlink("../sampler/s1", link)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            st = os.lstat(link)             # EIO here before the fix
            self.assertTrue(stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode))
            self.assertTrue(stat.S_ISDIR(os.stat(link).st_mode))
            self.assertIn("config.json", os.listdir(link))
            r = subprocess.run(["ls", "-l", m.path("models")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            time.sleep(0.05)
        self.assertEqual(sha256_tree(link), self.want["s1"])
        # Left alone past the kernel's timeouts, it is the model's directory.
        time.sleep(2.5)
        self.assertTrue(stat.S_ISDIR(os.lstat(link).st_mode))
        # rm right after ln -s unpromotes, as the kernel sees a symlink.
        os.symlink("../sampler/s0", m.path("models", "gone"))
        os.lstat(m.path("models", "gone"))
        os.unlink(m.path("models", "gone"))
        self.assertNotIn("gone", os.listdir(m.path("models")))
        self.assertErrno(errno.ENOENT, os.lstat, m.path("models", "gone"))

    def test_refusals(self):
        m = self.m
        self.assertErrno(errno.EINVAL, os.symlink, "../sampler/s0", m.path("models", "Bad_Name"))
        self.assertErrno(errno.EINVAL, os.symlink, "../sampler/s0", m.path("models", "x" * 64))
        os.symlink("../sampler/s0", m.path("models", "m"))
        self.assertErrno(errno.EEXIST, os.symlink, "../sampler/s1", m.path("models", "m"))
        os.mkdir(m.path("state", "st"))
        self.assertErrno(errno.EINVAL, os.symlink, "../state/st", m.path("models", "from-state"))
        self.assertErrno(errno.ENOENT, os.symlink, "../sampler/nope", m.path("models", "n"))
        os.mkdir(m.path("sampler", "open"))
        with open(m.path("sampler", "open", "f"), "wb") as f:
            f.write(b"still writing")
            self.assertErrno(errno.EBUSY, os.symlink, "../sampler/open", m.path("models", "busy"))
        self.assertEqual(xattr(m.path("state", "st"), "promotable"), "false")
        m.stop()
        self.assertIn("EBUSY", m.log())
        self.assertIn("not promotable (EINVAL)", m.log())


@requires_fuse
class TtlAndGc(MountTest):
    def test_ttl_expiry_and_gc(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "keep"))
        random_file(os.path.join(self.src, "k"), 5 << 20, seed=1)
        shutil.copy(os.path.join(self.src, "k"), m.path("sampler", "keep", "k"))
        os.mkdir(m.path("sampler", "tmp"))
        random_file(os.path.join(self.src, "t"), 9 << 20, seed=2)
        shutil.copy(os.path.join(self.src, "t"), m.path("sampler", "tmp", "t"))
        os.setxattr(m.path("sampler", "tmp"), "user.ckptfs.ttl", b"2")
        created = float(xattr(m.path("sampler", "tmp"), "created"))
        self.assertEqual(int(xattr(m.path("sampler", "tmp"), "expires_at")), round(created + 2))
        while time.time() < created + 2 - 0.3:
            self.assertIn("tmp", os.listdir(m.path("sampler")))
            time.sleep(0.1)
        time.sleep(1.3)   # within a second of expiry it is gone
        self.assertNotIn("tmp", os.listdir(m.path("sampler")))
        self.assertFalse(os.path.exists(m.path("sampler", "tmp")))
        with open(m.path("checkpoints.jsonl")) as f:
            self.assertEqual([json.loads(l)["name"] for l in f], ["keep"])
        m.stop()
        before = self.store_bytes("chunks/")
        r = self.run_ckptfs("gc", "--grace", "0", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 expired", r.stdout)
        after = self.store_bytes("chunks/")
        self.assertLess(after, before - (8 << 20))
        m = self.mount("mnt2")
        self.assertEqual(sha256_file(m.path("sampler", "keep", "k")),
                         sha256_file(os.path.join(self.src, "k")))
        m.stop()

    def test_default_ttl_and_periodic_gc(self):
        m = self.mount(args=["--default-ttl=1", "--gc-interval=1", "--gc-grace=0"])
        os.mkdir(m.path("sampler", "a"))
        self.assertEqual(xattr(m.path("sampler", "a"), "ttl"), "1")
        with open(m.path("sampler", "a", "f"), "wb") as f:
            f.write(os.urandom(1 << 20))
        deadline = time.time() + 10
        while time.time() < deadline and self.chunk_keys():
            time.sleep(0.2)
        m.stop()
        self.assertEqual(self.chunk_keys(), [], "the daemon's gc reclaims expired data\n" + m.log())

    def test_base_deleted_delta_and_model_still_read(self):
        m = self.mount()
        base = os.path.join(self.src, "b")
        random_file(base, 9 << 20, seed=3)
        with open(base, "rb") as f:
            d = bytearray(f.read())
        d[5 << 20] ^= 1
        with open(os.path.join(self.src, "d"), "wb") as f:
            f.write(d)
        os.mkdir(m.path("sampler", "b"))
        shutil.copy(base, m.path("sampler", "b", "w"))
        os.mkdir(m.path("sampler", "d"))
        shutil.copy(os.path.join(self.src, "d"), m.path("sampler", "d", "w"))
        self.assertEqual(xattr(m.path("sampler", "d"), "kind"), "delta")
        os.symlink("../sampler/d", m.path("models", "m"))
        shutil.rmtree(m.path("sampler", "b"))
        m.stop()
        self.assertEqual(self.run_ckptfs("gc", "--grace", "0", self.store).returncode, 0)
        m = self.mount("mnt2")
        want = sha256_file(os.path.join(self.src, "d"))
        self.assertEqual(sha256_file(m.path("sampler", "d", "w")), want)
        self.assertEqual(sha256_file(m.path("models", "m", "w")), want)
        m.stop()
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)

    def test_gc_beside_a_writer_loses_nothing(self):
        if self.s3:
            self.skipTest("needs chunk mtimes set back in time (local store only)")
        m = self.mount()
        os.mkdir(m.path("sampler", "garbage"))
        random_file(os.path.join(self.src, "g"), 8 << 20, seed=4)
        shutil.copy(os.path.join(self.src, "g"), m.path("sampler", "garbage", "g"))
        shutil.rmtree(m.path("sampler", "garbage"))
        # Make every existing chunk look two hours old: the garbage is now
        # collectable, while whatever the writer stores next is young.
        old = time.time() - 7200
        for k in self.chunk_keys():
            os.utime(os.path.join(self.store, k), (old, old))
        garbage = set(self.chunk_keys())
        srcs = []
        for i in range(4):
            p = os.path.join(self.src, "f%d" % i)
            random_file(p, 12 << 20, seed=10 + i)
            srcs.append(p)
        os.mkdir(m.path("sampler", "live"))
        stop = threading.Event()
        runs = []

        def gc_loop():
            while not stop.is_set():
                r = self.run_ckptfs("gc", "--grace", "60", self.store)
                runs.append((r.returncode, r.stderr))
        t = threading.Thread(target=gc_loop)
        t.start()
        try:
            for p in srcs:
                shutil.copy(p, m.path("sampler", "live", os.path.basename(p)))
        finally:
            stop.set()
            t.join()
        self.assertTrue(runs and all(r[0] == 0 for r in runs), runs)
        self.assertEqual(self.run_ckptfs("gc", "--grace", "60", self.store).returncode, 0)
        self.assertFalse(garbage & set(self.chunk_keys()), "garbage collected")
        for p in srcs:
            self.assertEqual(sha256_file(m.path("sampler", "live", os.path.basename(p))),
                             sha256_file(p))
        m.stop()
        m = self.mount("mnt2")
        for p in srcs:
            self.assertEqual(sha256_file(m.path("sampler", "live", os.path.basename(p))),
                             sha256_file(p))
        m.stop()
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)


@requires_fuse
class StateCrossJobAlias(MountTest):
    def test_state_checkpoints_cross_job_and_alias(self):
        a = self.mount("a", job="job-a")
        st = a.path("state", "step-100")
        os.mkdir(st)
        self.assertEqual(xattr(st, "kind"), "state")
        os.makedirs(os.path.join(st, "optimizer"))
        files = {}
        for i in range(40):   # many small files
            rel = os.path.join("optimizer", "rank%02d.json" % i)
            with open(os.path.join(st, rel), "w") as f:
                f.write(json.dumps({"rank": i, "lr": 1e-5}))
        random_file(os.path.join(self.src, "big"), 21 << 20, seed=7)
        shutil.copy(os.path.join(self.src, "big"), os.path.join(st, "model.pt"))
        want = sha256_tree(st)
        self.assertEqual(len(want), 41)
        # A state checkpoint is never a delta, even after a sampler base exists.
        os.mkdir(a.path("state", "step-200"))
        self.assertEqual(xattr(a.path("state", "step-200"), "kind"), "state")
        # Snapshot alias: resolves, not listed.
        os.mkdir(a.path("sampler", "step-1"))
        with open(a.path("sampler", "step-1", "w"), "wb") as f:
            f.write(b"weights")
        snap = xattr(a.path("sampler", "step-1"), "snapshot")
        self.assertRegex(snap, r"^step-1-[0-9a-f]{8}$")
        with open(a.path("sampler", snap, "w"), "rb") as f:
            self.assertEqual(f.read(), b"weights")
        self.assertEqual(os.listdir(a.path("sampler")), ["step-1"])
        with open(a.path("checkpoints.jsonl")) as f:
            rows = [json.loads(l) for l in f]
        self.assertEqual(sorted(r["name"] for r in rows), ["step-1", "step-100", "step-200"])
        self.assertEqual(sorted(r["name"] for r in rows if r["dir"] == "sampler"),
                         sorted(os.listdir(a.path("sampler"))))
        for r in rows:
            for k in ("snapshot", "kind", "base", "created", "expires_at", "logical_bytes",
                      "stored_bytes", "promotable", "path"):
                self.assertIn(k, r)
        a.stop()
        # Resume from another job's state.
        b = self.mount("b", job="job-b")
        self.assertEqual(sha256_tree(b.path("jobs", "job-a", "state", "step-100")), want)
        self.assertErrno(errno.EROFS, open,
                         b.path("jobs", "job-a", "state", "step-100", "model.pt"), "wb")
        b.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
