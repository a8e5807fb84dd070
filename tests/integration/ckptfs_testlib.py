"""Shared helpers for the ckptfs integration tests: real FUSE mounts of the
built binary on a private store, checked for clean exits and clean logs.

Every test gets its own temp directory (store, mountpoint, log); mounts are
always unmounted, even when a test fails; the daemon's stderr is scanned for
sanitizer reports and unexpected errors.
"""
import errno
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

CKPTFS = os.environ.get("CKPTFS_BIN", "ckptfs")
SUSPICIOUS = re.compile(r"^==\d+==|runtime error:|AddressSanitizer|LeakSanitizer", re.M)


def fuse_usable():
    return os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


requires_fuse = unittest.skipUnless(fuse_usable(), "no /dev/fuse or fusermount3")


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_tree(root):
    """{relative path: sha256} of every regular file under root."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = sha256_file(p)
    return out


def du_bytes(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def bf16_from_f32(a):
    """Round-to-nearest-even fp32 -> bf16, as uint16 (numpy)."""
    import numpy as np
    u = a.astype(np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + 0x7FFF
    return ((u + rounding) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, seed=0):
    """tensors: list of (name, dtype, shape). Writes realistic weights
    (normal, std 0.02; layernorm-like ~1.0 for 1-D) and returns nothing."""
    import numpy as np
    rng = np.random.default_rng(seed)
    header, offset, blobs = {}, 0, []
    width = {"BF16": 2, "F32": 4, "F16": 2}
    for name, dtype, shape in tensors:
        n = int(np.prod(shape))
        nbytes = n * width[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        blobs.append((name, dtype, shape, n))
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, dtype, shape, n in blobs:
            done = 0
            while done < n:
                k = min(n - done, 8 << 20)
                if len(shape) == 1:
                    v = 1.0 + rng.standard_normal(k, dtype=np.float32) * 0.05
                else:
                    v = rng.standard_normal(k, dtype=np.float32) * 0.02
                if dtype == "BF16":
                    f.write(bf16_from_f32(v).tobytes())
                elif dtype == "F16":
                    f.write(v.astype(np.float16).tobytes())
                else:
                    f.write(v.astype(np.float32).tobytes())
                done += k


def model_tensors(total_mb, hidden=1024):
    """Tensor list for a bf16 model of about total_mb MB, plus an fp32 one."""
    tensors = [("model.embed_tokens.weight", "BF16", (4096, hidden))]
    per_layer = 4 * hidden * hidden + 3 * hidden * 2816
    layers = max(1, (total_mb * (1 << 20) // 2 - 4096 * hidden) // per_layer)
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [(p + "input_layernorm.weight", "BF16", (hidden,))]
        for m in ("q", "k", "v", "o"):
            tensors.append((p + f"self_attn.{m}_proj.weight", "BF16", (hidden, hidden)))
        tensors += [(p + "mlp.gate_proj.weight", "BF16", (2816, hidden)),
                    (p + "mlp.up_proj.weight", "BF16", (2816, hidden)),
                    (p + "mlp.down_proj.weight", "BF16", (hidden, 2816))]
    tensors.append(("lm_head.bias", "F32", (hidden * 16,)))
    return tensors


def perturb_safetensors(src, dst, fraction, seed):
    """Copy src to dst changing `fraction` of bf16 values by +-1..2 ulp
    (what an Adam step with a small lr does); the header is unchanged."""
    import numpy as np
    rng = np.random.default_rng(seed)
    with open(src, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        f.seek(0)
        data = bytearray(f.read())
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "BF16":
            continue
        a, b = t["data_offsets"]
        v = np.frombuffer(data, dtype=np.uint16, count=(b - a) // 2, offset=base + a).copy()
        mask = rng.random(v.size) < fraction
        step = rng.choice(np.array([-2, -1, 1, 2], dtype=np.int32), size=int(mask.sum()))
        v[mask] = (v[mask].astype(np.int32) + step).astype(np.uint16)
        data[base + a:base + b] = v.tobytes()
    with open(dst, "wb") as f:
        f.write(data)


def descendants(pid):
    """The PIDs of every process below @pid, parents before children."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(0), []):
            out.append(c)
            todo.append(c)
    return out


def running(pid):
    """Whether @pid is a process that still runs (not gone, not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Mount:
    """A running `ckptfs mount -f` on a store directory."""

    def __init__(self, store, mnt, log, job=None, args=(), env=None):
        self.store, self.mnt, self.log_path = store, mnt, log
        self.job, self.args = job, list(args)
        self.env = env
        self.proc = None

    def start(self, timeout=15):
        os.makedirs(self.mnt, exist_ok=True)
        cmd = [CKPTFS, "mount", "-f", self.store, self.mnt]
        if self.job:
            cmd += ["--job=" + self.job]
        cmd += self.args
        self.logf = open(self.log_path, "a")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.ismount(self.mnt):
                return self
            if self.proc.poll() is not None:
                raise AssertionError("ckptfs exited %s:\n%s" % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        raise AssertionError("mount did not appear:\n" + self.log())

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stop(self):
        """Unmount cleanly; the daemon must exit 0 with a clean log."""
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", self.mnt], check=False,
                       stderr=subprocess.DEVNULL)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.logf.close()
        text = self.log()
        if rc != 0:
            raise AssertionError("ckptfs exited %d\n%s" % (rc, text))
        bad = SUSPICIOUS.search(text)
        if bad:
            raise AssertionError("suspicious daemon output:\n" + text)

    def kill9(self):
        # The daemon may run under a wrapper (unshare, setpriv): SIGKILL the
        # deepest process first and wait until none runs, so that nothing a
        # test does next (closing a descriptor, say) reaches a daemon that
        # is still dying.
        pids = [self.proc.pid] + descendants(self.proc.pid)
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.proc = None
        self.logf.close()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                       stderr=subprocess.DEVNULL)

    def cleanup(self):
        if self.proc is not None:
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False,
                           stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


class S3:
    """The test S3 server (Ceph RGW on 127.0.0.1, started by scripts/test.sh),
    spoken to with curl's own SigV4 so the tests do not depend on the code
    under test to set up or inspect buckets."""

    def __init__(self):
        self.endpoint = os.environ["CKPTFS_TEST_S3_ENDPOINT"]
        self.key = os.environ["CKPTFS_TEST_S3_ACCESS_KEY"]
        self.secret = os.environ["CKPTFS_TEST_S3_SECRET_KEY"]
        self.region = os.environ.get("CKPTFS_TEST_S3_REGION", "us-east-1")

    @staticmethod
    def available():
        return bool(os.environ.get("CKPTFS_TEST_S3_ENDPOINT"))

    def env(self, secret=None):
        return {"AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": secret or self.secret,
                "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint}

    def curl(self, method, path, data=None, query=""):
        cmd = ["curl", "-sS", "--fail-with-body", "-X", method,
               "--aws-sigv4", "aws:amz:%s:s3" % self.region,
               "--user", "%s:%s" % (self.key, self.secret),
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
               self.endpoint + path + query]
        if data is not None:
            cmd[1:1] = ["--data-binary", "@-"]
        r = subprocess.run(cmd, input=data, capture_output=True)
        if r.returncode:
            raise AssertionError("curl %s %s: %s %s" % (method, path, r.stdout, r.stderr))
        return r.stdout

    def make_bucket(self, name):
        self.curl("PUT", "/" + name, data=b"")

    def remove_bucket(self, name):
        """Delete every object of bucket @name, then the bucket: the test
        server keeps its objects in RAM, and every suite runs twice."""
        import base64
        from xml.sax.saxutils import escape
        keys = list(self.objects(name))
        for i in range(0, len(keys), 1000):
            body = ("<Delete><Quiet>true</Quiet>" + "".join(
                "<Object><Key>%s</Key></Object>" % escape(k) for k in keys[i:i + 1000]) +
                "</Delete>").encode()
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            cmd = ["curl", "-sS", "--fail-with-body", "-X", "POST",
                   "--aws-sigv4", "aws:amz:%s:s3" % self.region,
                   "--user", "%s:%s" % (self.key, self.secret),
                   "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                   "-H", "Content-MD5: " + md5, "-H", "Content-Type: application/xml",
                   "--data-binary", "@-", self.endpoint + "/" + name + "?delete="]
            r = subprocess.run(cmd, input=body, capture_output=True)
            if r.returncode:
                raise AssertionError("delete objects in %s: %s %s" % (name, r.stdout, r.stderr))
        self.curl("DELETE", "/" + name)

    def objects(self, bucket, prefix=""):
        """{key: size} under prefix (ListObjectsV2, all pages)."""
        import urllib.parse
        import xml.etree.ElementTree as ET
        out, token = {}, None
        while True:
            q = "?list-type=2&prefix=" + urllib.parse.quote(prefix, safe="")
            if token:
                q = "?continuation-token=" + urllib.parse.quote(token, safe="") + \
                    "&list-type=2&prefix=" + urllib.parse.quote(prefix, safe="")
            root = ET.fromstring(self.curl("GET", "/" + bucket, query=q))
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for c in root.findall(ns + "Contents"):
                out[c.find(ns + "Key").text] = int(c.find(ns + "Size").text)
            if root.findtext(ns + "IsTruncated") != "true":
                return out
            token = root.findtext(ns + "NextContinuationToken")

    def get(self, bucket, key):
        return self.curl("GET", "/%s/%s" % (bucket, key))

    def put(self, bucket, key, data):
        self.curl("PUT", "/%s/%s" % (bucket, key), data=data)


BACKEND = os.environ.get("CKPTFS_TEST_BACKEND", "local")


class MountTest(unittest.TestCase):
    """Base class: self.tmp, self.store, self.mount(...). The same test
    bodies run on a local directory store or, with CKPTFS_TEST_BACKEND=s3,
    on a fresh bucket of the test S3 server (each mount with its own chunk
    cache directory, like separate hosts)."""

    def setUp(self):
        base = os.environ.get("CKPTFS_TEST_TMP") or None
        self.tmp = tempfile.mkdtemp(prefix="ckptfs-it-", dir=base)
        self.src = os.path.join(self.tmp, "src")
        os.makedirs(self.src)
        self.mounts = []
        self.s3 = None
        self.store_env = {}
        if BACKEND == "s3":
            if not S3.available():
                if os.environ.get("CKPTFS_TEST_REQUIRE_S3"):
                    self.fail("CKPTFS_TEST_BACKEND=s3 but no S3 server configured")
                self.skipTest("no S3 server (set CKPTFS_TEST_S3_*)")
            self.s3 = S3()
            self.bucket = "ckptfs-it-%d-%d" % (os.getpid(), random.randrange(1 << 30))
            self.s3.make_bucket(self.bucket)
            self.store = "s3://%s/run" % self.bucket
            self.store_env = self.s3.env()
        else:
            self.store = os.path.join(self.tmp, "store")

    def store_bytes(self, prefix=""):
        """Bytes of the store's objects under @prefix ("chunks/", ...)."""
        if self.s3:
            return sum(self.s3.objects(self.bucket, "run/" + prefix).values())
        return du_bytes(os.path.join(self.store, prefix) if prefix else self.store)

    def chunk_keys(self):
        if self.s3:
            return sorted(k[len("run/"):] for k in self.s3.objects(self.bucket, "run/chunks/"))
        return sorted(os.path.relpath(p, self.store)
                      for p in glob.glob(os.path.join(self.store, "chunks", "*", "*")))

    def corrupt_object(self, key, offset):
        """Flip one bit of a stored object, in place."""
        if self.s3:
            data = bytearray(self.s3.get(self.bucket, "run/" + key))
            data[offset] ^= 0x20
            self.s3.put(self.bucket, "run/" + key, bytes(data))
        else:
            with open(os.path.join(self.store, key), "r+b") as f:
                f.seek(offset)
                b = f.read(1)
                f.seek(offset)
                f.write(bytes([b[0] ^ 0x20]))

    def tearDown(self):
        for m in self.mounts:
            m.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.s3 and getattr(self, "bucket", None):
            try:
                self.s3.remove_bucket(self.bucket)
            except (AssertionError, OSError) as e:
                sys.stderr.write("note: test bucket %s not removed: %s\n" % (self.bucket, e))

    def mount(self, name="mnt", job=None, args=(), env=None):
        args = list(args)
        if self.s3:
            args.append("--cache-dir=" + os.path.join(self.tmp, name + ".cache"))
        # CKPTFS_TEST_BASE_CACHE=1: every mount keeps a base cache of its own
        # (the suites run once more that way: scripts/test.sh).
        if os.environ.get("CKPTFS_TEST_BASE_CACHE") and \
                not any(a.startswith("--base-cache-dir") for a in args):
            args.append("--base-cache-dir=" + os.path.join(self.tmp, name + ".basecache"))
        m = Mount(self.store, os.path.join(self.tmp, name),
                  os.path.join(self.tmp, name + ".log"), job=job, args=args,
                  env=dict(self.store_env, **(env or {})))
        self.mounts.append(m)
        return m.start()

    def assertErrno(self, err, fn, *a, **kw):
        with self.assertRaises(OSError) as cm:
            fn(*a, **kw)
        self.assertEqual(cm.exception.errno, err,
                         "expected %s, got %s" % (errno.errorcode[err], cm.exception))

    def run_ckptfs(self, *args):
        return subprocess.run([CKPTFS] + list(args), capture_output=True, text=True,
                              env=dict(os.environ, **self.store_env))


def random_file(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            k = min(left, 1 << 20)
            f.write(rng.randbytes(k))
            left -= k


SERVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "servers")


class StandIn:
    """A loopback stand-in inference server (tests/servers/standin.py)."""

    def __init__(self, tmp, protocol, *args):
        import json as _json
        self.portfile = os.path.join(tmp, "port-%s-%d" % (protocol, random.randrange(1 << 30)))
        self.proc = subprocess.Popen([sys.executable, os.path.join(SERVERS, "standin.py"),
                                      "--protocol", protocol, "--port", "0",
                                      "--portfile", self.portfile] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.portfile):
            if time.time() > deadline or self.proc.poll() is not None:
                raise AssertionError("stand-in did not start")
            time.sleep(0.02)
        with open(self.portfile) as f:
            self.port = int(f.read().strip())
        self.url = "http://127.0.0.1:%d" % self.port
        self._json = _json

    def state(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/_test/state", timeout=10) as r:
            return self._json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class TcpRelay:
    """A TCP relay in front of a server on 127.0.0.1 (the test S3 server),
    on @port or a free one. cut(): every connection, open or new, is dropped
    at once (the listener stays, so the daemon sees resets, as from a dead
    server behind a load balancer); mend() ends that; close() also closes
    the listener (connections are refused)."""

    def __init__(self, target_port, port=0):
        self.target = ("127.0.0.1", target_port)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.down = False
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            if self.down or self.closed:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def mend(self):
        self.down = False

    def close(self):
        self.closed = True
        self.cut()
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.srv.close()
