"""Issue 13: `ckptfs put / get / ls / cat` (libckptfs, no mount) against real
mounts of the same store: a checkpoint written by put reads back exactly
through a mount, one written through a mount comes back exactly by get, for
base, delta, LoRA and state; get resumes; ls is the checkpoints.jsonl view.
Runs on a local directory store and (CKPTFS_TEST_BACKEND=s3) on S3."""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest, model_tensors, perturb_safetensors,
                            random_file, requires_fuse, sha256_file, sha256_tree,
                            write_safetensors)

DATA = None


def setUpModule():
    """step-0 (a ~12 MiB bf16 model + config), step-1 (1% of values changed),
    a LoRA adapter and a train state (optimizer shard in a folder)."""
    global DATA
    DATA = tempfile.mkdtemp(prefix="ckptfs-putget-", dir=os.environ.get("CKPTFS_TEST_TMP"))
    s0, s1 = os.path.join(DATA, "step-0"), os.path.join(DATA, "step-1")
    os.makedirs(s0)
    os.makedirs(s1)
    write_safetensors(os.path.join(s0, "model.safetensors"), model_tensors(12, hidden=512), 3)
    perturb_safetensors(os.path.join(s0, "model.safetensors"),
                        os.path.join(s1, "model.safetensors"), 0.01, seed=4)
    for d in (s0, s1):
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"hidden_size": 512}, f)
    lora = os.path.join(DATA, "lora")
    os.makedirs(lora)
    write_safetensors(os.path.join(lora, "adapter_model.safetensors"),
                      [("a.lora_A.weight", "BF16", (16, 512)),
                       ("a.lora_B.weight", "BF16", (512, 16))], 5)
    st = os.path.join(DATA, "state", "shards")
    os.makedirs(st)
    random_file(os.path.join(st, "optim-0.pt"), 3 << 20, 6)
    random_file(os.path.join(DATA, "state", "meta.bin"), 1000, 7)


def tearDownModule():
    shutil.rmtree(DATA, ignore_errors=True)


def src(*p):
    return os.path.join(DATA, *p)


def xattr(path, name):
    try:
        return os.getxattr(path, "user.ckptfs." + name).decode()
    except OSError:
        return None


class PutGet(MountTest):
    def ck(self, *args, ok=True):
        r = self.run_ckptfs(*args)
        if ok:
            self.assertEqual(r.returncode, 0, "ckptfs %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def put_all(self, job=None):
        """base, delta, lora and state, all by put."""
        loc = self.store + ("/" + job if job else "")
        if job:  # a job of a store that exists already is told from the path
            self.ck("put", "-q", self.store + "/sampler/seed", src("step-0", "config.json"))
        self.ck("put", loc + "/sampler/s0", src("step-0"))
        self.ck("put", loc + "/sampler/s1", src("step-1", "model.safetensors"),
                src("step-1", "config.json"))
        self.ck("put", "--kind=lora", loc + "/sampler/l0", src("lora"))
        self.ck("put", loc + "/state/st0", src("state"))

    @requires_fuse
    def test_put_then_read_through_mount(self):
        self.put_all()
        m = self.mount()
        self.assertEqual(sha256_tree(m.path("sampler", "s0")), sha256_tree(src("step-0")))
        self.assertEqual(sha256_tree(m.path("sampler", "s1")), sha256_tree(src("step-1")))
        self.assertEqual(sha256_tree(m.path("sampler", "l0")), sha256_tree(src("lora")))
        self.assertEqual(sha256_tree(m.path("state", "st0")), sha256_tree(src("state")))
        self.assertEqual(xattr(m.path("sampler", "s0"), "kind"), "base")
        self.assertEqual(xattr(m.path("sampler", "s1"), "kind"), "delta")
        self.assertEqual(xattr(m.path("sampler", "s1"), "base"), "s0")
        self.assertEqual(xattr(m.path("sampler", "l0"), "kind"), "lora")
        self.assertEqual(xattr(m.path("state", "st0"), "kind"), "state")
        # The delta stored far less than its size, as through a mount.
        self.assertLess(int(xattr(m.path("sampler", "s1"), "stored_bytes")),
                        int(xattr(m.path("sampler", "s1"), "logical_bytes")) // 4)
        # The mount's next checkpoint is a delta against put's base.
        os.mkdir(m.path("sampler", "m2"))
        shutil.copy(src("step-1", "model.safetensors"), m.path("sampler", "m2"))
        self.assertEqual(xattr(m.path("sampler", "m2"), "kind"), "delta")
        self.assertEqual(xattr(m.path("sampler", "m2"), "base"), "s0")
        m.stop()

    @requires_fuse
    def test_base_cache_dir(self):
        """--base-cache-dir: put keeps the base decoded there, the next put's
        delta and a mount's reads take the base from it; every byte exact."""
        raw = os.path.join(self.tmp, "raw")
        self.ck("put", "-q", "--base-cache-dir=" + raw, self.store + "/sampler/s0", src("step-0"))
        kept = [f for _, _, fs in os.walk(os.path.join(raw, "objects")) for f in fs]
        self.assertGreater(len(kept), 0)
        self.assertEqual(os.stat(raw).st_mode & 0o777, 0o700)
        self.ck("put", "-q", "--base-cache-dir=" + raw, self.store + "/sampler/s1", src("step-1"))
        m = self.mount(args=["--base-cache-dir=" + raw])
        self.assertEqual(xattr(m.path("sampler", "s1"), "kind"), "delta")
        self.assertEqual(sha256_tree(m.path("sampler", "s1")), sha256_tree(src("step-1")))
        stats = json.loads(os.getxattr(m.path(), "user.ckptfs.stats"))
        self.assertGreater(stats["base_cache_hits"], 0, stats)
        # A second user of the same directory runs without it, not wrong.
        out = os.path.join(self.tmp, "out")
        r = self.ck("get", "-q", "--base-cache-dir=" + raw, self.store + "/sampler/s1", out)
        self.assertIn("in use by another process", r.stderr)
        self.assertEqual(sha256_tree(out), sha256_tree(src("step-1")))
        m.stop()
        # A directory others can write is refused with a clear error.
        os.chmod(raw, 0o777)
        r = self.ck("get", "-q", "--base-cache-dir=" + raw, self.store + "/sampler/s1",
                    os.path.join(self.tmp, "out2"), ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("writable by nobody else", r.stderr)

    @requires_fuse
    def test_mount_then_get(self):
        m = self.mount()
        for name, d in (("s0", "step-0"), ("s1", "step-1")):
            os.mkdir(m.path("sampler", name))
            for f in os.listdir(src(d)):
                shutil.copy(src(d, f), m.path("sampler", name))
        os.mkdir(m.path("sampler", "l0"))
        os.setxattr(m.path("sampler", "l0"), "user.ckptfs.kind", b"lora")
        shutil.copy(src("lora", "adapter_model.safetensors"), m.path("sampler", "l0"))
        shutil.copytree(src("state"), m.path("state", "st0"))
        self.assertEqual(xattr(m.path("sampler", "s1"), "kind"), "delta")
        m.stop()
        out = os.path.join(self.tmp, "out")
        for name, d in (("sampler/s0", "step-0"), ("sampler/s1", "step-1"),
                        ("sampler/l0", "lora"), ("state/st0", "state")):
            dest = os.path.join(out, name)
            self.ck("get", "-q", "--parallel=3", self.store + "/" + name, dest)
            self.assertEqual(sha256_tree(dest), sha256_tree(src(d)), name)
        # One file, by its path; and cat.
        one = os.path.join(self.tmp, "one")
        self.ck("get", self.store + "/sampler/s1/model.safetensors", one)
        self.assertEqual(sha256_file(os.path.join(one, "model.safetensors")),
                         sha256_file(src("step-1", "model.safetensors")))
        r = self.run_ckptfs("cat", self.store + "/sampler/s1/config.json")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(src("step-1", "config.json")) as f:
            self.assertEqual(r.stdout, f.read())

    def test_get_resumes(self):
        self.ck("put", "-q", self.store + "/sampler/s0", src("step-0"))
        out = os.path.join(self.tmp, "out")
        want = sha256_file(src("step-0", "model.safetensors"))
        size = os.path.getsize(src("step-0", "model.safetensors"))
        self.assertGreater(size, 9 << 20)
        # An interrupted fetch: the first 8 MiB right, then a torn tail.
        os.makedirs(out)
        part = os.path.join(out, "model.safetensors.ckptfs-part")
        with open(src("step-0", "model.safetensors"), "rb") as f, open(part, "wb") as g:
            g.write(f.read(8 << 20))
            g.write(b"\0" * 12345)
        r = self.ck("get", self.store + "/sampler/s0", out)
        self.assertIn("model.safetensors (resuming at %d)" % (8 << 20), r.stdout)
        self.assertEqual(sha256_file(os.path.join(out, "model.safetensors")), want)
        self.assertFalse(os.path.exists(part))
        # A complete file is not fetched again.
        r = self.ck("get", self.store + "/sampler/s0", out)
        self.assertIn("model.safetensors (already here)", r.stdout)
        # Same size but another mtime (an older file of that name): fetched again.
        os.utime(os.path.join(out, "model.safetensors"), (1, 1))
        r = self.ck("get", self.store + "/sampler/s0", out)
        self.assertNotIn("model.safetensors (already here)", r.stdout)
        self.assertIn("config.json (already here)", r.stdout)
        self.assertEqual(sha256_file(os.path.join(out, "model.safetensors")), want)
        # A part that is not a prefix of this file starts over.
        os.unlink(os.path.join(out, "model.safetensors"))
        with open(part, "wb") as g:
            g.write(os.urandom(5 << 20))
        r = self.ck("get", self.store + "/sampler/s0", out)
        self.assertNotIn("resuming", r.stdout)
        self.assertEqual(sha256_file(os.path.join(out, "model.safetensors")), want)
        self.assertEqual(sha256_tree(out), sha256_tree(src("step-0")))

    @requires_fuse
    def test_ls_is_the_jsonl_view(self):
        self.put_all(job="rl-7")
        r = self.ck("ls", self.store + "/rl-7")
        m = self.mount(job="rl-7")
        with open(m.path("checkpoints.jsonl")) as f:
            mounted = [json.loads(line) for line in f]
        m.stop()
        listed = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(listed, mounted)
        self.assertEqual([(c["path"], c["kind"]) for c in listed],
                         [("sampler/l0", "lora"), ("sampler/s0", "base"),
                          ("sampler/s1", "delta"), ("state/st0", "state")])
        # The whole store: every job, each line naming its job.
        r = self.ck("ls", self.store)
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(sorted((c["job"], c["name"]) for c in rows),
                         [("default", "seed"), ("rl-7", "l0"), ("rl-7", "s0"),
                          ("rl-7", "s1"), ("rl-7", "st0")])
        self.assertEqual(self.ck("ls", "--jobs", self.store).stdout.split(),
                         ["default", "rl-7"])
        # --job says the same as the path.
        self.assertEqual(self.ck("ls", "--job=rl-7", self.store).stdout,
                         self.ck("ls", self.store + "/rl-7").stdout)

    def test_errors(self):
        missing = self.store + "-missing"
        r = self.ck("get", missing + "/sampler/x", os.path.join(self.tmp, "o"), ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open store", r.stderr)
        r = self.ck("ls", missing, ok=False)
        self.assertEqual(r.returncode, 1)
        self.ck("put", "-q", self.store + "/sampler/s0", src("step-0", "config.json"))
        r = self.ck("put", self.store + "/sampler/s0/extra", src("lora"), ok=False)
        self.assertEqual(r.returncode, 2)
        r = self.ck("put", self.store + "/sampler/s1", os.path.join(self.tmp, "nope"), ok=False)
        self.assertEqual(r.returncode, 1)
        r = self.ck("put", "--kind=lora", self.store + "/sampler/s0", src("lora"), ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("exists", r.stderr)
        r = self.ck("get", self.store + "/sampler/none", os.path.join(self.tmp, "o"), ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("No such file", r.stderr)
        r = self.ck("put", "--delta-policy=sometimes", self.store + "/sampler/s5",
                    src("lora"), ok=False)
        self.assertEqual(r.returncode, 1)
        # A missing store is not created by a read.
        self.assertFalse(os.path.exists(missing) and not self.s3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
