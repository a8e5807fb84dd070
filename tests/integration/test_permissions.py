"""Issue 9 item 2: with `-o allow_other` another local user is held to the
modes and owners getattr reports (default_permissions). The mount runs as
root; every attack runs as user `nobody` in its own process (setpriv), and
each must fail with EACCES or EPERM while reading a 0644 file still works."""
import errno
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import MountTest as _MountTest, requires_fuse

NOBODY = 65534

# Runs as nobody: performs one operation, prints {"ok": ...} or {"errno": n}.
ATTACK = r"""
import json, os, shutil, sys
op, a = sys.argv[1], sys.argv[2:]
try:
    if op == "read":
        with open(a[0], "rb") as f:
            out = f.read().decode()
    elif op == "append":
        with open(a[0], "ab") as f:
            f.write(b"pwned")
        out = None
    elif op == "write_new":
        fd = os.open(a[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, a[1].encode())
        os.close(fd)
        out = None
    elif op == "overwrite":
        fd = os.open(a[0], os.O_WRONLY | os.O_TRUNC)
        os.write(fd, a[1].encode())
        os.close(fd)
        out = None
    elif op == "chmod":
        os.chmod(a[0], 0o777)
        out = None
    elif op == "utime":
        os.utime(a[0], (1, 1))
        out = None
    elif op == "truncate":
        os.truncate(a[0], 0)
        out = None
    elif op == "unlink":
        os.unlink(a[0])
        out = None
    elif op == "rmtree":
        shutil.rmtree(a[0])
        out = None
    elif op == "rmdir":
        os.rmdir(a[0])
        out = None
    elif op == "mkdir":
        os.mkdir(a[0])
        out = None
    elif op == "rename":
        os.rename(a[0], a[1])
        out = None
    elif op == "symlink":
        os.symlink(a[0], a[1])
        out = None
    elif op == "setxattr":
        os.setxattr(a[0], a[1], a[2].encode())
        out = None
    elif op == "listdir":
        out = sorted(os.listdir(a[0]))
    else:
        raise SystemExit("unknown op " + op)
    print(json.dumps({"ok": out}))
except OSError as e:
    print(json.dumps({"errno": e.errno}))
"""


def setpriv_usable():
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


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


@requires_fuse
@unittest.skipUnless(setpriv_usable(), "needs root and setpriv to act as another user")
class AllowOther(MountTest):
    def setUp(self):
        super().setUp()
        # The mount point must be reachable by nobody; the store need not be.
        os.chmod(self.tmp, 0o755)
        self.m = self.mount(args=["-o", "allow_other"])
        m = self.m
        os.mkdir(m.path("sampler", "s1"))
        with open(m.path("sampler", "s1", "secret.bin"), "wb") as f:
            f.write(b"root only")
        os.chmod(m.path("sampler", "s1", "secret.bin"), 0o600)
        with open(m.path("sampler", "s1", "config.json"), "w") as f:
            f.write('{"public": true}')
        os.chmod(m.path("sampler", "s1", "config.json"), 0o644)
        os.mkdir(m.path("sampler", "s1", "sub"))
        with open(m.path("sampler", "s1", "sub", "w.bin"), "wb") as f:
            f.write(b"x" * 1000)
        with open(m.path("deployments", "prod"), "w") as f:
            json.dump({"protocol": "http", "url": "http://127.0.0.1:9/hook",
                       "model_path": "/m/{checkpoint}"}, f)
        os.symlink("../sampler/s1", m.path("models", "pinned-1"))

    def as_nobody(self, op, *args):
        r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                            "--clear-groups", sys.executable, "-c", ATTACK, op] + list(args),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def assertRefused(self, op, *args, errs=(errno.EACCES, errno.EPERM)):
        got = self.as_nobody(op, *args)
        self.assertIn("errno", got, "%s %s as nobody succeeded: %s" % (op, args, got))
        self.assertIn(got["errno"], errs, "%s %s: %s" % (op, args, errno.errorcode[got["errno"]]))

    def test_reads_what_modes_allow(self):
        m = self.m
        self.assertEqual(self.as_nobody("read", m.path("sampler", "s1", "config.json")),
                         {"ok": '{"public": true}'})
        self.assertEqual(self.as_nobody("listdir", m.path("sampler", "s1")),
                         {"ok": ["config.json", "secret.bin", "sub"]})
        self.assertEqual(self.as_nobody("read", m.path("models", "pinned-1", "config.json")),
                         {"ok": '{"public": true}'})

    def test_every_attack_is_refused(self):
        m = self.m
        s1 = m.path("sampler", "s1")
        attacks = [
            ("read", os.path.join(s1, "secret.bin")),
            ("append", os.path.join(s1, "secret.bin")),
            ("append", os.path.join(s1, "config.json")),
            ("truncate", os.path.join(s1, "config.json")),
            ("chmod", os.path.join(s1, "secret.bin")),
            ("chmod", s1),
            ("utime", os.path.join(s1, "config.json")),
            ("utime", s1),
            ("unlink", os.path.join(s1, "config.json")),
            ("write_new", os.path.join(s1, "evil.bin"), "evil"),
            ("mkdir", os.path.join(s1, "evil-dir")),
            ("rename", os.path.join(s1, "config.json"), os.path.join(s1, "moved.json")),
            ("rmtree", s1),
            ("rmdir", os.path.join(s1, "sub")),
            ("mkdir", m.path("sampler", "evil")),
            ("setxattr", s1, "user.ckptfs.ttl", "1"),
            ("write_new", m.path("deployments", "evil"),
             '{"protocol": "http", "url": "http://127.0.0.1:9/x", "model_path": "/x"}'),
            ("overwrite", m.path("deployments", "prod"),
             '{"protocol": "http", "url": "http://127.0.0.1:9/x", "model_path": "/x"}'),
            ("unlink", m.path("deployments", "prod")),
            ("overwrite", os.path.join(s1, "hotload"), "prod\n"),
            ("symlink", "../sampler/s1", m.path("models", "stolen")),
            ("rmtree", m.path("models", "pinned-1")),
        ]
        for attack in attacks:
            with self.subTest(attack=attack[:2]):
                self.assertRefused(*attack)
        # Nothing changed, as the owner sees it.
        self.assertEqual(sorted(os.listdir(s1)), ["config.json", "secret.bin", "sub"])
        with open(os.path.join(s1, "secret.bin"), "rb") as f:
            self.assertEqual(f.read(), b"root only")
        with open(os.path.join(s1, "config.json")) as f:
            self.assertEqual(f.read(), '{"public": true}')
        self.assertEqual(os.stat(os.path.join(s1, "secret.bin")).st_mode & 0o7777, 0o600)
        self.assertEqual(sorted(os.listdir(m.path("deployments"))), ["prod"])
        self.assertEqual(sorted(os.listdir(m.path("models"))), ["pinned-1"])
        with open(os.path.join(s1, "hotload")) as f:
            self.assertNotIn("prod", f.read())

    def test_owner_modes_are_kept_and_enforced(self):
        """What getattr reports is what the kernel enforces: the owner can
        open a file to others by chmod, and close a directory again."""
        m = self.m
        secret = m.path("sampler", "s1", "secret.bin")
        os.chmod(secret, 0o644)
        self.assertEqual(self.as_nobody("read", secret), {"ok": "root only"})
        os.chmod(m.path("sampler", "s1"), 0o700)
        self.assertRefused("read", m.path("sampler", "s1", "config.json"))
        self.assertRefused("listdir", m.path("sampler", "s1"))


@requires_fuse
class OwnerStillWorks(MountTest):
    """The modes reported for a writable mount let its owner do everything
    the operations allow (the owner here is root, who bypasses modes, so
    this checks the modes themselves)."""

    def test_reported_modes(self):
        m = self.mount(args=["-o", "allow_other"])
        os.mkdir(m.path("sampler", "s1"))
        with open(m.path("sampler", "s1", "f"), "w") as f:
            f.write("x")
        os.symlink("../sampler/s1", m.path("models", "m1"))
        mode = lambda *p: os.stat(m.path(*p)).st_mode & 0o7777
        self.assertEqual(mode("sampler"), 0o755)
        self.assertEqual(mode("sampler", "s1"), 0o755)
        self.assertEqual(mode("deployments"), 0o755)
        # models/ and a model directory: writable by the owner only, since
        # `ln -s` there promotes and `rm -r` unpromotes.
        self.assertEqual(mode("models"), 0o755)
        self.assertEqual(mode("models", "m1"), 0o755)
        self.assertEqual(mode("models", "m1", "f") & 0o222, 0)
        self.assertEqual(mode("sampler", "s1", "hotload"), 0o644)
        self.assertEqual(mode("checkpoints.jsonl"), 0o444)
        self.assertEqual(mode("jobs"), 0o555)
        for p in ("sampler", ("sampler", "s1"), ("sampler", "s1", "f"), "deployments"):
            p = (p,) if isinstance(p, str) else p
            st = os.stat(m.path(*p))
            self.assertEqual((st.st_uid, st.st_gid), (os.getuid(), os.getgid()))
        with open("/proc/self/mountinfo") as f:
            line = [l for l in f if " %s " % m.mnt in l][0]
        self.assertIn("default_permissions", line)
        self.assertIn("allow_other", line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
