"""Issue 9 item 5: one changed store object never gives wrong bytes.

Each test writes a base and a delta checkpoint, unmounts, changes exactly one
object of the store the way an operator's mistake, a buggy sync tool or a
careless attacker would (rename a chunk, substitute another valid frame,
swap or drop chunk refs in an entry, truncate an entry or record, rename a
record), mounts again and checks: reads fail with EIO (never ENOENT, never
wrong bytes), listings still work, one daemon log line names the object,
and `ckptfs fsck` reports it. Runs on a local store and (test_tamper_s3) on
the test S3 server.
"""
import errno
import hashlib
import http.client
import http.server
import json
import os
import shutil
import sys
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import Mount, MountTest, random_file, requires_fuse

CHUNK = 4 << 20
JOB = "tj"


def entry_key(ckpt, rel):
    return "jobs/%s/sampler/%s/entries/%s.json" % (
        JOB, ckpt, hashlib.sha256(rel.encode()).hexdigest()[:32])


def record_key(ckpt):
    return "jobs/%s/sampler/%s/checkpoint.json" % (JOB, ckpt)


def chunk_obj(hexkey):
    return "chunks/%s/%s" % (hexkey[:2], hexkey)


@requires_fuse
class Tamper(MountTest):
    def setUp(self):
        super().setUp()
        # f.bin: 3 full chunks; g.bin: one more chunk of other bytes (a
        # valid frame of the same length to substitute); d/f.bin: the
        # delta of f.bin with chunk 1 unchanged (a "k": null item).
        self.f = os.path.join(self.src, "f.bin")
        self.g = os.path.join(self.src, "g.bin")
        self.fd = os.path.join(self.src, "fd.bin")
        random_file(self.f, 3 * CHUNK, seed=11)
        random_file(self.g, CHUNK, seed=12)
        with open(self.f, "rb") as fh:
            data = bytearray(fh.read())
        for off in range(0, CHUNK, 4096):
            data[off] ^= 0x5A
        for off in range(2 * CHUNK, 3 * CHUNK, 8192):
            data[off] ^= 0xA5
        with open(self.fd, "wb") as fh:
            fh.write(data)
        m = self.mount("w", job=JOB)
        os.mkdir(m.path("sampler", "b"))
        shutil.copy(self.f, m.path("sampler", "b", "f.bin"))
        shutil.copy(self.g, m.path("sampler", "b", "g.bin"))
        os.mkdir(m.path("sampler", "d"))
        shutil.copy(self.fd, m.path("sampler", "d", "f.bin"))
        m.stop()
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    # ---- the store, whichever backend ----

    def obj_get(self, key):
        if self.s3:
            return self.s3.get(self.bucket, "run/" + urllib.parse.quote(key))
        with open(os.path.join(self.store, key), "rb") as fh:
            return fh.read()

    def obj_put(self, key, data):
        if self.s3:
            self.s3.put(self.bucket, "run/" + urllib.parse.quote(key), data)
        else:
            path = os.path.join(self.store, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)

    def obj_delete(self, key):
        if self.s3:
            self.s3.curl("DELETE", "/%s/run/%s" % (self.bucket, urllib.parse.quote(key)))
        else:
            os.unlink(os.path.join(self.store, key))

    def entry(self, ckpt, rel):
        return json.loads(self.obj_get(entry_key(ckpt, rel)))

    def put_json(self, key, obj):
        self.obj_put(key, json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    # ---- checks ----

    def read_chunks(self, path, src):
        """Per chunk: True (right bytes) or the errno of the read."""
        out = []
        with open(path, "rb") as fh, open(src, "rb") as s:
            size = os.fstat(s.fileno()).st_size
            for off in range(0, size, CHUNK):
                want = os.pread(s.fileno(), CHUNK, off)
                try:
                    got = os.pread(fh.fileno(), CHUNK, off)
                except OSError as e:
                    out.append(e.errno)
                    continue
                self.assertEqual(got, want, "wrong bytes at offset %d" % off)
                out.append(True)
        return out

    def assertEIO(self, fn, *a):
        self.assertErrno(errno.EIO, fn, *a)

    def assertFsckNames(self, *names):
        r = self.run_ckptfs("fsck", self.store)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        for n in names:
            self.assertIn(n, r.stdout)
        return r.stdout

    def assertLogNames(self, m, name):
        lines = [l for l in m.log().splitlines() if name in l]
        self.assertTrue(lines, "no log line names %s:\n%s" % (name, m.log()))

    # ---- chunk objects ----

    def test_chunk_renamed_onto_another_key(self):
        ks = [c["k"] for c in self.entry("b", "f.bin")["chunks"]]
        self.obj_put(chunk_obj(ks[1]), self.obj_get(chunk_obj(ks[0])))
        self.obj_delete(chunk_obj(ks[0]))
        m = self.mount("r", job=JOB)
        self.assertEqual(self.read_chunks(m.path("sampler", "b", "f.bin"), self.f),
                         [errno.EIO, errno.EIO, True])
        m.stop()
        self.assertLogNames(m, ks[1])
        self.assertIn("checksum mismatch", m.log())
        self.assertFsckNames(ks[0], ks[1])

    def test_other_valid_frame_substituted(self):
        kf = self.entry("b", "f.bin")["chunks"][0]["k"]
        kg = self.entry("b", "g.bin")["chunks"][0]["k"]
        self.obj_put(chunk_obj(kf), self.obj_get(chunk_obj(kg)))
        m = self.mount("r", job=JOB)
        self.assertEqual(self.read_chunks(m.path("sampler", "b", "f.bin"), self.f),
                         [errno.EIO, True, True])
        self.assertEqual(self.read_chunks(m.path("sampler", "b", "g.bin"), self.g), [True])
        m.stop()
        self.assertLogNames(m, kf)
        self.assertFsckNames(kf)

    # ---- entries ----

    def test_swapped_chunk_refs_in_entry(self):
        key = entry_key("b", "f.bin")
        e = self.entry("b", "f.bin")
        c = e["chunks"]
        c[0], c[1] = c[1], c[0]
        self.put_json(key, e)
        m = self.mount("r", job=JOB)
        self.assertEIO(open, m.path("sampler", "b", "f.bin"), "rb")
        self.assertEIO(os.stat, m.path("sampler", "b", "f.bin"))
        # The rest of the checkpoint and the job still list and read.
        self.assertEqual(sorted(os.listdir(m.path("sampler"))), ["b", "d"])
        self.assertEqual(os.listdir(m.path("sampler", "b")), ["g.bin"])
        self.assertEqual(self.read_chunks(m.path("sampler", "b", "g.bin"), self.g), [True])
        # Promotion or hotload of a checkpoint missing a file: refused.
        self.assertEIO(os.symlink, "../sampler/b", m.path("models", "mb"))
        m.stop()
        self.assertLogNames(m, key)
        self.assertFsckNames(key)

    def test_delta_item_without_k(self):
        key = entry_key("d", "f.bin")
        e = self.entry("d", "f.bin")
        self.assertEqual(e.get("version"), 2)
        # A version 1 entry (no self-checksum) as older builds wrote it
        # still reads...
        del e["version"], e["sum"]
        self.put_json(key, e)
        m = self.mount("r1", job=JOB)
        self.assertEqual(self.read_chunks(m.path("sampler", "d", "f.bin"), self.fd),
                         [True, True, True])
        m.stop()
        # ... but an item with "b" and no "k" is not an all-zero delta.
        item = e["chunks"][0]
        self.assertTrue(item["k"] and item.get("b"), item)
        del item["k"]
        self.put_json(key, e)
        m = self.mount("r2", job=JOB)
        self.assertEIO(open, m.path("sampler", "d", "f.bin"), "rb")
        m.stop()
        self.assertLogNames(m, key)
        self.assertFsckNames(key)

    def test_truncated_entry(self):
        key = entry_key("b", "f.bin")
        data = self.obj_get(key)
        self.obj_put(key, data[:len(data) // 2])
        m = self.mount("r", job=JOB)
        self.assertEIO(os.stat, m.path("sampler", "b", "f.bin"))
        self.assertEIO(open, m.path("sampler", "b", "f.bin"), "rb")
        self.assertEqual(os.listdir(m.path("sampler", "b")), ["g.bin"])
        m.stop()
        self.assertLogNames(m, key)
        self.assertFsckNames(key)

    def test_entry_moved_to_another_path(self):
        # A valid entry under the key of another path (a copy tool that
        # renamed objects): the path it claims is not the one its key binds.
        src, dst = entry_key("b", "g.bin"), entry_key("b", "h.bin")
        self.obj_put(dst, self.obj_get(src))
        self.obj_delete(src)
        m = self.mount("r", job=JOB)
        self.assertEIO(open, m.path("sampler", "b", "g.bin"), "rb")
        self.assertEqual(os.listdir(m.path("sampler", "b")), ["f.bin"])
        m.stop()
        self.assertLogNames(m, dst)
        self.assertFsckNames(dst)

    # ---- records ----

    def check_lost_record(self, key):
        m = self.mount("r", job=JOB)
        self.assertEqual(sorted(os.listdir(m.path("sampler"))), ["b", "d"])
        self.assertEIO(os.stat, m.path("sampler", "b"))
        self.assertEIO(os.listdir, m.path("sampler", "b"))
        self.assertEIO(open, m.path("sampler", "b", "f.bin"), "rb")
        # The other checkpoint is untouched.
        self.assertEqual(self.read_chunks(m.path("sampler", "d", "f.bin"), self.fd),
                         [True, True, True])
        with open(m.path("checkpoints.jsonl")) as fh:
            names = [json.loads(l)["name"] for l in fh if l.strip()]
        self.assertEqual(names, ["d"])
        m.stop()
        self.assertLogNames(m, key)
        self.assertFsckNames(key)

    def test_unparsable_record(self):
        key = record_key("b")
        self.obj_put(key, self.obj_get(key)[:20])
        self.check_lost_record(key)

    def test_record_name_not_its_key(self):
        key = record_key("b")
        r = json.loads(self.obj_get(key))
        r["name"] = "x/y"
        self.put_json(key, r)
        self.check_lost_record(key)

    def test_checkpoint_key_with_slash(self):
        # "x%2Fy" decodes to "x/y", which no directory entry can hold: the
        # listing stays sound and fsck names the object.
        key = "jobs/%s/sampler/x%%2Fy/checkpoint.json" % JOB
        r = json.loads(self.obj_get(record_key("b")))
        r["name"] = "x/y"
        self.put_json(key, r)
        m = self.mount("r", job=JOB)
        self.assertEqual(sorted(os.listdir(m.path("sampler"))), ["b", "d"])
        self.assertEqual(self.read_chunks(m.path("sampler", "b", "f.bin"), self.f),
                         [True, True, True])
        m.stop()
        self.assertFsckNames(key)

    def test_record_copied_from_another_checkpoint(self):
        key = record_key("b")
        self.obj_put(key, self.obj_get(record_key("d")))
        self.check_lost_record(key)


class CorruptingProxy:
    """A loopback HTTP proxy in front of the test S3 server that flips one
    byte in the body of the first @count successful GETs of chunk objects.
    Headers pass unchanged, so SigV4 signatures (which cover the Host the
    client used) still verify at the server."""

    def __init__(self, upstream, count=1):
        u = urllib.parse.urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port or 80
        self.left = count
        self.corrupted = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def relay(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                conn = http.client.HTTPConnection(proxy.up_host, proxy.up_port, timeout=60)
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders(body)
                r = conn.getresponse()
                data = r.read()
                conn.close()
                if self.command == "GET" and r.status == 200 and "/chunks/" in self.path \
                        and data:
                    with proxy.lock:
                        if proxy.left > 0:
                            proxy.left -= 1
                            proxy.corrupted.append(self.path)
                            data = bytearray(data)
                            data[len(data) // 2] ^= 0x10
                            data = bytes(data)
                self.send_response(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@requires_fuse
class CacheFault(MountTest):
    """Issue 9 item 8 on a real S3 mount: a GET body corrupted once on the
    way never reaches the disk cache, and a bad file in the cache is
    dropped and fetched again, so a passing fault never means EIO for
    good."""

    def setUp(self):
        super().setUp()
        if not self.s3:
            self.skipTest("needs the S3 backend (test_tamper_s3)")
        self.f = os.path.join(self.src, "f.bin")
        random_file(self.f, 3 * CHUNK, seed=31)
        m = self.mount("w", job=JOB)
        os.mkdir(m.path("sampler", "b"))
        shutil.copy(self.f, m.path("sampler", "b", "f.bin"))
        m.stop()
        self.cache = os.path.join(self.tmp, "shared.cache")

    def read_mount(self, name, endpoint):
        """A mount on one cache directory kept across mounts (self.mount()
        gives each mount its own)."""
        m = Mount(self.store, os.path.join(self.tmp, name),
                  os.path.join(self.tmp, name + ".log"), job=JOB,
                  args=["--cache-dir=" + self.cache],
                  env=dict(self.store_env, AWS_ENDPOINT_URL=endpoint))
        self.mounts.append(m)
        return m.start()

    def cached_objects(self):
        out = {}
        for dirpath, _dirs, files in os.walk(os.path.join(self.cache, "objects")):
            for fn in files:
                with open(os.path.join(dirpath, fn), "rb") as fh:
                    out[fn] = hashlib.sha256(fh.read()).hexdigest()
        return out

    def assertCacheSound(self):
        objs = self.cached_objects()
        self.assertTrue(objs)
        for name, digest in objs.items():
            self.assertEqual(name, digest, "cached object does not match its key")

    def test_corrupted_download_is_not_cached(self):
        proxy = CorruptingProxy(self.s3.endpoint, count=1)
        try:
            m = self.read_mount("r1", proxy.url)
            with open(m.path("sampler", "b", "f.bin"), "rb") as fh, open(self.f, "rb") as s:
                self.assertEqual(fh.read(), s.read())
            m.stop()
        finally:
            proxy.stop()
        self.assertEqual(len(proxy.corrupted), 1)
        self.assertCacheSound()
        # The fault is gone: the same cache serves every chunk.
        m = self.read_mount("r2", self.s3.endpoint)
        with open(m.path("sampler", "b", "f.bin"), "rb") as fh, open(self.f, "rb") as s:
            self.assertEqual(fh.read(), s.read())
        m.stop()

    def test_corrupt_cached_file_is_refetched(self):
        m = self.read_mount("r1", self.s3.endpoint)
        with open(m.path("sampler", "b", "f.bin"), "rb") as fh:
            fh.read()
        m.stop()
        self.assertCacheSound()
        victim = None
        for dirpath, _dirs, files in os.walk(os.path.join(self.cache, "objects")):
            for fn in files:
                victim = os.path.join(dirpath, fn)
        with open(victim, "r+b") as fh:
            fh.seek(100)
            b = fh.read(1)
            fh.seek(100)
            fh.write(bytes([b[0] ^ 0x04]))
        m = self.read_mount("r2", self.s3.endpoint)
        with open(m.path("sampler", "b", "f.bin"), "rb") as fh, open(self.f, "rb") as s:
            self.assertEqual(fh.read(), s.read())
        m.stop()
        self.assertIn("does not match its key", m.log())
        self.assertCacheSound()


if __name__ == "__main__":
    unittest.main(verbosity=2)
