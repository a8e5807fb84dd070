"""Issue 6: many mounts, one bucket. Writers on "different hosts" (separate
processes with separate chunk caches) share one checkpoint; readers see
committed files within --list-ttl; a warm base cache makes a delta cheap to
read; server faults fail the write and lose nothing."""
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (BACKEND, MountTest, TcpRelay, perturb_safetensors, random_file,
                            requires_fuse, sha256_file, sha256_tree, write_safetensors)


def xattr(path, name):
    return os.getxattr(path, "user.ckptfs." + name).decode()


@requires_fuse
@unittest.skipUnless(BACKEND == "s3", "S3-only tests (CKPTFS_TEST_BACKEND=s3)")
class ManyMounts(MountTest):
    def test_two_writers_one_checkpoint_third_reads(self):
        a = self.mount("a", job="rl")
        b = self.mount("b", job="rl")
        c = self.mount("c", job="rl")
        # Both ranks create the checkpoint; they agree on its record.
        errs = []

        def mk(m):
            try:
                os.makedirs(m.path("sampler", "step-1"), exist_ok=True)
            except OSError as e:
                errs.append(e)
        ts = [threading.Thread(target=mk, args=(m,)) for m in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        time.sleep(1.2)
        self.assertEqual(xattr(a.path("sampler", "step-1"), "snapshot"),
                         xattr(b.path("sampler", "step-1"), "snapshot"))
        self.assertEqual(xattr(a.path("sampler", "step-1"), "kind"),
                         xattr(b.path("sampler", "step-1"), "kind"))
        srcs = {}
        for i in range(2):
            p = os.path.join(self.src, "shard-%d.bin" % i)
            random_file(p, 14 << 20, seed=20 + i)
            srcs[i] = p
        ps = [subprocess.Popen(["cp", srcs[i], m.path("sampler", "step-1", "shard-%d.bin" % i)])
              for i, m in ((0, a), (1, b))]
        for p in ps:
            self.assertEqual(p.wait(), 0)
        t0 = time.time()
        while time.time() - t0 < 3 and len(os.listdir(c.path("sampler", "step-1"))) < 2:
            time.sleep(0.1)
        self.assertLess(time.time() - t0, 2.0, "visible within --list-ttl (1 s) plus slack")
        self.assertEqual(sorted(os.listdir(c.path("sampler", "step-1"))),
                         ["shard-0.bin", "shard-1.bin"])
        for i in range(2):
            self.assertEqual(sha256_file(c.path("sampler", "step-1", "shard-%d.bin" % i)),
                             sha256_file(srcs[i]))
        # A deployment file made on one mount is seen by the others.
        with open(a.path("deployments", "d1"), "w") as f:
            json.dump({"protocol": "http", "url": "http://127.0.0.1:9", "model_path": "/x"}, f)
        self.assertIn("d1", os.listdir(c.path("deployments")))
        for m in (a, b, c):
            m.stop()

    def test_warm_base_cache_reads_little_more_than_the_delta(self):
        w = self.mount("w")
        os.makedirs(os.path.join(self.src, "s0"))
        os.makedirs(os.path.join(self.src, "s1"))
        write_safetensors(os.path.join(self.src, "s0", "m.safetensors"),
                          [("w", "BF16", (4096, 4096))], seed=3)
        perturb_safetensors(os.path.join(self.src, "s0", "m.safetensors"),
                            os.path.join(self.src, "s1", "m.safetensors"), 0.01, seed=4)
        for s in ("s0", "s1"):
            os.mkdir(w.path("sampler", s))
            shutil.copy(os.path.join(self.src, s, "m.safetensors"), w.path("sampler", s))
        delta_stored = int(xattr(w.path("sampler", "s1"), "stored_bytes"))
        w.stop()
        r = self.mount("reader", args=["-o", "ro"])
        self.assertEqual(sha256_tree(r.path("sampler", "s0")), sha256_tree(os.path.join(self.src, "s0")))
        before = json.loads(os.getxattr(r.mnt, "user.ckptfs.stats"))
        self.assertEqual(sha256_tree(r.path("sampler", "s1")), sha256_tree(os.path.join(self.src, "s1")))
        after = json.loads(os.getxattr(r.mnt, "user.ckptfs.stats"))
        fetched = after["fetched_bytes"] - before["fetched_bytes"]
        self.assertLessEqual(fetched, 1.2 * delta_stored,
                             "fetched %d for a delta of %d stored bytes" % (fetched, delta_stored))
        self.assertErrno(errno.EROFS, os.mkdir, r.path("sampler", "nope"))
        r.stop()

    def test_server_cut_mid_cp_loses_nothing(self):
        port = int(self.s3.endpoint.rsplit(":", 1)[1])
        proxy = TcpRelay(port)
        env = dict(AWS_ENDPOINT_URL="http://127.0.0.1:%d" % proxy.port, CKPTFS_S3_TIMEOUT="4")
        m = self.mount(env=env)
        os.mkdir(m.path("sampler", "s"))
        random_file(os.path.join(self.src, "ok"), 5 << 20, seed=1)
        shutil.copy(os.path.join(self.src, "ok"), m.path("sampler", "s", "ok"))
        random_file(os.path.join(self.src, "big"), 60 << 20, seed=2)
        cp = subprocess.Popen(["cp", os.path.join(self.src, "big"), m.path("sampler", "s", "big")],
                              stderr=subprocess.PIPE)
        time.sleep(0.3)
        proxy.close()
        _, err = cp.communicate(timeout=120)
        self.assertNotEqual(cp.returncode, 0, "the cp must fail when the store is gone")
        proxy = TcpRelay(port, proxy.port)    # the server is back
        try:
            time.sleep(1.2)
            self.assertNotIn("big", os.listdir(m.path("sampler", "s")))
            self.assertEqual(sha256_file(m.path("sampler", "s", "ok")),
                             sha256_file(os.path.join(self.src, "ok")))
            shutil.copy(os.path.join(self.src, "big"), m.path("sampler", "s", "big"))
            self.assertEqual(sha256_file(m.path("sampler", "s", "big")),
                             sha256_file(os.path.join(self.src, "big")))
            m.stop()
        finally:
            proxy.close()

    def test_bad_credentials_and_missing_bucket(self):
        mnt = os.path.join(self.tmp, "x")
        os.mkdir(mnt)
        env = dict(os.environ, **self.s3.env(secret="wrong-secret"))
        r = subprocess.run([os.environ.get("CKPTFS_BIN", "ckptfs"), "mount", "-f",
                            self.store, mnt], capture_output=True, text=True, env=env, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"(?i)credential|denied")
        env = dict(os.environ, **self.s3.env())
        r = subprocess.run([os.environ.get("CKPTFS_BIN", "ckptfs"), "mount", "-f",
                            "s3://no-such-bucket-ckptfs/x", mnt], capture_output=True,
                           text=True, env=env, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no-such-bucket-ckptfs", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
