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
import glob
import hashlib
import json
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import MountTest, random_file, requires_fuse

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
            return self.s3.get(self.bucket, "run/" + key)
        with open(os.path.join(self.store, key), "rb") as fh:
            return fh.read()

    def obj_put(self, key, data):
        if self.s3:
            self.s3.put(self.bucket, "run/" + key, data)
        else:
            with open(os.path.join(self.store, key), "wb") as fh:
                fh.write(data)

    def obj_delete(self, key):
        if self.s3:
            self.s3.curl("DELETE", "/%s/run/%s" % (self.bucket, key))
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

    def test_record_copied_from_another_checkpoint(self):
        key = record_key("b")
        self.obj_put(key, self.obj_get(record_key("d")))
        self.check_lost_record(key)


if __name__ == "__main__":
    unittest.main(verbosity=2)
