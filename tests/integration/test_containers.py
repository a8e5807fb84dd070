"""Issue 10: mounting in containers.

Host tests (no container runtime): mounting over an existing mount point,
`--name value` options, `mount.fuse3 -o drop_privileges` (/dev/fd/N),
readiness of a background mount and the systemd notify protocol, SIGTERM
during a multi-GiB cp.

Container tests (podman, as root; SKIP_CONTAINERS=1 skips them): the
project's Dockerfile builds on a base image made from Debian packages
(scripts/container-base.sh, cached in podman's storage); a base and a delta
written in one container read back exact in a read-only container mount;
a second container sees a mount through an rshared bind; an unprivileged
container (--cap-drop ALL, uid 65534, no /dev/fuse) serves a descriptor
passed by `ckptfs fd-mount`; the daemon as PID 1 (zombies, podman stop);
the recipes as shipped in examples/: compose under podman-compose, the three
Kubernetes manifests under `podman kube play`, the systemd units (and the
fstab line) under a real systemd running as PID 1 of a container. The
Kubernetes and systemd tests use the test S3 server.
"""
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (CKPTFS, Mount, MountTest, perturb_safetensors, random_file,
                            requires_fuse, sha256_file, write_safetensors)

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE = "localhost/ckptfs:it"


def top_mount_type(path):
    """fstype of the topmost mount at @path, "" if none."""
    path = os.path.realpath(path)
    found = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = left.split()[4].replace("\\040", " ")
            if mp == path:
                found = right.split()[0]
    return found


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))


def unmount_background(testcase, mnt):
    """fusermount3 -u a background mount and wait until it is gone."""
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    wait_for(lambda: top_mount_type(mnt) != "fuse.ckptfs", 30, "unmount of " + mnt)


@requires_fuse
class HostMounts(MountTest):
    def tearDown(self):
        for p in getattr(self, "cleanup_mounts", []):
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)
        super().tearDown()

    def test_mount_over_a_bind_mount_and_refuse_a_live_ckptfs_mount(self):
        """Item 1: a volume target (a bind mount) is a valid mount point; a live
        ckptfs mount is not."""
        if os.geteuid() != 0:
            self.skipTest("bind mounts need root")
        mnt = os.path.join(self.tmp, "vol")
        os.makedirs(mnt)
        subprocess.run(["mount", "--bind", mnt, mnt], check=True)
        self.cleanup_mounts = [mnt]
        self.assertNotEqual(top_mount_type(mnt), "")      # a mount point already
        r = self.run_ckptfs("mount", self.store, mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.cleanup_mounts.insert(0, mnt)
        self.assertEqual(top_mount_type(mnt), "fuse.ckptfs")
        os.mkdir(os.path.join(mnt, "sampler", "s0"))
        with open(os.path.join(mnt, "sampler", "s0", "f.bin"), "wb") as f:
            f.write(b"x" * 100000)
        with open(os.path.join(mnt, "sampler", "s0", "f.bin"), "rb") as f:
            self.assertEqual(f.read(), b"x" * 100000)
        r = self.run_ckptfs("mount", self.store, mnt)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already a live ckptfs mount", r.stderr)
        unmount_background(self, mnt)
        self.assertNotEqual(top_mount_type(mnt), "fuse.ckptfs")

    def test_long_options_take_their_value_either_way(self):
        """Item 8: --job rl-7 and --job=rl-7; usage names the program."""
        r = self.run_ckptfs("mount", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: ckptfs mount "), r.stdout[:80])
        mnt = os.path.join(self.tmp, "m")
        os.makedirs(mnt)
        r = self.run_ckptfs("mount", "--job", "rl-7", "--gc-interval", "0", self.store, mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertIn("rl-7", os.listdir(os.path.join(mnt, "jobs")))
        finally:
            unmount_background(self, mnt)
        r = self.run_ckptfs("mount", "--job=rl-8", self.store, mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertIn("rl-8", os.listdir(os.path.join(mnt, "jobs")))
        finally:
            unmount_background(self, mnt)

    def test_mount_fuse3_drop_privileges(self):
        """Item 2: mount.fuse3 opens /dev/fuse, mounts, and runs ckptfs on
        /dev/fd/N without capabilities."""
        if os.geteuid() != 0 or not shutil.which("mount.fuse3"):
            self.skipTest("needs root and mount.fuse3")
        mnt = os.path.join(self.tmp, "dp")
        os.makedirs(mnt)
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(CKPTFS)) + ":" +
                   os.environ.get("PATH", ""))
        if os.path.basename(CKPTFS) != "ckptfs":
            self.skipTest("CKPTFS_BIN must be named ckptfs for mount.fuse3")
        r = subprocess.run(["mount.fuse3", self.store, mnt, "-t", "ckptfs",
                            "-o", "drop_privileges"], env=env, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            # mount.fuse3 mounts before it runs ckptfs: leave no dead mount.
            subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertEqual(top_mount_type(mnt), "fuse.ckptfs")
            os.mkdir(os.path.join(mnt, "sampler", "d0"))
            random_file(os.path.join(self.src, "a.bin"), 3 << 20, seed=5)
            shutil.copyfile(os.path.join(self.src, "a.bin"), os.path.join(mnt, "sampler", "d0", "a.bin"))
            self.assertEqual(sha256_file(os.path.join(mnt, "sampler", "d0", "a.bin")),
                             sha256_file(os.path.join(self.src, "a.bin")))
        finally:
            unmount_background(self, mnt)

    def test_env_file_gives_s3_credentials_outside_the_command_line(self):
        """Item 6 (fstab): S3 credentials from -o env-file=FILE, never in ps."""
        from ckptfs_testlib import S3
        if not S3.available():
            self.skipTest("no S3 server (set CKPTFS_TEST_S3_*)")
        s3 = S3()
        bucket = "ckptfs-it-envfile-%d" % os.getpid()
        s3.make_bucket(bucket)
        env_file = os.path.join(self.tmp, "s3.env")
        with open(env_file, "w") as f:
            f.write("# ckptfs S3 credentials\n")
            for k, v in s3.env().items():
                f.write('%s="%s"\n' % (k, v))
        os.chmod(env_file, 0o644)
        mnt = os.path.join(self.tmp, "m")
        os.makedirs(mnt)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        cmd = [CKPTFS, "mount", "s3://%s/p" % bucket, mnt, "-o",
               "env-file=%s,cache-dir=%s" % (env_file, os.path.join(self.tmp, "cache"))]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1)
        self.assertIn("readable by others", r.stderr)
        os.chmod(env_file, 0o600)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            os.mkdir(os.path.join(mnt, "sampler", "e0"))
            with open(os.path.join(mnt, "sampler", "e0", "f"), "wb") as f:
                f.write(b"s3 via env file")
            self.assertTrue(s3.objects(bucket, "p/"))
            # ckptfs's own command lines (other processes on a shared
            # machine, e.g. curl --user in other tests, may show the secret).
            ps = [l for l in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                            text=True).stdout.splitlines()
                  if l.startswith(CKPTFS + " ")]
            self.assertTrue(ps)
            self.assertIn("env-file=", "\n".join(ps))
            self.assertNotIn(s3.secret, "\n".join(ps))
        finally:
            unmount_background(self, mnt)


@requires_fuse
class Readiness(MountTest):
    def test_unreachable_store_fails_with_the_reason(self):
        """Test 5: a background mount whose store is unreachable exits
        non-zero and says why, and leaves nothing mounted."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()        # nothing listens there now
        mnt = os.path.join(self.tmp, "m")
        os.makedirs(mnt)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
                   AWS_ENDPOINT_URL="http://127.0.0.1:%d" % port, CKPTFS_S3_TIMEOUT="2")
        t0 = time.time()
        r = subprocess.run([CKPTFS, "mount", "s3://ckptfs-unreachable/p", mnt], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("127.0.0.1:%d" % port, r.stderr)     # the cause, not "see the log"
        self.assertLess(time.time() - t0, 60)
        self.assertEqual(top_mount_type(mnt), "")

    def test_background_mount_is_serving_when_the_command_returns(self):
        mnt = os.path.join(self.tmp, "m")
        os.makedirs(mnt)
        r = self.run_ckptfs("mount", self.store, mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            # No waiting: it answers now.
            self.assertEqual(top_mount_type(mnt), "fuse.ckptfs")
            self.assertIn("sampler", os.listdir(mnt))
        finally:
            unmount_background(self, mnt)

    def test_notify_socket_gets_ready_then_stopping(self):
        """Test 5: with -f and NOTIFY_SOCKET, READY=1 once serving, STOPPING=1
        on SIGTERM, then exit 0 and a free mount point."""
        path = os.path.join(self.tmp, "notify.sock")
        lis = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        lis.bind(path)
        lis.settimeout(30)
        m = self.mount(env={"NOTIFY_SOCKET": path})
        msgs = [lis.recv(4096).decode()]
        self.assertIn("READY=1", msgs[0])
        self.assertIn("MAINPID=%d" % m.proc.pid, msgs[0])
        self.assertIn("sampler", os.listdir(m.mnt))
        m.proc.send_signal(signal.SIGTERM)
        msgs.append(lis.recv(4096).decode())
        self.assertIn("STOPPING=1", msgs[1])
        self.assertEqual(m.proc.wait(timeout=60), 0, m.log())
        m.proc = None
        m.logf.close()
        self.assertEqual(top_mount_type(m.mnt), "")
        lis.close()


@requires_fuse
class Pid1(MountTest):
    def test_pid1_reaps_orphans(self):
        """As PID 1 (of a PID namespace here, of a container in
        Containers.test_daemon_as_pid1) the daemon reaps the orphans
        reparented to it, and SIGTERM still drains and exits 0."""
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            self.skipTest("needs root, unshare and nsenter")
        mnt = os.path.join(self.tmp, "m")
        os.makedirs(mnt)
        log = open(os.path.join(self.tmp, "pid1.log"), "w")
        p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", CKPTFS, "mount",
                              "-f", self.store, mnt], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: top_mount_type(mnt) == "fuse.ckptfs", 30, "the mount")
            kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                  text=True).stdout.split()
            self.assertEqual(len(kids), 1)
            daemon = kids[0]
            out = subprocess.run(
                ["nsenter", "-t", daemon, "-p", "sh", "-c",
                 "sh -c 'sleep 0.2 &'; sh -c 'sleep 0.2 &'; sleep 1.5; "
                 "for p in /proc/[0-9]*; do cut -d' ' -f1-4 $p/stat 2>/dev/null; done"],
                capture_output=True, text=True, check=True).stdout
            # /proc is the host's: look at the children of our daemon.
            zombies = [l for l in out.splitlines()
                       if l.split()[2] == "Z" and l.split()[3] == daemon]
            self.assertEqual(zombies, [])
            with open("/proc/%s/status" % daemon) as f:
                self.assertIn("NSpid:\t%s\t1\n" % daemon, f.read())
            os.kill(int(daemon), signal.SIGTERM)
            self.assertEqual(p.wait(timeout=60), 0)
        finally:
            if p.poll() is None:
                p.kill()          # --kill-child: the daemon too
                p.wait()
                subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
            log.close()
        self.assertEqual(top_mount_type(mnt), "")


CP_MIB = int(os.environ.get("CKPTFS_SHUTDOWN_CP_MIB", "2048"))


@requires_fuse
class Shutdown(MountTest):
    """Test 6: SIGTERM during a multi-GiB cp."""

    def setUp(self):
        super().setUp()
        self.big = os.path.join(self.src, "big.bin")
        # Random bytes: nothing for the chunk store to deduplicate.
        subprocess.run("head -c %dM /dev/urandom > %s" % (CP_MIB, self.big), shell=True,
                       check=True)
        self.big_sha = sha256_file(self.big)
        random_file(os.path.join(self.src, "small.bin"), 8 << 20, seed=3)
        self.small_sha = sha256_file(os.path.join(self.src, "small.bin"))

    def sigterm_during_cp(self, name, timeout, idle_writer):
        m = self.mount(args=["--shutdown-timeout=%g" % timeout])
        d = m.path("sampler", name)
        os.mkdir(d)
        shutil.copyfile(os.path.join(self.src, "small.bin"), os.path.join(d, "small.bin"))
        cp = subprocess.Popen(["cp", self.big, os.path.join(d, "big.bin")],
                              stderr=subprocess.DEVNULL)
        held = None
        if idle_writer:
            # A writer that never closes: the drain cannot finish. Opened
            # after the fork above, which would otherwise close (flush,
            # commit) a copy of it at exec.
            held = open(os.path.join(d, "held.bin"), "wb")
            held.write(b"h" * 65536)
            held.flush()
        wait_for(lambda: os.path.exists(os.path.join(d, "big.bin")), 30, "cp to start")
        time.sleep(1.0)
        self.assertIsNone(cp.poll(), "cp finished before the signal; raise CKPTFS_SHUTDOWN_CP_MIB")
        m.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = None
        if cp.poll() is None:
            try:
                open(os.path.join(d, "late.bin"), "wb").close()
                refused = 0
            except OSError as e:
                refused = e.errno
            still_running = cp.poll() is None
        rc = m.proc.wait(timeout=timeout + 300)
        cp_rc = cp.wait(timeout=60)
        if held:
            try:
                held.close()
            except OSError:
                pass
        m.proc = None
        m.logf.close()
        log = m.log()
        self.assertEqual(top_mount_type(m.mnt), "", "mount point not free")
        if refused is not None and still_running:
            self.assertEqual(refused, errno.EROFS, "open for writing while draining")
        return rc, cp_rc, log, m

    def check_store(self, name, big_expected):
        m = self.mount(name="check", args=["-o", "ro"])
        d = m.path("sampler", name)
        self.assertEqual(sha256_file(os.path.join(d, "small.bin")), self.small_sha)
        names = os.listdir(d)
        self.assertNotIn("late.bin", names)
        self.assertNotIn("held.bin", names)
        if big_expected == "complete":
            self.assertEqual(sha256_file(os.path.join(d, "big.bin")), self.big_sha)
        elif "big.bin" in names:          # either complete or absent, never torn
            self.assertEqual(sha256_file(os.path.join(d, "big.bin")), self.big_sha)
        m.stop()
        self.mounts.remove(m)

    def test_deadline_abandons_uncommitted_files(self):
        rc, cp_rc, log, _ = self.sigterm_during_cp("a", 1, idle_writer=True)
        self.assertEqual(rc, 3, log)
        self.assertIn("abandoned", log)
        self.assertNotEqual(cp_rc, 0)
        self.check_store("a", "either")

    def test_inflight_cp_finishes_before_exit(self):
        rc, cp_rc, log, _ = self.sigterm_during_cp("b", 600, idle_writer=False)
        self.assertEqual(cp_rc, 0, "cp was cut off:\n" + log)
        self.assertEqual(rc, 0, log)
        self.check_store("b", "complete")


# ---- container runtime tests ----------------------------------------------

SKIP_REASON = None
if os.environ.get("SKIP_CONTAINERS"):
    SKIP_REASON = "SKIP_CONTAINERS is set"
elif os.geteuid() != 0:
    SKIP_REASON = "the container tests need root (rootful podman, /dev/fuse)"
elif not os.path.exists("/dev/fuse"):
    SKIP_REASON = "no /dev/fuse"

_image = {}


def podman_env():
    return dict(os.environ, CONTAINERS_CONF=_image["conf"])


def podman(*args, check=True, timeout=600, **kw):
    r = subprocess.run(["podman"] + list(args), env=podman_env(), capture_output=True,
                       text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("podman %s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                           r.stdout, r.stderr))
    return r


def setUpModule():
    if SKIP_REASON:
        return
    t0 = time.time()
    r = subprocess.run([os.path.join(TOP, "scripts", "container-base.sh")],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        raise AssertionError("container-base.sh failed:\n" + r.stderr)
    _image["conf"] = r.stdout.strip().splitlines()[-1]
    t1 = time.time()
    # The project's Dockerfile, unchanged, on the local base image.
    podman("build", "--format", "docker", "-t", IMAGE, TOP, timeout=1800)
    t2 = time.time()
    size = podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip()
    print("containers: base image %.0f s, ckptfs image build %.0f s, image size %.1f MB"
          % (t1 - t0, t2 - t1, int(size) / 1e6), file=sys.stderr)


PRIV = ["--device", "/dev/fuse", "--cap-add", "SYS_ADMIN",
        "--security-opt", "apparmor=unconfined"]


@unittest.skipIf(SKIP_REASON, SKIP_REASON or "")
class Containers(unittest.TestCase):
    def setUp(self):
        import tempfile
        base = os.environ.get("CKPTFS_TEST_TMP") or None
        self.tmp = tempfile.mkdtemp(prefix="ckptfs-ct-", dir=base)
        self.names = []
        self.host_mounts = []
        self.kube_files = []
        self.secrets = []
        self.src = os.path.join(self.tmp, "src")
        for s in ("s0", "s1"):
            os.makedirs(os.path.join(self.src, s))
        write_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                          [("w", "BF16", (2048, 2048)), ("n", "BF16", (2048,))], seed=1)
        perturb_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                            os.path.join(self.src, "s1", "model.safetensors"), 0.03, seed=2)
        for s in ("s0", "s1"):
            with open(os.path.join(self.src, s, "config.json"), "w") as f:
                f.write('{"step": "%s"}' % s)
        self.want = {s: {n: sha256_file(os.path.join(self.src, s, n))
                         for n in os.listdir(os.path.join(self.src, s))} for s in ("s0", "s1")}
        self.store = os.path.join(self.tmp, "store")
        os.makedirs(self.store)

    def tearDown(self):
        for path in self.kube_files:
            podman("kube", "play", "--down", path, check=False)
        for n in self.secrets:
            podman("secret", "rm", n, check=False)
        for n in reversed(self.names):
            podman("rm", "-f", "-t", "5", n, check=False)
        for p in reversed(self.host_mounts):
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def name(self, role):
        n = "ckptfs-it-%d-%s" % (os.getpid(), role)
        podman("rm", "-f", n, check=False)
        self.names.append(n)
        return n

    def shared_dir(self, name):
        """A host directory that is a shared mount (what rshared needs)."""
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        subprocess.run(["mount", "--bind", d, d], check=True)
        self.host_mounts.append(d)
        subprocess.run(["mount", "--make-rshared", d], check=True)
        return d

    def wait_healthy(self, name, timeout=60):
        def ok():
            st = podman("inspect", name, "--format", "{{.State.Running}}").stdout.strip()
            if st != "true":
                raise AssertionError("%s stopped:\n%s" % (name, podman("logs", name).stderr))
            return podman("healthcheck", "run", name, check=False).returncode == 0
        wait_for(ok, timeout, name + " healthy")

    def stop(self, name, timeout=60):
        podman("stop", "-t", str(timeout), name, timeout=timeout + 60)
        return int(podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout)

    def sha_in(self, name, *paths):
        out = podman("exec", name, "sha256sum", *paths).stdout
        return {os.path.basename(line.split()[1]): line.split()[0] for line in out.splitlines()}

    def test_image_base_and_delta_read_back_from_a_readonly_mount(self):
        """Test 1 (and item 1: the mount point is the volume target itself)."""
        mnt = os.path.join(self.tmp, "mnt")
        os.makedirs(mnt)
        w = self.name("writer")
        t0 = time.time()
        podman("run", "-d", "--name", w, *PRIV, "-v", self.store + ":/store",
               "-v", mnt + ":/mnt/ckptfs", "-v", self.src + ":/src:ro",
               IMAGE, "/store", "/mnt/ckptfs", "--job", "it")
        self.wait_healthy(w)
        print("containers: podman run to healthy %.2f s" % (time.time() - t0), file=sys.stderr)
        for s in ("s0", "s1"):
            podman("exec", w, "sh", "-c", "mkdir /mnt/ckptfs/sampler/%s && "
                   "cp /src/%s/* /mnt/ckptfs/sampler/%s/" % (s, s, s))
        self.assertEqual(self.stop(w), 0, podman("logs", w).stderr)
        st = subprocess.run([CKPTFS, "stat", self.store], capture_output=True, text=True)
        self.assertRegex(st.stdout, r"job it\s+base 1\s+delta 1", st.stdout)

        r = self.name("reader")
        # A read-only mount (-o ro). The store volume itself stays writable:
        # opening a local store checks its format marker with a
        # create-if-absent, which a read-only bind refuses (EROFS).
        podman("run", "-d", "--name", r, *PRIV, "-v", self.store + ":/store",
               IMAGE, "/store", "/mnt/ckptfs", "--job", "it", "-o", "ro")
        self.wait_healthy(r)
        w2 = podman("exec", r, "sh", "-c", "mkdir /mnt/ckptfs/sampler/s9", check=False)
        self.assertNotEqual(w2.returncode, 0)
        self.assertIn("Read-only file system", w2.stderr)
        for s in ("s0", "s1"):
            got = self.sha_in(r, "/mnt/ckptfs/sampler/%s/model.safetensors" % s,
                              "/mnt/ckptfs/sampler/%s/config.json" % s)
            self.assertEqual(got, self.want[s])
        self.assertEqual(self.stop(r), 0)

    def test_daemon_as_pid1(self):
        """The image's ENTRYPOINT makes ckptfs PID 1 of its container:
        orphans reparented to it do not stay zombies; `podman stop`
        (SIGTERM) lets a write in flight finish and commit, then exit 0
        well within the stop timeout; a writer still open at
        --shutdown-timeout is abandoned (no file) and the container's exit
        status is 3."""
        w = self.name("pid1")
        podman("run", "-d", "--name", w, *PRIV, "-v", self.store + ":/store",
               "-v", self.src + ":/src:ro", IMAGE, "/store", "/mnt/ckptfs", "--job", "it")
        self.wait_healthy(w)
        self.assertEqual(podman("exec", w, "cat", "/proc/1/comm").stdout.strip(), "ckptfs")
        podman("exec", w, "sh", "-c", "for i in 1 2 3; do sh -c 'sleep 0.2 &'; done")
        time.sleep(1.5)
        states = podman("exec", w, "sh", "-c",
                        "for p in /proc/[0-9]*; do cut -d' ' -f2,3,4 $p/stat; done").stdout
        self.assertNotIn(" Z ", states)
        # A write in flight when podman stop sends SIGTERM.
        model = "/src/s0/model.safetensors"
        podman("exec", "-d", w, "sh", "-c",
               "mkdir /mnt/ckptfs/sampler/s0 && { head -c 4M %s; sleep 3; tail -c +4194305 %s; }"
               " | dd of=/mnt/ckptfs/sampler/s0/model.safetensors bs=1M iflag=fullblock"
               " status=none >&-" % (model, model))
        wait_for(lambda: podman("exec", w, "test", "-e", "/mnt/ckptfs/sampler/s0/model.safetensors",
                                check=False).returncode == 0, 30, "the writer")
        t0 = time.time()
        self.assertEqual(self.stop(w, timeout=40), 0, podman("logs", w).stderr)
        took = time.time() - t0
        print("containers: podman stop with a write in flight %.1f s" % took, file=sys.stderr)
        self.assertLess(took, 30)
        self.assertIn("1 files open for writing", podman("logs", w).stderr)
        # Abandoned at the deadline: exit status 3, no file.
        w2 = self.name("pid1-abandon")
        podman("run", "-d", "--name", w2, *PRIV, "-v", self.store + ":/store", IMAGE,
               "/store", "/mnt/ckptfs", "--job", "it", "--shutdown-timeout", "1")
        self.wait_healthy(w2)
        # The writers hold one descriptor, never closed before the end: a
        # shell redirection opens the file, dup2()s it and closes the
        # original, and every close commits (doc/SEMANTICS.md), so `cmd >
        # FILE` commits an empty FILE at once. dd with stdout closed opens
        # of= as fd 1 itself.
        podman("exec", "-d", w2, "sh", "-c", "mkdir /mnt/ckptfs/sampler/s1 && "
               "{ echo x; sleep 60; } | dd of=/mnt/ckptfs/sampler/s1/held status=none >&-")
        wait_for(lambda: podman("exec", w2, "test", "-e", "/mnt/ckptfs/sampler/s1/held",
                                check=False).returncode == 0, 30, "the held writer")
        self.assertEqual(self.stop(w2, timeout=20), 3, podman("logs", w2).stderr)
        self.assertIn("abandoned", podman("logs", w2).stderr)
        m = Mount(self.store, os.path.join(self.tmp, "check"), os.path.join(self.tmp, "c.log"),
                  job="it", args=["-o", "ro"])
        m.start()
        try:
            self.assertEqual(sha256_file(m.path("sampler", "s0", "model.safetensors")),
                             self.want["s0"]["model.safetensors"])
            self.assertNotIn("held", os.listdir(m.path("sampler", "s1")))
        finally:
            m.stop()

    def test_second_container_reads_through_an_rshared_bind(self):
        """Test 2."""
        d = self.shared_dir("prop")
        w = self.name("mounter")
        podman("run", "-d", "--name", w, *PRIV, "-e", "CKPTFS_MOUNTPOINT=/mnt/p/c",
               "-v", self.store + ":/store", "-v", d + ":/mnt/p:rshared",
               "-v", self.src + ":/src:ro", "--entrypoint", "sh", IMAGE, "-c",
               "mkdir -p /mnt/p/c && exec ckptfs mount -f /store /mnt/p/c -o allow_other")
        self.wait_healthy(w)
        podman("exec", w, "sh", "-c", "mkdir /mnt/p/c/sampler/s0 && cp /src/s0/* /mnt/p/c/sampler/s0/")
        self.assertEqual(top_mount_type(os.path.join(d, "c")), "fuse.ckptfs")   # the host sees it
        c = self.name("consumer")
        out = podman("run", "--rm", "--name", c, "-v", d + ":/mnt/p:rslave",
                     "--entrypoint", "sha256sum", IMAGE,
                     "/mnt/p/c/sampler/s0/model.safetensors", "/mnt/p/c/sampler/s0/config.json").stdout
        got = {os.path.basename(l.split()[1]): l.split()[0] for l in out.splitlines()}
        self.assertEqual(got, self.want["s0"])
        self.assertEqual(self.stop(w), 0)
        wait_for(lambda: top_mount_type(os.path.join(d, "c")) == "", 30, "host unmount")

    def test_unprivileged_daemon_serves_a_passed_descriptor(self):
        """Test 3: --cap-drop ALL, uid 65534, no /dev/fuse."""
        d = self.shared_dir("prop")
        run = os.path.join(self.tmp, "run")
        os.makedirs(run)
        os.chmod(run, 0o755)
        os.chown(self.store, 65534, 65534)
        h = self.name("helper")
        podman("run", "-d", "--name", h, *PRIV, "-v", d + ":/mnt/p:rshared",
               "-v", run + ":/run/ckptfs", "--entrypoint", "sh", IMAGE, "-c",
               "mkdir -p /mnt/p/c && exec ckptfs fd-mount --socket /run/ckptfs/fuse.sock "
               "--uid 65534 --gid 65534 /mnt/p/c")
        wait_for(lambda: os.path.exists(os.path.join(run, "fuse.sock")), 60, "helper socket")
        u = self.name("daemon")
        podman("run", "-d", "--name", u, "--cap-drop", "ALL", "--user", "65534:65534",
               "--security-opt", "no-new-privileges", "-e", "CKPTFS_MOUNTPOINT=-",
               "-v", run + ":/run/ckptfs", "-v", self.store + ":/store",
               IMAGE, "--fd-socket", "/run/ckptfs/fuse.sock", "/store")
        caps = podman("exec", u, "sh", "-c",
                      "id -u; grep CapEff /proc/1/status; test -e /dev/fuse && echo fuse || echo nofuse").stdout.split()
        self.assertEqual(caps[0], "65534")
        self.assertEqual(caps[2], "0000000000000000")
        self.assertEqual(caps[3], "nofuse")
        wait_for(lambda: os.path.isdir(os.path.join(d, "c", "sampler")), 60, "fd mount serving")
        wl = self.name("workload")
        out = podman("run", "--rm", "--name", wl, "--user", "65534:65534",
                     "-v", d + ":/mnt/p:rslave", "-v", self.src + ":/src:ro",
                     "--entrypoint", "sh", IMAGE, "-c",
                     "mkdir /mnt/p/c/sampler/u0 && cp /src/s0/* /mnt/p/c/sampler/u0/ && "
                     "sha256sum /mnt/p/c/sampler/u0/*").stdout
        got = {os.path.basename(l.split()[1]): l.split()[0] for l in out.splitlines()}
        self.assertEqual(got, self.want["s0"])
        # Stopping the daemon makes the helper unmount and exit.
        self.assertEqual(self.stop(u), 0, podman("logs", u).stderr)
        wait_for(lambda: podman("inspect", h, "--format", "{{.State.Running}}").stdout.strip()
                 == "false", 30, "helper exit")
        self.assertEqual(int(podman("inspect", h, "--format", "{{.State.ExitCode}}").stdout), 0,
                         podman("logs", h).stderr)
        self.assertEqual(top_mount_type(os.path.join(d, "c")), "")
        # What the workload wrote is in the store: a fresh mount reads it.
        mnt = os.path.join(self.tmp, "check")
        os.makedirs(mnt)
        m = Mount(self.store, mnt, os.path.join(self.tmp, "check.log"), args=["-o", "ro"])
        m.start()
        try:
            self.assertEqual(sha256_file(os.path.join(mnt, "sampler", "u0", "model.safetensors")),
                             self.want["s0"]["model.safetensors"])
        finally:
            m.stop()

    def s3_bucket(self, role):
        from ckptfs_testlib import S3
        if not S3.available():
            if os.environ.get("CKPTFS_TEST_REQUIRE_S3"):
                self.fail("CKPTFS_TEST_REQUIRE_S3 is set but no S3 server is configured")
            self.skipTest("no S3 server (set CKPTFS_TEST_S3_*)")
        s3 = S3()
        bucket = "ckptfs-it-%s-%d-%d" % (role, os.getpid(), int(time.time()))
        s3.make_bucket(bucket)
        return s3, bucket

    def check_store(self, url, job, want, env=None):
        """Mount the store read-only on the host and check every file of
        @want ({checkpoint: (kind, {name: sha256})}) byte for byte."""
        mnt = os.path.join(self.tmp, "check")
        m = Mount(url, mnt, os.path.join(self.tmp, "check.log"), job=job,
                  args=["-o", "ro"], env=env)
        m.start(timeout=60)
        try:
            for ck, (kind, files) in want.items():
                d = os.path.join(mnt, "sampler", ck)
                self.assertEqual(os.getxattr(d, "user.ckptfs.kind").decode(), kind, ck)
                for n, sha in files.items():
                    self.assertEqual(sha256_file(os.path.join(d, n)), sha, "%s/%s" % (ck, n))
        finally:
            m.stop()

    def test_compose_recipe_under_podman_compose(self):
        """examples/compose/compose.yaml, unchanged, under Debian 12's
        podman-compose (1.0.3), with an override file for what differs
        here: the image tag, host networking for the ckptfs service (the
        test S3 server listens on 127.0.0.1 only) and a smaller, faster
        trainer, and a local store: the test S3 server listens on 127.0.0.1
        only, and podman-compose 1.0 cannot put a service on the host
        network (it adds its project network too, which podman refuses), so
        s3.env names a store directory (CKPTFS_STORE=/store) mounted into
        the ckptfs service. podman-compose 1.0 ignores `condition:
        service_healthy`, and podman 4.3 runs healthchecks only through
        systemd timers (no systemd here): the trainer and inference
        services wait with the documented readiness probe, which the recipe
        ships; the compose healthcheck command is run with `podman
        healthcheck run`."""
        if not shutil.which("podman-compose"):
            self.skipTest("no podman-compose (apt-get install podman-compose)")
        proj = os.path.join(self.tmp, "compose")
        os.makedirs(proj)
        shutil.copy(os.path.join(TOP, "examples", "compose", "compose.yaml"), proj)
        os.makedirs(os.path.join(proj, "ckpt"))
        ckpt = os.path.join(proj, "ckpt")
        subprocess.run(["mount", "--bind", ckpt, ckpt], check=True)
        self.host_mounts.append(ckpt)
        subprocess.run(["mount", "--make-rshared", ckpt], check=True)
        env_file = os.path.join(proj, "s3.env")
        with open(env_file, "w") as f:
            f.write("CKPTFS_STORE=/store\n")
        os.chmod(env_file, 0o600)
        with open(os.path.join(proj, "test.yaml"), "w") as f:
            f.write("services:\n"
                    "  ckptfs:\n"
                    "    image: %s\n"
                    "    volumes: ['%s:/store']\n"
                    "  trainer:\n"
                    "    image: %s\n"
                    "    environment: {STEPS: '3', SIZE_MB: '16', INTERVAL: '3'}\n"
                    "  inference: {image: %s}\n" % (IMAGE, self.store, IMAGE, IMAGE))
        name = "ckptfs-it-%d" % os.getpid()
        pc = ["podman-compose", "-p", name, "-f", os.path.join(proj, "compose.yaml"),
              "-f", os.path.join(proj, "test.yaml")]

        def compose(*args, timeout=300):
            r = subprocess.run(pc + list(args), env=podman_env(), capture_output=True,
                               text=True, timeout=timeout, cwd=proj)
            if r.returncode != 0:
                raise AssertionError("podman-compose %s: exit %d\n%s%s"
                                     % (" ".join(args), r.returncode, r.stdout, r.stderr))
            return r

        def logs(svc):
            return podman("logs", "%s_%s_1" % (name, svc), check=False).stdout

        compose("up", "-d", "--no-build")
        try:
            fs = name + "_ckptfs_1"
            wait_for(lambda: podman("healthcheck", "run", fs, check=False).returncode == 0,
                     60, "the compose healthcheck")
            wait_for(lambda: "wrote step-3" in logs("trainer"), 120, "the trainer:\n" +
                     podman("logs", fs, check=False).stderr)
            wrote = {}
            for line in logs("trainer").splitlines():
                if line.startswith("trainer: wrote "):
                    wrote[line.split()[2]] = line.split()[3]
            self.assertEqual(sorted(wrote), ["step-1", "step-2", "step-3"])
            self.assertEqual(len(set(wrote.values())), 3)
            wait_for(lambda: "/ckpt/c/sampler/step-3 " in logs("inference"), 60,
                     "the inference stand-in")
            loaded = [l.split() for l in logs("inference").splitlines()
                      if l.startswith("inference: loaded ")]
            for _, _, d, sha, _ in loaded:
                self.assertEqual(sha, wrote[os.path.basename(d)], d)
            t0 = time.time()
            compose("stop", "-t", "40", timeout=200)
            print("containers: compose stop %.1f s" % (time.time() - t0), file=sys.stderr)
            for svc in ("ckptfs", "trainer", "inference"):
                rc = podman("inspect", "%s_%s_1" % (name, svc), "--format",
                            "{{.State.ExitCode}}").stdout.strip()
                self.assertEqual(rc, "0", svc + ":\n" + podman("logs", "%s_%s_1" % (name, svc),
                                                               check=False).stderr)
            self.assertEqual(top_mount_type(os.path.join(ckpt, "c")), "")
        finally:
            compose("down", "-v", "-t", "5", timeout=200)
            # podman-compose 1.0 leaves its project network behind.
            podman("network", "rm", "-f", name + "_default", check=False)
        # Nothing was written into the bare directory under the mount point.
        self.assertEqual(os.listdir(os.path.join(ckpt, "c")), [])
        self.check_store(self.store, "rl-7", {
            "step-1": ("base", {"model.safetensors": wrote["step-1"]}),
            "step-2": ("delta", {"model.safetensors": wrote["step-2"]}),
            "step-3": ("delta", {"model.safetensors": wrote["step-3"]})})

    # A stand-in for the trainer (or the workload): a base, then a delta
    # (1 MiB of it changed), each sha256'd before writing and read back.
    STAND_IN = ("for s in 1 2; do "
                "if [ $s = 1 ]; then head -c 16M /dev/urandom > /tmp/m; "
                "else head -c 1M /dev/urandom | dd of=/tmp/m bs=1M seek=5 conv=notrunc status=none; fi; "
                "mkdir -p DIR/step-$s && cp /tmp/m DIR/step-$s/model.safetensors && "
                "echo \"wrote step-$s $(sha256sum < /tmp/m)\" && "
                "echo \"read step-$s $(sha256sum < DIR/step-$s/model.safetensors)\" || exit 1; "
                "done")

    def stand_in_hashes(self, log):
        """{step: sha256} the stand-in wrote, checking what it read back."""
        wrote = {l.split()[1]: l.split()[2] for l in log.splitlines() if l.startswith("wrote ")}
        read = {l.split()[1]: l.split()[2] for l in log.splitlines() if l.startswith("read ")}
        self.assertEqual(sorted(wrote), ["step-1", "step-2"], log)
        self.assertNotEqual(wrote["step-1"], wrote["step-2"])
        self.assertEqual(read, wrote, log)
        return wrote

    def kube_manifest(self, name):
        try:
            import yaml
        except ImportError:
            self.skipTest("no python3-yaml")
        with open(os.path.join(TOP, "examples", "k8s", name)) as f:
            return yaml.safe_load(f)

    def kube_play(self, pod, pod_name):
        """podman kube play @pod (a dict); torn down by tearDown."""
        import yaml
        path = os.path.join(self.tmp, pod_name + ".yaml")
        with open(path, "w") as f:
            yaml.safe_dump(pod, f)
        podman("kube", "play", "--down", path, check=False)
        self.kube_files.append(path)
        podman("kube", "play", path, timeout=300)

    def kube_secret(self, s3):
        """The manifests' Secret ckptfs-s3 as podman 4.3 reads one for
        envFrom: a podman secret holding a JSON map of base64 values."""
        import base64
        import json
        path = os.path.join(self.tmp, "secret.json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump({k: base64.b64encode(v.encode()).decode() for k, v in s3.env().items()}, f)
        podman("secret", "rm", "ckptfs-s3", check=False)
        podman("secret", "create", "ckptfs-s3", path)
        os.unlink(path)
        self.secrets.append("ckptfs-s3")

    def test_kubernetes_in_container_under_kube_play(self):
        """examples/k8s/in-container.yaml (a) under podman kube play, on the
        test S3 server. Differences from what is shipped: the image (the
        project's), `hostNetwork: true` (the test S3 server listens on
        127.0.0.1 only), the bucket, and `python train.py` replaced by a
        shell stand-in writing a base and a delta. The Secret ckptfs-s3 is
        a podman secret (podman 4.3 has no kind: Secret in kube play)."""
        s3, bucket = self.s3_bucket("k8s-a")
        self.kube_secret(s3)
        pod = self.kube_manifest("in-container.yaml")
        spec = pod["spec"]
        spec["hostNetwork"] = True
        c = spec["containers"][0]
        c["image"] = IMAGE
        script = c["args"][0].replace("s3://my-bucket/checkpoints", "s3://%s/p" % bucket)
        self.assertIn("exec python train.py --save-dir /ckpt/sampler", script)
        script = script.replace("exec python train.py --save-dir /ckpt/sampler",
                                self.STAND_IN.replace("DIR", "/ckpt/sampler"))
        c["args"] = [script]
        name = pod["metadata"]["name"]
        self.kube_play(pod, name)
        cname = "%s-%s" % (name, c["name"])
        wait_for(lambda: podman("inspect", cname, "--format", "{{.State.Running}}")
                 .stdout.strip() == "false", 120, "the trainer")
        log = podman("logs", cname).stdout
        self.assertEqual(podman("inspect", cname, "--format", "{{.State.ExitCode}}")
                         .stdout.strip(), "0", log + podman("logs", cname).stderr)
        wrote = self.stand_in_hashes(log)
        self.check_store("s3://%s/p" % bucket, "rl-7", {
            "step-1": ("base", {"model.safetensors": wrote["step-1"]}),
            "step-2": ("delta", {"model.safetensors": wrote["step-2"]})}, env=s3.env())

    def test_kubernetes_fd_sidecar_under_kube_play(self):
        """examples/k8s/fd-sidecar.yaml (c) under podman kube play: the
        privileged fd-mount helper, the daemon as uid 65534 with every
        capability dropped and no /dev/fuse, on the test S3 server.
        Differences from what is shipped: podman 4.3 has no native sidecars
        (an init container with restartPolicy: Always would run to
        completion first), so both become regular containers; podman's
        emptyDir is neither a shared mount nor shared between containers,
        so both volumes become host directories (the mount one a shared
        mount); `hostNetwork: true` (the test S3 server is on 127.0.0.1);
        the bucket; the inference server is replaced by a stand-in that
        writes a base and a delta through the mount and reads them back."""
        s3, bucket = self.s3_bucket("k8s-c")
        self.kube_secret(s3)
        ckpt = self.shared_dir("ckpt")
        sock = os.path.join(self.tmp, "sock")
        os.makedirs(sock)
        os.chmod(sock, 0o755)
        pod = self.kube_manifest("fd-sidecar.yaml")
        spec = pod["spec"]
        spec["hostNetwork"] = True
        sidecars = spec.pop("initContainers")
        for c in sidecars:
            self.assertEqual(c.pop("restartPolicy"), "Always")
            c["image"] = IMAGE
        helper, daemon = sidecars
        self.assertIn("s3://my-bucket/checkpoints", daemon["args"])
        daemon["args"] = [a.replace("s3://my-bucket/checkpoints", "s3://%s/p" % bucket)
                          for a in daemon["args"]]
        self.assertEqual(daemon["securityContext"]["capabilities"]["drop"], ["ALL"])
        app = spec["containers"][0]
        app["image"] = IMAGE
        app.pop("args")
        app["command"] = ["sh", "-c"]
        app["args"] = ["until grep -q ' /ckpt/c fuse.ckptfs ' /proc/mounts && "
                       "timeout 5 stat -t /ckpt/c >/dev/null; do sleep 0.2; done; " +
                       self.STAND_IN.replace("DIR", "/ckpt/c/sampler") +
                       "; trap 'exit 0' TERM; while sleep 1; do :; done"]
        spec["containers"] = sidecars + [app]
        for v in spec["volumes"]:
            self.assertEqual(v.pop("emptyDir"), {})
            v["hostPath"] = {"path": ckpt if v["name"] == "ckpt" else sock,
                             "type": "Directory"}
        name = pod["metadata"]["name"]
        self.kube_play(pod, name)
        cname = lambda c: "%s-%s" % (name, c["name"])
        wait_for(lambda: "read step-2 " in podman("logs", cname(app), check=False).stdout,
                 120, "the workload:\n" + podman("logs", cname(daemon), check=False).stderr)
        wrote = self.stand_in_hashes(podman("logs", cname(app)).stdout)
        caps = podman("exec", cname(daemon), "sh", "-c",
                      "id -u; grep CapEff /proc/1/status; test -e /dev/fuse && echo fuse || echo nofuse").stdout.split()
        self.assertEqual(caps, ["65534", "CapEff:", "0000000000000000", "nofuse"])
        podman("pod", "stop", "-t", "30", name, timeout=120)
        for c in (helper, daemon, app):
            rc = podman("inspect", cname(c), "--format", "{{.State.ExitCode}}").stdout.strip()
            self.assertEqual(rc, "0", c["name"] + ":\n" + podman("logs", cname(c)).stderr)
        self.assertEqual(top_mount_type(os.path.join(ckpt, "c")), "")
        self.check_store("s3://%s/p" % bucket, "rl-7", {
            "step-1": ("base", {"model.safetensors": wrote["step-1"]}),
            "step-2": ("delta", {"model.safetensors": wrote["step-2"]})}, env=s3.env())

    def systemd_image(self):
        """The project's image with systemd as its init (built once per run)."""
        if "systemd" not in _image:
            ctx = os.path.join(self.tmp, "systemd-image")
            os.makedirs(ctx)
            with open(os.path.join(ctx, "Containerfile"), "w") as f:
                f.write("FROM %s\n"
                        "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install"
                        " -y -q --no-install-recommends systemd && rm -rf /var/lib/apt/lists/*\n"
                        "HEALTHCHECK NONE\n"
                        "STOPSIGNAL SIGRTMIN+3\n"
                        "ENTRYPOINT [\"/lib/systemd/systemd\"]\n"
                        "CMD []\n" % IMAGE)
            podman("build", "--format", "docker", "-t", IMAGE + "-systemd", ctx, timeout=900)
            _image["systemd"] = IMAGE + "-systemd"
        return _image["systemd"]

    def test_systemd_units_under_systemd(self):
        """examples/systemd under a real systemd (252): systemd is not PID 1
        on this machine, so it runs as PID 1 of a container
        (--systemd=always) of the project's image plus systemd, with the
        shipped unit files bind-mounted read-only into /etc/systemd/system
        and the test S3 server (--network host). ckptfs@.service:
        `systemctl start` returns once READY=1 arrived (Type=notify) with
        the STATUS text; a base and a delta read back exact; SIGKILL of the
        daemon: the dead mount is cleared and the unit restarts and serves
        the same bytes; `systemctl stop` drains and exits 0. mnt-ckpt.mount
        (mount(8) -> mount.fuse3 -> ckptfs, credentials from env-file): its
        What= is set to the test bucket by a drop-in. mnt-ckpt.automount is
        only verified (systemd-analyze verify): this kernel has no autofs."""
        s3, bucket = self.s3_bucket("systemd")
        image = self.systemd_image()
        etc = os.path.join(self.tmp, "etc-ckptfs")
        os.makedirs(etc)
        creds = "".join("%s=%s\n" % kv for kv in s3.env().items())
        for fname, text in (("t.env", "CKPTFS_STORE=s3://%s/svc\nCKPTFS_MOUNTPOINT=/mnt/svc\n"
                             "CKPTFS_OPTS=--job rl-7 --cache-dir /var/cache/ckptfs/t "
                             "-o allow_other\n" % bucket + creds), ("s3.env", creds)):
            with open(os.open(os.path.join(etc, fname), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(text)
        dropin = os.path.join(self.tmp, "dropin")
        os.makedirs(dropin)
        with open(os.path.join(dropin, "test-bucket.conf"), "w") as f:
            f.write("[Mount]\nWhat=s3://%s/mnt\n" % bucket)
        units = os.path.join(TOP, "examples", "systemd")
        c = self.name("systemd")
        vols = []
        for u in os.listdir(units):
            vols += ["-v", "%s:/etc/systemd/system/%s:ro" % (os.path.join(units, u), u)]
        podman("run", "-d", "--name", c, "--systemd=always", "--network", "host", *PRIV,
               *vols, "-v", etc + ":/etc/ckptfs:ro", "-v", self.src + ":/src:ro",
               "-v", dropin + ":/etc/systemd/system/mnt-ckpt.mount.d:ro", image)

        def sh(cmd, check=True):
            return podman("exec", c, "sh", "-c", cmd, check=check).stdout

        def show(unit, *props):
            out = sh("systemctl show -p %s %s" % (",".join(props), unit))
            return dict(l.split("=", 1) for l in out.splitlines())

        wait_for(lambda: sh("systemctl is-system-running", check=False).strip()
                 in ("running", "degraded"), 60, "systemd in the container")
        verify = podman("exec", c, "systemd-analyze", "verify", "ckptfs@t.service",
                        "mnt-ckpt.mount", "mnt-ckpt.automount", check=False)
        self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
        self.assertEqual(verify.stderr.strip(), "")

        # ckptfs@.service
        t0 = time.time()
        start = podman("exec", c, "systemctl", "start", "ckptfs@t", check=False)
        self.assertEqual(start.returncode, 0, sh("journalctl -u ckptfs@t --no-pager", False))
        print("containers: systemctl start ckptfs@t %.2f s" % (time.time() - t0), file=sys.stderr)
        st = show("ckptfs@t", "ActiveState", "SubState", "StatusText", "MainPID")
        self.assertEqual((st["ActiveState"], st["SubState"]), ("active", "running"))
        self.assertEqual(st["StatusText"], "serving s3://%s/svc on /mnt/svc" % bucket)
        sh("for s in s0 s1; do mkdir /mnt/svc/sampler/$s && cp /src/$s/* /mnt/svc/sampler/$s/; done")
        sh("kill -9 %s" % st["MainPID"])
        wait_for(lambda: show("ckptfs@t", "NRestarts", "ActiveState") ==
                 {"NRestarts": "1", "ActiveState": "active"}, 60, "the restart")
        self.assertEqual(sh("grep -c ' /mnt/svc fuse.ckptfs ' /proc/mounts").strip(), "1")
        for s_ in ("s0", "s1"):
            out = sh("cd /mnt/svc/sampler/%s && sha256sum *" % s_)
            self.assertEqual({l.split()[1]: l.split()[0] for l in out.splitlines()}, self.want[s_])
        sh("systemctl stop ckptfs@t")
        st = show("ckptfs@t", "ActiveState", "Result", "ExecMainStatus")
        self.assertEqual(st, {"ActiveState": "inactive", "Result": "success",
                              "ExecMainStatus": "0"})
        self.assertEqual(sh("grep -c ' /mnt/svc ' /proc/mounts", check=False).strip(), "0")

        # mnt-ckpt.mount
        start = podman("exec", c, "systemctl", "start", "mnt-ckpt.mount", check=False)
        self.assertEqual(start.returncode, 0, sh("journalctl -u mnt-ckpt.mount --no-pager", False))
        self.assertIn(" /mnt/ckpt fuse.ckptfs rw,nosuid,nodev,", sh("cat /proc/mounts"))
        args = sh("for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = ckptfs ] && "
                  "tr '\\0' ' ' < $p/cmdline; done; true")
        self.assertIn("env-file=/etc/ckptfs/s3.env", args)
        self.assertNotIn(s3.secret, args)
        sh("mkdir /mnt/ckpt/sampler/s0 && cp /src/s0/* /mnt/ckpt/sampler/s0/")
        sh("systemctl stop mnt-ckpt.mount")
        self.assertEqual(show("mnt-ckpt.mount", "ActiveState", "Result"),
                         {"ActiveState": "inactive", "Result": "success"})
        self.assertEqual(sh("grep -c ' /mnt/ckpt ' /proc/mounts", check=False).strip(), "0")

        # The fstab line of doc/CONTAINERS.md, through systemd's fstab
        # generator (bucket and mount point changed).
        with open(os.path.join(TOP, "doc", "CONTAINERS.md")) as f:
            line = [l.strip() for l in f if " fuse.ckptfs " in l and "_netdev" in l][0]
        self.assertTrue(line.startswith("s3://my-bucket/ckpt  /mnt/ckpt  "), line)
        line = line.replace("s3://my-bucket/ckpt", "s3://%s/fstab" % bucket, 1)
        line = line.replace("/mnt/ckpt", "/mnt/fstab", 1)
        sh("mkdir -p /mnt/fstab && echo '%s' >> /etc/fstab && systemctl daemon-reload" % line)
        start = podman("exec", c, "systemctl", "start", "mnt-fstab.mount", check=False)
        self.assertEqual(start.returncode, 0, sh("journalctl -u mnt-fstab.mount --no-pager", False))
        sh("mkdir /mnt/fstab/sampler/s0 && cp /src/s0/* /mnt/fstab/sampler/s0/")
        sh("systemctl stop mnt-fstab.mount")
        t0 = time.time()
        podman("stop", "-t", "30", c, timeout=120)
        self.assertLess(time.time() - t0, 20, "systemd did not stop on SIGRTMIN+3")

        self.check_store("s3://%s/fstab" % bucket, "rl-7", {"s0": ("base", self.want["s0"])},
                         env=s3.env())
        self.check_store("s3://%s/svc" % bucket, "rl-7", {
            "s0": ("base", self.want["s0"]), "s1": ("delta", self.want["s1"])}, env=s3.env())
        self.check_store("s3://%s/mnt" % bucket, "rl-7", {"s0": ("base", self.want["s0"])},
                         env=s3.env())

    def test_kubernetes_sidecar_under_kube_play(self):
        """Test 4: examples/k8s/sidecar.yaml. podman 4.3 has no native
        sidecars (an init container with restartPolicy: Always would be run
        to completion first), so the sidecar becomes a regular container;
        the emptyDir becomes a shared host directory, since podman's
        emptyDir volumes are not shared mounts."""
        # Seed the store: job rl-7, sampler/s0.
        seed = os.path.join(self.tmp, "seed")
        os.makedirs(seed)
        m = Mount(self.store, seed, os.path.join(self.tmp, "seed.log"), job="rl-7")
        m.start()
        try:
            os.mkdir(os.path.join(seed, "sampler", "s0"))
            shutil.copyfile(os.path.join(self.src, "s0", "model.safetensors"),
                            os.path.join(seed, "sampler", "s0", "model.safetensors"))
        finally:
            m.stop()
        d = self.shared_dir("ckpt")
        with open(os.path.join(TOP, "examples", "k8s", "sidecar.yaml")) as f:
            y = f.read()
        y = y.replace("  initContainers:\n", "  containers:\n", 1)
        y = y.replace("      restartPolicy: Always\n", "", 1)
        i = y.index("  containers:\n    - name: inference")
        y = y[:i] + y[i + len("  containers:\n"):]
        y = y.replace("localhost/ckptfs:latest", IMAGE)
        y = y.replace("/var/lib/ckptfs/store", self.store)
        y = y.replace("      emptyDir: {}\n",
                      "      hostPath:\n        path: %s\n        type: Directory\n" % d)
        pod_yaml = os.path.join(self.tmp, "pod.yaml")
        with open(pod_yaml, "w") as f:
            f.write(y)
        podman("kube", "play", "--down", pod_yaml, check=False)
        podman("kube", "play", pod_yaml, timeout=300)
        try:
            want = self.want["s0"]["model.safetensors"]
            wait_for(lambda: want in podman("logs", "ckptfs-sidecar-inference", check=False).stdout,
                     120, "the inference container's checksum")
            podman("pod", "stop", "-t", "30", "ckptfs-sidecar", timeout=120)
            rc = int(podman("inspect", "ckptfs-sidecar-ckptfs", "--format",
                            "{{.State.ExitCode}}").stdout)
            self.assertEqual(rc, 0, podman("logs", "ckptfs-sidecar-ckptfs").stderr)
            self.assertEqual(top_mount_type(os.path.join(d, "c")), "")
        finally:
            podman("kube", "play", "--down", pod_yaml, check=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
