"""Issue 9 items 4 and 10: POSIX behaviour common tools rely on, and
promotion racing gc and `rm -r`.

Item 10: fstat() on an open, unlinked file; stable inode numbers (also in
readdir); the versioning rule of doc/SEMANTICS.md as it really is; directory
modes and times kept (mkdir -m, chmod, utimens: `rsync -a` twice changes
nothing the second time; tar, find, rm -rf on a big tree); the refused
operations and their errnos.

Item 4: promotions of deltas during repeated `ckptfs gc --grace 0`, and
promotions racing `rm -r` of their source: every published model is
complete after a remount (sha256), every other promotion failed."""
import errno
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest as _MountTest, perturb_safetensors, random_file,
                            requires_fuse, sha256_tree, write_safetensors)


class MountTest(_MountTest):
    """Every mount still running at the end is stopped the checked way:
    the daemon must exit 0 with no sanitizer report in its log."""

    def tearDown(self):
        try:
            for m in self.mounts:
                if m.proc is not None:
                    m.stop()
        finally:
            super().tearDown()


def tree_inodes(root):
    """{relative path: (st_ino, d_ino from readdir)} of everything under root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        with os.scandir(dirpath) as it:
            for e in it:
                rel = os.path.relpath(e.path, root)
                out[rel] = (os.lstat(e.path).st_ino, e.inode())
    return out


@requires_fuse
class UnlinkedOpenFiles(MountTest):
    def setUp(self):
        super().setUp()
        self.m = self.mount()
        os.mkdir(self.m.path("sampler", "c"))

    def test_fstat_of_a_file_being_written(self):
        m = self.m
        os.mkdir(m.path("sampler", "c", "tmpdir"))
        p = m.path("sampler", "c", "tmpdir", "scratch.bin")
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o640)
        try:
            os.write(fd, b"a" * 1000)
            ino = os.fstat(fd).st_ino
            os.unlink(p)
            st = os.fstat(fd)           # was ESTALE
            self.assertEqual((st.st_size, st.st_nlink, st.st_ino), (1000, 0, ino))
            self.assertTrue(stat.S_ISREG(st.st_mode))
            os.write(fd, b"b" * 500)     # the descriptor keeps working
            self.assertEqual(os.fstat(fd).st_size, 1500)
            self.assertEqual(os.pread(fd, 4, 998), b"aabb")
            self.assertEqual(os.listdir(m.path("sampler", "c", "tmpdir")), [])
            self.assertErrno(errno.ENOENT, os.stat, p)
            # Its folder can go while the unlinked file is still open.
            os.rmdir(m.path("sampler", "c", "tmpdir"))
        finally:
            os.close(fd)
        self.assertEqual(os.listdir(m.path("sampler", "c")), [])

    def test_fstat_of_a_committed_file(self):
        m = self.m
        p = m.path("sampler", "c", "w.bin")
        random_file(p, 3 << 20, seed=5)
        with open(p, "rb") as f:
            want = f.read()
        fd = os.open(p, os.O_RDONLY)
        try:
            os.unlink(p)
            st = os.fstat(fd)
            self.assertEqual((st.st_size, st.st_nlink), (3 << 20, 0))
            self.assertEqual(os.pread(fd, 3 << 20, 0), want)
            self.assertEqual(os.listdir(m.path("sampler", "c")), [])
            # The name is free again at once.
            with open(p, "wb") as f:
                f.write(b"new")
            self.assertEqual(os.fstat(fd).st_size, 3 << 20)
        finally:
            os.close(fd)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(os.listdir(m.path("sampler", "c")), ["w.bin"])
        m.stop()
        m = self.mount("mnt2")
        self.assertEqual(os.listdir(m.path("sampler", "c")), ["w.bin"])

    def test_rename_over_an_open_file(self):
        """rename(2) onto an open file (the atomic-save pattern)."""
        m = self.m
        dst = m.path("sampler", "c", "cfg.json")
        with open(dst, "w") as f:
            f.write("old")
        with open(dst) as reader:
            with open(m.path("sampler", "c", "cfg.json.tmp"), "w") as f:
                f.write("new!")
            os.rename(m.path("sampler", "c", "cfg.json.tmp"), dst)
            self.assertEqual(os.fstat(reader.fileno()).st_size, 3)
            self.assertEqual(reader.read(), "old")
        with open(dst) as f:
            self.assertEqual(f.read(), "new!")
        self.assertEqual(os.listdir(m.path("sampler", "c")), ["cfg.json"])


@requires_fuse
class InodeNumbers(MountTest):
    def test_stable_across_forget_and_remount(self):
        m = self.mount()
        c = m.path("sampler", "c")
        os.makedirs(os.path.join(c, "a", "b"))
        for rel in ("x.bin", "a/y.bin", "a/b/z.bin"):
            with open(os.path.join(c, rel), "wb") as f:
                f.write(rel.encode())
        before = tree_inodes(m.mnt)
        # readdir's d_ino is what stat reports, and no two names share one
        # (rsync -H and tar would take them for hard links).
        for rel, (ino, dino) in before.items():
            self.assertEqual(ino, dino, rel)
        files = [v[0] for k, v in before.items() if k.startswith("sampler/c/")]
        self.assertEqual(len(files), len(set(files)))
        # The kernel forgets inodes: the numbers stay.
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        self.assertEqual(tree_inodes(m.mnt), before)
        m.stop()
        m = self.mount("mnt2")
        self.assertEqual(tree_inodes(m.mnt), before)
        # A rename gives the file the number of its new name; back again,
        # the old one.
        x = os.stat(m.path("sampler", "c", "x.bin")).st_ino
        os.rename(m.path("sampler", "c", "x.bin"), m.path("sampler", "c", "x2.bin"))
        self.assertNotEqual(os.stat(m.path("sampler", "c", "x2.bin")).st_ino, x)
        os.rename(m.path("sampler", "c", "x2.bin"), m.path("sampler", "c", "x.bin"))
        self.assertEqual(os.stat(m.path("sampler", "c", "x.bin")).st_ino, x)
        # A snapshot alias is the same directory.
        snap = os.getxattr(m.path("sampler", "c"), "user.ckptfs.snapshot").decode()
        self.assertEqual(os.stat(m.path("sampler", snap)).st_ino,
                         os.stat(m.path("sampler", "c")).st_ino)


@requires_fuse
class VersioningRule(MountTest):
    """doc/SEMANTICS.md "Visibility": a descriptor reads the version
    committed when it was opened until a newer version of the same file is
    opened on the same mount; from then on both may read the newer bytes
    (one page cache per file)."""

    def test_old_descriptor_across_a_rewrite(self):
        a = self.mount("a")
        b = self.mount("b", args=["--list-ttl=0.2"])
        os.mkdir(a.path("sampler", "c"))
        v1, v2 = os.path.join(self.tmp, "v1"), os.path.join(self.tmp, "v2")
        random_file(v1, 2 << 20, seed=1)
        random_file(v2, 2 << 20, seed=2)
        with open(v1, "rb") as f:
            want1 = f.read()
        with open(v2, "rb") as f:
            want2 = f.read()
        shutil.copyfile(v1, a.path("sampler", "c", "w.bin"))
        fd1 = os.open(b.path("sampler", "c", "w.bin"), os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd1, 4096, 0), want1[:4096])
            shutil.copyfile(v2, a.path("sampler", "c", "w.bin"))   # another mount
            time.sleep(1.5)
            # Nobody opened v2 on mount b: fd1 reads v1, all of it.
            self.assertEqual(os.pread(fd1, 2 << 20, 0), want1)
            with open(b.path("sampler", "c", "w.bin"), "rb") as f2:
                self.assertEqual(f2.read(), want2)
                # Now the page cache holds v2, and fd1 reads it.
                self.assertEqual(os.pread(fd1, 2 << 20, 0), want2)
        finally:
            os.close(fd1)


@requires_fuse
class DirectoryMetadata(MountTest):
    def test_modes_and_times_are_kept(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "c"), 0o700)
        os.mkdir(m.path("sampler", "c", "d"), 0o750)
        with open(m.path("sampler", "c", "d", "f"), "w") as f:
            f.write("x")
        os.chmod(m.path("sampler", "c", "d"), 0o710)
        os.utime(m.path("sampler", "c"), ns=(1_000_000_000, 1_600_000_000_123_456_789))
        os.utime(m.path("sampler", "c", "d"), ns=(1_000_000_000, 1_500_000_000_000_000_000))
        d = os.mkdir(m.path("sampler", "e")) or m.path("sampler", "e")
        os.chmod(d, 0o751)
        for mm in (m, None):
            if mm is None:
                m.stop()
                mm = self.mount("mnt2")
            st = os.stat(mm.path("sampler", "c"))
            self.assertEqual(st.st_mode & 0o7777, 0o700)
            self.assertEqual(st.st_mtime_ns, 1_600_000_000_123_456_789)
            st = os.stat(mm.path("sampler", "c", "d"))
            self.assertEqual(st.st_mode & 0o7777, 0o710)
            self.assertEqual(st.st_mtime_ns, 1_500_000_000_000_000_000)
            self.assertEqual(os.stat(mm.path("sampler", "e")).st_mode & 0o7777, 0o751)

    def test_rsync_twice_changes_nothing(self):
        if not shutil.which("rsync"):
            self.skipTest("rsync is not installed (scripts/install-deps.sh)")
        m = self.mount()
        src = os.path.join(self.src, "ck")
        os.makedirs(os.path.join(src, "sub", "deeper"))
        for i, (rel, mode) in enumerate([("model.safetensors", 0o644), ("secret.key", 0o600),
                                         ("run.sh", 0o755), ("sub/a.json", 0o644),
                                         ("sub/deeper/b.bin", 0o640)]):
            random_file(os.path.join(src, rel), 100_000 + i, seed=i)
            os.chmod(os.path.join(src, rel), mode)
        os.chmod(os.path.join(src, "sub"), 0o750)
        os.utime(os.path.join(src, "sub", "deeper"), (1_500_000_000, 1_500_000_000))
        os.utime(os.path.join(src, "sub"), (1_500_000_100, 1_500_000_100))
        os.utime(src, (1_500_000_200, 1_500_000_200))
        dst = m.path("sampler", "ck")
        r = subprocess.run(["rsync", "-a", src + "/", dst + "/"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sha256_tree(dst), sha256_tree(src))
        r = subprocess.run(["rsync", "-a", "-i", src + "/", dst + "/"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "", "second rsync changed:\n" + r.stdout)
        for rel in ("", "sub", "sub/deeper", "secret.key", "run.sh"):
            s, d = os.stat(os.path.join(src, rel)), os.stat(os.path.join(dst, rel))
            self.assertEqual((s.st_mode, int(s.st_mtime)), (d.st_mode, int(d.st_mtime)), rel)

    def test_tar_find_rm_rf_big_tree(self):
        m = self.mount()
        src = os.path.join(self.src, "big")
        n = 0
        for i in range(12):
            for j in range(3):
                d = os.path.join(src, "d%02d" % i, "e%d" % j)
                os.makedirs(d)
                for k in range(6):
                    with open(os.path.join(d, "f%d" % k), "wb") as f:
                        f.write(os.urandom(random.randrange(1, 3000)))
                    n += 1
        os.mkdir(m.path("sampler", "big"))
        r = subprocess.run(["tar", "-C", src, "-cf", "-", "."], capture_output=True)
        self.assertEqual(r.returncode, 0)
        x = subprocess.run(["tar", "-C", m.path("sampler", "big"), "-xf", "-"],
                           input=r.stdout, capture_output=True)
        self.assertEqual(x.returncode, 0, x.stderr)
        self.assertEqual(sha256_tree(m.path("sampler", "big")), sha256_tree(src))
        # tar out of the mount: no "file changed as we read it", no link confusion.
        r = subprocess.run(["tar", "-C", m.path("sampler", "big"), "-cf",
                            os.path.join(self.tmp, "out.tar"), "."], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(b"hard link", subprocess.run(
            ["tar", "-tvf", os.path.join(self.tmp, "out.tar")], capture_output=True).stdout)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        r = subprocess.run(["find", m.path("sampler", "big"), "-type", "f"],
                           capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(len(r.stdout.split()), n)
        r = subprocess.run(["rm", "-rf", m.path("sampler", "big")], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(os.listdir(m.path("sampler")), [])


@requires_fuse
class Refused(MountTest):
    def test_unsupported_operations_and_errnos(self):
        m = self.mount()
        c = m.path("sampler", "c")
        os.mkdir(c)
        with open(os.path.join(c, "f"), "w") as f:
            f.write("x")
        self.assertErrno(errno.EPERM, os.link, os.path.join(c, "f"), os.path.join(c, "g"))
        self.assertErrno(errno.EPERM, os.mkfifo, os.path.join(c, "fifo"))
        self.assertErrno(errno.EPERM, os.mknod, os.path.join(c, "dev"), 0o600 | stat.S_IFCHR,
                         os.makedev(1, 3))
        self.assertErrno(errno.EPERM, os.chown, os.path.join(c, "f"), 4242, -1)
        os.chown(os.path.join(c, "f"), os.getuid(), os.getgid())     # a no-op is fine
        self.assertErrno(errno.EPERM, os.utime, m.path("sampler"), (1, 1))
        self.assertErrno(errno.EPERM, os.chmod, m.path("sampler"), 0o700)
        self.assertErrno(errno.EPERM, os.symlink, "f", os.path.join(c, "lnk"))
        self.assertErrno(errno.EPERM, open, os.path.join(c, ".fuse_hidden0000000100000002"), "w")
        self.assertErrno(errno.EPERM, os.mkdir, os.path.join(c, ".fuse_hiddenX"))
        # A regular file by mknod is just an empty file.
        os.mknod(os.path.join(c, "empty"), 0o600 | stat.S_IFREG)
        self.assertEqual(os.stat(os.path.join(c, "empty")).st_size, 0)
        self.assertEqual(sorted(os.listdir(c)), ["empty", "f"])
        log = m.log()
        for what in ("link ", "mknod ", "chown ", "utimens ", "chmod ", "symlink ",
                     "are reserved"):
            self.assertIn(what, log)


def make_delta_sources(test, m, names, seed):
    """A base checkpoint and one delta per name (two files each); returns
    {name: sha256_tree} of what was written."""
    base = os.path.join(test.src, "base")
    os.makedirs(base)
    write_safetensors(os.path.join(base, "model.safetensors"),
                      [("w", "BF16", (1024, 1024)), ("n", "BF16", (1024,))], seed=seed)
    with open(os.path.join(base, "config.json"), "w") as f:
        f.write('{"base": true}')
    os.mkdir(m.path("sampler", "base"))
    subprocess.run(["cp", "-r", base + "/.", m.path("sampler", "base")], check=True)
    want = {}
    for i, name in enumerate(names):
        d = os.path.join(test.src, name)
        os.makedirs(os.path.join(d, "extra"))
        perturb_safetensors(os.path.join(base, "model.safetensors"),
                            os.path.join(d, "model.safetensors"), 0.05, seed=seed + 1 + i)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write('{"step": "%s"}' % name)
        for k in range(3):
            random_file(os.path.join(d, "extra", "f%d.bin" % k), 70_000 + k, seed=seed * 100 + i)
        os.mkdir(m.path("sampler", name))
        subprocess.run(["cp", "-r", d + "/.", m.path("sampler", name)], check=True)
        want[name] = sha256_tree(d)
    return want


@requires_fuse
class PromoteVsGc(MountTest):
    TRIALS = 12

    def test_promotions_during_gc_grace_0(self):
        m = self.mount(args=["--chunk-kib=256", "--gc-interval=0"])
        names = ["s%02d" % i for i in range(self.TRIALS)]
        want = make_delta_sources(self, m, names, seed=7)
        self.assertEqual(os.getxattr(m.path("sampler", names[0]), "user.ckptfs.kind"), b"delta")
        stop = threading.Event()
        passes = [0]
        gc_errors = []

        def gc_loop():
            while not stop.is_set():
                r = self.run_ckptfs("gc", "--grace", "0", self.store)
                passes[0] += 1
                if r.returncode != 0:
                    gc_errors.append(r.stderr)

        t = threading.Thread(target=gc_loop)
        t.start()
        published, failed = [], []
        try:
            for name in names:
                try:
                    os.symlink("../sampler/" + name, m.path("models", "m-" + name))
                    published.append(name)
                except OSError as e:
                    self.assertEqual(e.errno, errno.EIO, "%s: %s" % (name, e))
                    failed.append(name)
                # The model must stand alone: its source goes at once.
                shutil.rmtree(m.path("sampler", name))
        finally:
            stop.set()
            t.join()
        print("\npromote vs gc --grace 0: %d trials, %d published, %d failed (EIO), "
              "%d gc passes" % (len(names), len(published), len(failed), passes[0]),
              file=sys.stderr)
        # One more full gc, then a fresh mount: every published model reads whole.
        shutil.rmtree(m.path("sampler", "base"))
        m.stop()
        r = self.run_ckptfs("gc", "--grace", "0", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.mount("mnt2")
        self.assertEqual(sorted(os.listdir(m.path("models"))),
                         sorted("m-" + n for n in published))
        for name in published:
            self.assertEqual(sha256_tree(m.path("models", "m-" + name)), want[name], name)
        self.assertGreater(len(published), 0)
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


@requires_fuse
class PromoteVsRm(MountTest):
    TRIALS = 20

    def test_promotion_racing_rm_r(self):
        m = self.mount(args=["--chunk-kib=256"])
        names = ["r%02d" % i for i in range(self.TRIALS)]
        want = make_delta_sources(self, m, names + ["probe"], seed=11)
        rng = random.Random(3)
        # How long one promotion takes here (local disk or S3), so that
        # the removals land before, during and after the copy.
        t0 = time.monotonic()
        os.symlink("../sampler/probe", m.path("models", "probe"))
        took = time.monotonic() - t0
        self.assertEqual(sha256_tree(m.path("models", "probe")), want["probe"])
        outcome = {"published": 0, "ENOENT": 0, "EBUSY": 0, "EINVAL": 0}
        outcome_log = []
        for name in names:
            res = {}

            # Half the trials start rm -r first and promote while it runs
            # (the copy would miss files), half promote first and remove
            # while it copies.
            rm_first = len(outcome_log) % 2 == 0
            d_promote = rng.uniform(0, 0.012) if rm_first else 0
            d_remove = 0 if rm_first else rng.uniform(0, 1.5 * took)
            outcome_log.append(rm_first)

            def promote():
                time.sleep(d_promote)
                try:
                    os.symlink("../sampler/" + name, m.path("models", "p-" + name))
                    res["p"] = 0
                except OSError as e:
                    res["p"] = e.errno

            def remove():
                time.sleep(d_remove)
                shutil.rmtree(m.path("sampler", name), ignore_errors=True)

            ts = [threading.Thread(target=promote), threading.Thread(target=remove)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if res["p"] == 0:
                outcome["published"] += 1
                self.assertEqual(sha256_tree(m.path("models", "p-" + name)), want[name], name)
            else:
                # ENOENT: removed while copied (or before); EBUSY: changed
                # while copied; EINVAL: found empty, rm -r just before its rmdir.
                self.assertIn(res["p"], (errno.ENOENT, errno.EBUSY, errno.EINVAL),
                              "%s: %s" % (name, res))
                outcome[errno.errorcode[res["p"]]] += 1
                self.assertNotIn("p-" + name, os.listdir(m.path("models")))
        print("\npromote vs rm -r: %d trials: %s (a promotion takes %.2f s)"
              % (len(names), outcome, took), file=sys.stderr)
        m.stop()
        m = self.mount("mnt2")
        for name in names:
            if os.path.isdir(m.path("models", "p-" + name)):
                self.assertEqual(sha256_tree(m.path("models", "p-" + name)), want[name], name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
