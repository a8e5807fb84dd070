"""Issue 2: the mounted filesystem on a local store — exact bytes through
cp, pread, mmap, truncate, rename, remount and kill -9; corrupt chunks give
EIO; names, other jobs and the CLI behave as documented."""
import errno
import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (Mount, MountTest, model_tensors, random_file,
                            requires_fuse, sha256_file, sha256_tree,
                            write_safetensors)

DATA = None  # shared source files, made once


def setUpModule():
    global DATA
    DATA = tempfile.mkdtemp(prefix="ckptfs-data-", dir=os.environ.get("CKPTFS_TEST_TMP"))
    write_safetensors(os.path.join(DATA, "model.safetensors"), model_tensors(210), seed=1)
    random_file(os.path.join(DATA, "blob.bin"), 9 * (1 << 20) + 12345, seed=2)
    with open(os.path.join(DATA, "config.json"), "w") as f:
        json.dump({"architectures": ["TestForCausalLM"], "hidden_size": 1024}, f)


def tearDownModule():
    shutil.rmtree(DATA, ignore_errors=True)


@requires_fuse
class RoundTrip(MountTest):
    def test_cp_remount_pread_mmap(self):
        m = self.mount()
        ck = m.path("sampler", "step-0001")
        os.mkdir(ck)
        subprocess.run(["cp", os.path.join(DATA, "model.safetensors"),
                        os.path.join(DATA, "blob.bin"), os.path.join(DATA, "config.json"),
                        ck], check=True)
        want = sha256_tree(DATA)
        self.assertGreaterEqual(os.path.getsize(os.path.join(ck, "model.safetensors")),
                                200 * (1 << 20))
        self.assertEqual(sha256_tree(ck), want)
        self.assertEqual(sorted(os.listdir(ck)), sorted(want))
        raw = sum(os.path.getsize(os.path.join(DATA, n)) for n in want)
        stored = self.store_bytes()
        self.assertLess(stored, raw, "the store should be smaller than the raw files")
        m.stop()

        m = self.mount("mnt2")
        ck = m.path("sampler", "step-0001")
        self.assertEqual(sha256_tree(ck), want)
        # Random-offset reads, including chunk edges and the file end.
        src = os.path.join(DATA, "model.safetensors")
        size = os.path.getsize(src)
        rng = random.Random(7)
        offs = [0, 4 << 20, (4 << 20) - 1, size - 1, size - 100]
        offs += [rng.randrange(size) for _ in range(200)]
        with open(src, "rb") as a, open(os.path.join(ck, "model.safetensors"), "rb") as b:
            for off in offs:
                n = rng.choice([1, 7, 4096, 100000, 5 << 20])
                self.assertEqual(os.pread(a.fileno(), n, off), os.pread(b.fileno(), n, off),
                                 "pread at %d len %d" % (off, n))
            mm = mmap.mmap(b.fileno(), 0, prot=mmap.PROT_READ)
            for off in offs[:50]:
                self.assertEqual(mm[off:off + 3000], os.pread(a.fileno(), 3000, off))
            mm.close()
        st = os.stat(os.path.join(ck, "model.safetensors"))
        self.assertEqual(st.st_size, size)
        m.stop()

    def test_own_writes_visible_other_mount_sees_committed_only(self):
        a = self.mount("a")
        b = self.mount("b")
        os.mkdir(a.path("sampler", "s1"))
        p = a.path("sampler", "s1", "w.bin")
        with open(p, "wb") as f:
            f.write(b"x" * 5000)
            f.flush()
            # Same mount: sees its own writes while the file is open.
            with open(p, "rb") as r:
                self.assertEqual(r.read(), b"x" * 5000)
            time.sleep(1.5)
            self.assertFalse(os.path.exists(b.path("sampler", "s1", "w.bin")))
        time.sleep(1.5)
        with open(b.path("sampler", "s1", "w.bin"), "rb") as r:
            self.assertEqual(r.read(), b"x" * 5000)
        a.stop()
        b.stop()


@requires_fuse
class FileOps(MountTest):
    def test_nested_truncate_rename_unlink_rmr(self):
        m = self.mount()
        ck = m.path("state", "run-1")
        os.mkdir(ck)
        os.makedirs(os.path.join(ck, "optim", "rank0"))
        p = os.path.join(ck, "optim", "rank0", "shard.pt")
        data = os.urandom(3 * (1 << 20) + 17)
        with open(p, "wb") as f:
            f.write(data)
        os.truncate(p, 1000)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), data[:1000])
        os.truncate(p, 5000)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), data[:1000] + b"\0" * 4000)
        with open(p, "r+b") as f:
            f.truncate(10)
        self.assertEqual(os.path.getsize(p), 10)
        q = os.path.join(ck, "optim", "rank0", "renamed.pt")
        os.rename(p, q)
        self.assertFalse(os.path.exists(p))
        with open(q, "rb") as f:
            self.assertEqual(f.read(), data[:10])
        os.rename(os.path.join(ck, "optim"), os.path.join(ck, "opt2"))
        self.assertEqual(os.listdir(ck), ["opt2"])
        with open(os.path.join(ck, "opt2", "rank0", "renamed.pt"), "rb") as f:
            self.assertEqual(f.read(), data[:10])
        os.mkdir(os.path.join(ck, "empty"))
        self.assertTrue(os.path.isdir(os.path.join(ck, "empty")))
        self.assertErrno(errno.ENOTEMPTY, os.rmdir, ck)
        os.unlink(os.path.join(ck, "opt2", "rank0", "renamed.pt"))
        # Folders made with mkdir stay (empty) after their last file goes.
        self.assertEqual(os.listdir(os.path.join(ck, "opt2", "rank0")), [])
        self.assertErrno(errno.ENOTEMPTY, os.rmdir, os.path.join(ck, "opt2"))
        os.rmdir(os.path.join(ck, "opt2", "rank0"))
        os.rmdir(os.path.join(ck, "opt2"))
        with open(os.path.join(ck, "a"), "wb") as f:
            f.write(b"a")
        shutil.rmtree(ck)
        self.assertEqual(os.listdir(m.path("state")), [])
        m.stop()
        # The empty checkpoint dir and removals survive a remount too.
        m = self.mount("mnt2")
        self.assertEqual(os.listdir(m.path("state")), [])
        m.stop()

    def test_out_of_order_writes_and_overwrite(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "x"))
        p = m.path("sampler", "x", "sparse.bin")
        want = bytearray(10 * (1 << 20) + 3)
        rng = random.Random(3)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        for _ in range(60):
            off = rng.randrange(len(want) - 70000)
            blob = rng.randbytes(rng.randrange(1, 70000))
            os.pwrite(fd, blob, off)
            want[off:off + len(blob)] = blob
        os.pwrite(fd, b"end", len(want) - 3)
        want[-3:] = b"end"
        os.close(fd)
        with open(p, "rb") as f:
            self.assertEqual(f.read(), bytes(want))
        # Modify a committed file in place.
        with open(p, "r+b") as f:
            f.seek(5 << 20)
            f.write(b"HELLO")
        want[5 << 20:(5 << 20) + 5] = b"HELLO"
        m.stop()
        m = self.mount("mnt2")
        with open(m.path("sampler", "x", "sparse.bin"), "rb") as f:
            self.assertEqual(f.read(), bytes(want))
        m.stop()

    def test_two_writers_at_once(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "par"))
        files = {}
        for i in range(2):
            files[i] = os.path.join(self.src, "f%d" % i)
            random_file(files[i], 30 * (1 << 20) + i, seed=10 + i)
        procs = [subprocess.Popen(["cp", files[i], m.path("sampler", "par", "f%d" % i)])
                 for i in range(2)]
        for p in procs:
            self.assertEqual(p.wait(), 0)
        for i in range(2):
            self.assertEqual(sha256_file(m.path("sampler", "par", "f%d" % i)),
                             sha256_file(files[i]))
        m.stop()

    def test_copy_commits_each_file_once(self):
        """shutil.copy (and cp) chmod the file they just closed to the mode it
        has; when that arrives before the kernel's RELEASE, it must not commit
        the file a second time (it did, for about 1 copy in 5 under ASan)."""
        m = self.mount()
        os.mkdir(m.path("sampler", "c"))
        src = os.path.join(self.tmp, "src.bin")
        random_file(src, 200000, 3)
        for i in range(40):
            shutil.copy(src, m.path("sampler", "c", "f%d" % i))
        m.stop()
        commits = [l for l in m.log().splitlines() if "committed c/f" in l]
        self.assertEqual(len(commits), 40, "\n".join(commits))

    def test_statfs_and_tree(self):
        m = self.mount()
        self.assertEqual(sorted(os.listdir(m.mnt)),
                         ["checkpoints.jsonl", "deployments", "jobs", "models", "sampler", "state"])
        sv = os.statvfs(m.mnt)
        self.assertGreater(sv.f_blocks, 0)
        self.assertEqual(os.listdir(m.path("jobs")), ["default"])
        self.assertEqual(sorted(os.listdir(m.path("jobs", "default"))), ["sampler", "state"])
        m.stop()


@requires_fuse
class Errors(MountTest):
    def test_bad_names_and_refusals(self):
        m = self.mount()
        self.assertErrno(errno.ENAMETOOLONG, os.mkdir, m.path("sampler", "x" * 256))
        os.mkdir(m.path("sampler", "ok"))
        self.assertErrno(errno.EEXIST, os.mkdir, m.path("sampler", "ok"))
        self.assertErrno(errno.ENAMETOOLONG, open, m.path("sampler", "ok", "y" * 256), "wb")
        self.assertErrno(errno.EPERM, open, m.path("stray.txt"), "wb")
        self.assertErrno(errno.ENOENT, open, m.path("sampler", "nope", "f"), "wb")
        self.assertErrno(errno.EPERM, os.mkdir, m.path("stray"))
        self.assertErrno(errno.EACCES, open, m.path("checkpoints.jsonl"), "wb")
        m.stop()

    def test_other_job_is_read_only(self):
        other = self.mount("other", job="job-b")
        os.mkdir(other.path("sampler", "s1"))
        with open(other.path("sampler", "s1", "w"), "wb") as f:
            f.write(b"from job b")
        other.stop()
        m = self.mount()
        self.assertEqual(sorted(os.listdir(m.path("jobs"))), ["default", "job-b"])
        with open(m.path("jobs", "job-b", "sampler", "s1", "w"), "rb") as f:
            self.assertEqual(f.read(), b"from job b")
        self.assertErrno(errno.EROFS, open, m.path("jobs", "job-b", "sampler", "s1", "w"), "wb")
        self.assertErrno(errno.EROFS, os.mkdir, m.path("jobs", "job-b", "sampler", "s2"))
        self.assertErrno(errno.EROFS, os.unlink, m.path("jobs", "job-b", "sampler", "s1", "w"))
        self.assertErrno(errno.EROFS, os.rmdir, m.path("jobs", "job-b", "sampler", "s1"))
        m.stop()

    def test_store_on_a_read_only_volume_mounts_read_only(self):
        if self.s3 or os.geteuid() != 0:
            self.skipTest("a read-only bind of a local store needs root")
        m = self.mount()
        os.mkdir(m.path("sampler", "s1"))
        src = os.path.join(self.src, "w.bin")
        random_file(src, 5 << 20, seed=11)
        shutil.copy(src, m.path("sampler", "s1", "w.bin"))
        m.stop()
        ro = os.path.join(self.tmp, "ro-store")
        os.makedirs(ro)
        subprocess.run(["mount", "--bind", self.store, ro], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", ro], check=True)
            r = Mount(ro, os.path.join(self.tmp, "romnt"), os.path.join(self.tmp, "romnt.log"),
                      args=["-o", "ro"])
            self.mounts.append(r)
            r.start()
            self.assertEqual(sha256_file(r.path("sampler", "s1", "w.bin")), sha256_file(src))
            self.assertErrno(errno.EROFS, os.mkdir, r.path("sampler", "s2"))
            r.stop()
        finally:
            subprocess.run(["umount", "-l", ro], check=False)

    def test_corrupt_chunk_gives_eio_and_fsck_names_it(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "c"))
        src = os.path.join(self.src, "r.bin")
        random_file(src, 9 << 20, seed=5)
        shutil.copy(src, m.path("sampler", "c", "r.bin"))
        m.stop()
        self.assertEqual(self.run_ckptfs("fsck", self.store).returncode, 0)
        chunks = self.chunk_keys()
        self.assertEqual(len(chunks), 3)
        victim = chunks[0]
        self.corrupt_object(victim, 100)
        m = self.mount("mnt2")
        good = 0
        with open(m.path("sampler", "c", "r.bin"), "rb") as f, open(src, "rb") as s:
            for i in range(3):
                try:
                    got = os.pread(f.fileno(), 4 << 20, i << 22)
                    self.assertEqual(got, os.pread(s.fileno(), 4 << 20, i << 22))
                    good += 1
                except OSError as e:
                    self.assertEqual(e.errno, errno.EIO)
        self.assertEqual(good, 2)
        m.stop()
        self.assertIn("checksum mismatch", m.log())
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.basename(victim), r.stdout)


@requires_fuse
class Crash(MountTest):
    def test_kill9_during_cp(self):
        m = self.mount()
        os.mkdir(m.path("sampler", "k"))
        shutil.copy(os.path.join(DATA, "config.json"), m.path("sampler", "k", "config.json"))
        shutil.copy(os.path.join(DATA, "blob.bin"), m.path("sampler", "k", "blob.bin"))
        # Feed a large file slowly so the kill lands mid-copy.
        fd = os.open(m.path("sampler", "k", "big.bin"), os.O_CREAT | os.O_WRONLY, 0o644)
        for _ in range(12):
            os.write(fd, os.urandom(1 << 20))
        m.kill9()
        try:
            os.close(fd)
        except OSError:
            pass
        m = self.mount("mnt2")
        ck = m.path("sampler", "k")
        self.assertEqual(sorted(os.listdir(ck)), ["blob.bin", "config.json"])
        self.assertEqual(sha256_file(os.path.join(ck, "blob.bin")),
                         sha256_file(os.path.join(DATA, "blob.bin")))
        m.stop()
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


@requires_fuse
class Metadata(MountTest):
    def test_xattrs_and_jsonl(self):
        m = self.mount()
        ck = m.path("sampler", "step-0001")
        os.mkdir(ck)
        shutil.copy(os.path.join(DATA, "blob.bin"), os.path.join(ck, "blob.bin"))
        x = lambda n: os.getxattr(ck, "user.ckptfs." + n).decode()
        self.assertEqual(x("kind"), "base")
        self.assertRegex(x("snapshot"), r"^step-0001-[0-9a-f]{8}$")
        self.assertEqual(int(x("logical_bytes")), os.path.getsize(os.path.join(DATA, "blob.bin")))
        self.assertGreater(int(x("stored_bytes")), 0)
        self.assertEqual(x("promotable"), "true")
        os.setxattr(ck, "user.ckptfs.ttl", b"3600")
        self.assertEqual(x("ttl"), "3600")
        self.assertIn("user.ckptfs.expires_at", os.listxattr(ck))
        os.removexattr(ck, "user.ckptfs.ttl")
        self.assertNotIn("user.ckptfs.ttl", os.listxattr(ck))
        os.mkdir(m.path("state", "st-1"))
        self.assertEqual(os.getxattr(m.path("state", "st-1"), "user.ckptfs.kind"), b"state")
        with open(m.path("checkpoints.jsonl")) as f:
            lines = [json.loads(l) for l in f.read().splitlines()]
        self.assertEqual(sorted(l["name"] for l in lines), ["st-1", "step-0001"])
        one = [l for l in lines if l["name"] == "step-0001"][0]
        self.assertEqual(one["kind"], "base")
        self.assertEqual(one["snapshot"], x("snapshot"))
        self.assertEqual(one["path"], "sampler/step-0001")
        m.stop()


class Cli(MountTest):
    def test_version_help_and_errors(self):
        r = self.run_ckptfs("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^ckptfs \d+\.\d+")
        self.assertIn("fsck", self.run_ckptfs("--help").stdout)
        r = self.run_ckptfs("fsck", "/nonexistent/store")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/store", r.stderr)
        r = self.run_ckptfs("mount", "-f", self.store, "/nonexistent/mnt")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/mnt", r.stderr)

    @requires_fuse
    def test_busy_mountpoint_and_stat(self):
        m = self.mount()
        r = self.run_ckptfs("mount", "-f", self.store, m.mnt)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("busy", r.stderr)
        os.mkdir(m.path("sampler", "a"))
        with open(m.path("sampler", "a", "f"), "wb") as f:
            f.write(b"z" * 100000)
        m.stop()
        r = self.run_ckptfs("stat", self.store)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("job default", r.stdout)
        self.assertIn("logical 100000", r.stdout)


@requires_fuse
class FullDisk(MountTest):
    def test_enospc_fails_the_write_and_keeps_what_was_committed(self):
        if self.s3 or os.geteuid() != 0:
            self.skipTest("needs a small tmpfs for the store (root, local store)")
        small = os.path.join(self.tmp, "small")
        os.mkdir(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", small], check=True)
        try:
            self.store = os.path.join(small, "store")
            m = self.mount()
            os.mkdir(m.path("sampler", "s"))
            random_file(os.path.join(self.src, "ok"), 4 << 20, seed=1)
            shutil.copy(os.path.join(self.src, "ok"), m.path("sampler", "s", "ok"))
            random_file(os.path.join(self.src, "big"), 40 << 20, seed=2)
            r = subprocess.run(["cp", os.path.join(self.src, "big"), m.path("sampler", "s", "big")],
                               capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0, "cp must fail when the store is full")
            self.assertIn("No space left", r.stderr)
            self.assertEqual(sorted(os.listdir(m.path("sampler", "s"))), ["ok"])
            self.assertEqual(sha256_file(m.path("sampler", "s", "ok")),
                             sha256_file(os.path.join(self.src, "ok")))
            m.stop()
            self.assertIn("No space left", m.log())
            # Space freed (gc of the orphaned chunks): writing works again.
            r = self.run_ckptfs("gc", "--grace", "0", self.store)
            self.assertEqual(r.returncode, 0, r.stderr)
            m = self.mount("mnt2")
            shutil.copy(os.path.join(self.src, "ok"), m.path("sampler", "s", "ok2"))
            self.assertEqual(sha256_file(m.path("sampler", "s", "ok2")),
                             sha256_file(os.path.join(self.src, "ok")))
            m.stop()
        finally:
            for mm in self.mounts:
                mm.cleanup()
            subprocess.run(["umount", "-l", small], check=False)


@requires_fuse
class Daemon(MountTest):
    def test_sigterm_and_sigint_unmount_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            m = self.mount("m%d" % sig)
            os.mkdir(m.path("sampler", "s%d" % sig))
            m.proc.send_signal(sig)
            self.assertEqual(m.proc.wait(timeout=20), 0)
            m.proc = None
            self.assertFalse(os.path.ismount(m.mnt))

    def wait_daemon_gone(self, mnt):
        """A daemonized ckptfs must exit once unmounted."""
        deadline = time.time() + 15
        while time.time() < deadline:
            r = subprocess.run(["pgrep", "-f", mnt], capture_output=True, text=True)
            if not r.stdout.strip():
                return
            time.sleep(0.1)
        self.fail("the daemon for %s did not exit after unmount" % mnt)

    def test_fstab_helper_forms(self):
        if self.s3:
            self.skipTest("mount helper forms are backend independent")
        # mount.ckptfs STORE MNT -o opts (what fstab runs), daemonized.
        helper = os.path.join(self.tmp, "mount.ckptfs")
        os.symlink(os.path.abspath(os.environ.get("CKPTFS_BIN", "ckptfs")), helper)
        mnt = os.path.join(self.tmp, "fstab")
        os.mkdir(mnt)
        r = subprocess.run([helper, self.store, mnt, "-o", "job=from-fstab,list_ttl=0.5"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(os.path.ismount(mnt))
            self.assertEqual(os.listdir(os.path.join(mnt, "jobs")), ["from-fstab"])
            # The daemonized process writes and reads (its worker threads
            # must exist after the fork).
            os.mkdir(os.path.join(mnt, "sampler", "s"))
            data = os.urandom(9 << 20)
            with open(os.path.join(mnt, "sampler", "s", "f"), "wb") as f:
                f.write(data)
            with open(os.path.join(mnt, "sampler", "s", "f"), "rb") as f:
                self.assertEqual(f.read(), data)
        finally:
            subprocess.run(["fusermount3", "-u", mnt], check=True)
        self.wait_daemon_gone(mnt)
        # mount -t fuse.ckptfs runs `ckptfs STORE MNT -o ...` from the PATH
        # of mount(8): only when we may put ckptfs there (root, no other one).
        link = "/usr/local/bin/ckptfs"
        if os.geteuid() != 0 or os.path.lexists(link) or not shutil.which("mount"):
            return
        os.symlink(os.path.abspath(os.environ.get("CKPTFS_BIN", "ckptfs")), link)
        try:
            r = subprocess.run(["mount", "-t", "fuse.ckptfs", "-o", "job=via-mount",
                                self.store, mnt], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("via-mount", os.listdir(os.path.join(mnt, "jobs")))
            subprocess.run(["fusermount3", "-u", mnt], check=True)
            self.wait_daemon_gone(mnt)
        finally:
            os.unlink(link)


if __name__ == "__main__":
    unittest.main(verbosity=2)
