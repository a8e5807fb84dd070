"""Issue 3: base/delta encoding through real mounts — kinds chosen by the
policy, exact bytes for every delta after remount, deltas outliving their
base's name, forced bases, LoRA stored whole, kill -9 during a delta cp."""
import errno
import json
import mmap
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest, model_tensors, perturb_safetensors,
                            random_file, requires_fuse, sha256_file, sha256_tree,
                            write_safetensors)

DATA = None
STEPS = 5


def setUpModule():
    """step-0 (base) and steps 1..5, each a growing fraction of +-1..2 ulp
    changes of the previous one, like consecutive Adam steps."""
    global DATA
    DATA = tempfile.mkdtemp(prefix="ckptfs-delta-", dir=os.environ.get("CKPTFS_TEST_TMP"))
    prev = os.path.join(DATA, "step-0")
    os.makedirs(prev)
    write_safetensors(os.path.join(prev, "model.safetensors"), model_tensors(205), seed=11)
    with open(os.path.join(prev, "config.json"), "w") as f:
        json.dump({"hidden_size": 1024}, f)
    for s in range(1, STEPS + 1):
        cur = os.path.join(DATA, "step-%d" % s)
        os.makedirs(cur)
        perturb_safetensors(os.path.join(prev, "model.safetensors"),
                            os.path.join(cur, "model.safetensors"), 0.01, seed=100 + s)
        shutil.copy(os.path.join(prev, "config.json"), cur)
        prev = cur


def tearDownModule():
    shutil.rmtree(DATA, ignore_errors=True)


def xattr(path, name):
    try:
        return os.getxattr(path, "user.ckptfs." + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


@requires_fuse
class DeltaSequence(MountTest):
    def test_base_and_five_deltas_exact_after_remount(self):
        m = self.mount()
        want = {}
        for s in range(STEPS + 1):
            ck = m.path("sampler", "step-%d" % s)
            os.mkdir(ck)
            src = os.path.join(DATA, "step-%d" % s)
            subprocess.run(["cp", "-r", src + "/.", ck], check=True)
            want[s] = sha256_tree(src)
            self.assertEqual(sha256_tree(ck), want[s])
        self.assertEqual(xattr(m.path("sampler", "step-0"), "kind"), "base")
        raw = os.path.getsize(os.path.join(DATA, "step-1", "model.safetensors"))
        for s in range(1, STEPS + 1):
            ck = m.path("sampler", "step-%d" % s)
            self.assertEqual(xattr(ck, "kind"), "delta")
            self.assertEqual(xattr(ck, "base"), "step-0")
            stored = int(xattr(ck, "stored_bytes"))
            self.assertLess(stored, raw / 10, "step-%d stored %d of %d" % (s, stored, raw))
        one = int(xattr(m.path("sampler", "step-1"), "stored_bytes"))
        self.assertLess(one, raw / 20, "a 1-step delta must be under 1/20 of raw")
        m.stop()

        m = self.mount("mnt2")
        for s in range(STEPS + 1):
            self.assertEqual(sha256_tree(m.path("sampler", "step-%d" % s)), want[s])
        # Random-offset reads and mmap of the newest delta.
        src = os.path.join(DATA, "step-%d" % STEPS, "model.safetensors")
        dst = m.path("sampler", "step-%d" % STEPS, "model.safetensors")
        size = os.path.getsize(src)
        rng = random.Random(9)
        with open(src, "rb") as a, open(dst, "rb") as b:
            for _ in range(300):
                off, n = rng.randrange(size), rng.choice([2, 999, 65536, 3 << 20])
                self.assertEqual(os.pread(a.fileno(), n, off), os.pread(b.fileno(), n, off))
            mm = mmap.mmap(b.fileno(), 0, prot=mmap.PROT_READ)
            for _ in range(100):
                off = rng.randrange(size - 5000)
                self.assertEqual(mm[off:off + 5000], os.pread(a.fileno(), 5000, off))
            mm.close()

        # Deleting the base's name keeps every delta readable.
        shutil.rmtree(m.path("sampler", "step-0"))
        self.assertNotIn("step-0", os.listdir(m.path("sampler")))
        for s in range(1, STEPS + 1):
            self.assertEqual(sha256_tree(m.path("sampler", "step-%d" % s)), want[s])
        m.stop()
        m = self.mount("mnt3")
        self.assertEqual(sha256_tree(m.path("sampler", "step-3")), want[3])
        # With its base gone, the next checkpoint starts a new base.
        os.mkdir(m.path("sampler", "step-9"))
        self.assertEqual(xattr(m.path("sampler", "step-9"), "kind"), "base")
        m.stop()
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout)


@requires_fuse
@unittest.skipUnless(shutil.which("rsync"), "needs rsync")
class TempNameWriters(MountTest):
    def test_rsync_and_cp_store_the_same_bytes(self):
        """rsync -a writes .NAME.XXXXXX and renames it: the delta must pair
        with the base's NAME all the same (and a name no rule knows, by its
        safetensors header), so rsync -a, rsync --inplace, a temp file and
        cp of one checkpoint store the same chunks (issue 11 item 6)."""
        m = self.mount()
        os.mkdir(m.path("sampler", "step-0"))
        subprocess.run(["cp", "-r", os.path.join(DATA, "step-0") + "/.",
                        m.path("sampler", "step-0")], check=True)
        src = os.path.join(DATA, "step-1")
        ways = {"cp": ["cp", "-r", src + "/."],
                "rsync": ["rsync", "-a", src + "/"],
                "rsync-inplace": ["rsync", "-a", "--inplace", src + "/"]}
        # A name no rule knows (Python's tempfile, then os.replace): paired
        # by its safetensors header instead.
        ways["tempfile"] = ["sh", "-c", 'cp "$0/model.safetensors" "$1/tmpq8w_2ab" && '
                            'mv "$1/tmpq8w_2ab" "$1/model.safetensors" && '
                            'cp "$0/config.json" "$1/"', src]
        stored, chunks = {}, {}
        for way, cmd in ways.items():
            ck = m.path("sampler", way)
            os.mkdir(ck)
            subprocess.run(cmd + [ck], check=True)
            self.assertEqual(sha256_tree(ck), sha256_tree(src), way)
            self.assertEqual(sorted(os.listdir(ck)), ["config.json", "model.safetensors"], way)
            self.assertEqual(xattr(ck, "kind"), "delta", way)
            stored[way] = int(xattr(ck, "stored_bytes"))
            chunks[way] = set(self.chunk_keys())
        raw = os.path.getsize(os.path.join(src, "model.safetensors"))
        self.assertLess(stored["cp"], raw / 10)
        self.assertEqual(stored["rsync"], stored["cp"], stored)
        self.assertEqual(stored["rsync-inplace"], stored["cp"], stored)
        # Content-named chunks: the rsync copies added no chunk to the store.
        self.assertEqual(chunks["rsync"], chunks["cp"])
        self.assertEqual(chunks["rsync-inplace"], chunks["cp"])
        self.assertEqual(stored["tempfile"], stored["cp"], stored)
        self.assertEqual(chunks["tempfile"], chunks["cp"])


@requires_fuse
class DeltaShapes(MountTest):
    def test_size_change_new_file_forced_base_lora(self):
        m = self.mount()
        base = m.path("sampler", "b")
        os.mkdir(base)
        src = os.path.join(self.src, "blob")
        random_file(src, 9 * (1 << 20) + 5, seed=1)
        shutil.copy(src, os.path.join(base, "blob"))
        d = m.path("sampler", "d")
        os.mkdir(d)
        self.assertEqual(xattr(d, "kind"), "delta")
        # Same name, other size; and a file the base lacks.
        with open(src, "rb") as f:
            data = bytearray(f.read(7 * (1 << 20) + 3))
        data[100:110] = b"0123456789"
        with open(os.path.join(d, "blob"), "wb") as f:
            f.write(data)
        with open(os.path.join(d, "new.txt"), "w") as f:
            f.write("only in the delta\n")
        m.stop()
        m = self.mount("mnt2")
        d = m.path("sampler", "d")
        with open(os.path.join(d, "blob"), "rb") as f:
            self.assertEqual(f.read(), bytes(data))
        with open(os.path.join(d, "new.txt")) as f:
            self.assertEqual(f.read(), "only in the delta\n")

        # Forced base.
        fb = m.path("sampler", "forced")
        os.mkdir(fb)
        self.assertEqual(xattr(fb, "kind"), "delta")
        os.setxattr(fb, "user.ckptfs.kind", b"base")
        self.assertEqual(xattr(fb, "kind"), "base")
        self.assertIsNone(xattr(fb, "base"))
        shutil.copy(src, os.path.join(fb, "blob"))
        self.assertErrno(errno.EBUSY, os.setxattr, fb, "user.ckptfs.kind", b"lora")
        nxt = m.path("sampler", "after-forced")
        os.mkdir(nxt)
        self.assertEqual(xattr(nxt, "base"), "forced")

        # LoRA adapters are stored whole.
        lo = m.path("sampler", "adapter-1")
        os.mkdir(lo)
        with open(os.path.join(lo, "adapter_config.json"), "w") as f:
            json.dump({"r": 8, "lora_alpha": 16}, f)
        write_safetensors(os.path.join(lo, "adapter_model.safetensors"),
                          [("a.lora_A.weight", "BF16", (8, 1024))], seed=3)
        self.assertEqual(xattr(lo, "kind"), "lora")
        self.assertIsNone(xattr(lo, "base"))
        self.assertEqual(xattr(lo, "promotable"), "true")
        m.stop()

        m = self.mount("mnt3", args=["--lora"])
        os.mkdir(m.path("sampler", "l2"))
        self.assertEqual(xattr(m.path("sampler", "l2"), "kind"), "lora")
        m.stop()

    def test_base_every(self):
        m = self.mount(args=["--base-every=2"])
        kinds = []
        for i in range(5):
            p = m.path("sampler", "s%d" % i)
            os.mkdir(p)
            with open(os.path.join(p, "f"), "wb") as f:
                f.write(b"%d" % i * 1000)
            kinds.append(xattr(p, "kind"))
        self.assertEqual(kinds, ["base", "delta", "delta", "base", "delta"])
        m.stop()

    def test_base_deleted_and_collected_while_a_delta_is_written(self):
        m = self.mount()
        base = os.path.join(self.src, "b")
        random_file(base, 8 << 20, seed=21)
        os.mkdir(m.path("sampler", "b"))
        shutil.copy(base, m.path("sampler", "b", "w"))
        os.mkdir(m.path("sampler", "d"))
        self.assertEqual(xattr(m.path("sampler", "d"), "kind"), "delta")
        # The writer is its own process: a close of an inherited descriptor
        # (any fork of ours) would commit the file early, which is correct
        # but not the case under test.
        writer = subprocess.Popen([sys.executable, "-c", """
import os, sys
data = bytearray(open(sys.argv[1], "rb").read())
data[1000] ^= 0xFF      # chunk 0 changes; chunk 1 equals its base
fd = os.open(sys.argv[2], os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, data)      # both chunks are encoded against the base now
print("written", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("closed")
except OSError as e:
    print("errno", e.errno)
""", base, m.path("sampler", "d", "w")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        self.assertEqual(writer.stdout.readline().strip(), "written")
        shutil.rmtree(m.path("sampler", "b"))
        r = self.run_ckptfs("gc", "--grace", "0", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        out, _ = writer.communicate("go\n", timeout=60)
        # The close must fail: EIO from the base-chunk check, or ENOENT when
        # this gc (grace 0, so no protection for writes in flight) deleted
        # one of the delta's own chunks as it was being stored. Either way
        # no broken file may be committed, which the remount checks.
        self.assertIn(out.strip(), ("errno %d" % errno.EIO, "errno %d" % errno.ENOENT),
                      m.log())
        m.stop()
        self.assertIn("commit d/w", m.log())   # one line saying why
        m = self.mount("mnt2")
        self.assertEqual(os.listdir(m.path("sampler", "d")), [], "nothing half-committed")
        m.stop()
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)

    def test_kill9_during_delta_cp(self):
        m = self.mount()
        for s in (0, 1):
            ck = m.path("sampler", "step-%d" % s)
            os.mkdir(ck)
            subprocess.run(["cp", "-r", os.path.join(DATA, "step-%d" % s) + "/.", ck], check=True)
        ck = m.path("sampler", "step-2")
        os.mkdir(ck)
        fd = os.open(os.path.join(ck, "model.safetensors"), os.O_CREAT | os.O_WRONLY, 0o644)
        with open(os.path.join(DATA, "step-2", "model.safetensors"), "rb") as f:
            os.write(fd, f.read(30 << 20))
        m.kill9()
        try:
            os.close(fd)
        except OSError:
            pass
        m = self.mount("mnt2")
        for s in (0, 1):
            self.assertEqual(sha256_tree(m.path("sampler", "step-%d" % s)),
                             sha256_tree(os.path.join(DATA, "step-%d" % s)))
        self.assertEqual(os.listdir(m.path("sampler", "step-2")), [])
        m.stop()
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
