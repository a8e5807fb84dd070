"""Issue 11, read side: tensor-aware read-ahead through a real mount. A
freshly started daemon serves a loader that mmaps a safetensors base and a
delta and copies every tensor out in shuffled order: every tensor's sha256
matches the source, and the daemon's counters (root xattr
user.ckptfs.stats) show the read-ahead decoded chunks because of tensor
extents. --readahead-mib=0 turns it off and changes no byte."""
import hashlib
import json
import mmap
import os
import random
import shutil
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest, model_tensors, perturb_safetensors,
                            requires_fuse, write_safetensors)

NAME = "model.safetensors"


def tensor_shas(path, seed):
    """sha256 of every tensor, read through an mmap in a shuffled order
    (what safe_open and inference engines do)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        names = sorted(header)
        random.Random(seed).shuffle(names)
        out = {}
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            for k in names:
                a, b = header[k]["data_offsets"]
                out[k] = hashlib.sha256(mm[8 + n + a:8 + n + b]).hexdigest()
        return out


def stats(m):
    return json.loads(os.getxattr(m.mnt, "user.ckptfs.stats"))


@requires_fuse
class ReadAheadTest(MountTest):
    def setUp(self):
        super().setUp()
        for s in ("step-0", "step-1"):
            os.makedirs(os.path.join(self.src, s))
        write_safetensors(os.path.join(self.src, "step-0", NAME),
                          model_tensors(24, hidden=512), seed=5)
        perturb_safetensors(os.path.join(self.src, "step-0", NAME),
                            os.path.join(self.src, "step-1", NAME), 0.02, seed=6)
        self.want = {s: tensor_shas(os.path.join(self.src, s, NAME), 1)
                     for s in ("step-0", "step-1")}
        m = self.mount("w", args=["--chunk-kib=256"])
        for s in ("step-0", "step-1"):
            os.mkdir(m.path("sampler", s))
            shutil.copy(os.path.join(self.src, s, NAME), m.path("sampler", s, NAME))
        self.assertEqual(os.getxattr(m.path("sampler", "step-1"), "user.ckptfs.kind"),
                         b"delta")
        m.stop()

    def test_mmap_shuffled_loader(self):
        m = self.mount("r", args=["--cache-mib=64", "--readahead-mib=8"])
        for seed, s in enumerate(("step-1", "step-0")):
            got = tensor_shas(m.path("sampler", s, NAME), 100 + seed)
            self.assertEqual(got, self.want[s], s)
        st = stats(m)
        self.assertEqual(st["readahead_layouts"], 2, st)
        self.assertGreater(st["readahead_tensor_chunks"], 10, st)
        self.assertGreater(st["chunk_hits"], 0, st)
        m.stop()

    def test_readahead_off(self):
        m = self.mount("r0", args=["--readahead-mib=0"])
        got = tensor_shas(m.path("sampler", "step-1", NAME), 3)
        self.assertEqual(got, self.want["step-1"])
        st = stats(m)
        self.assertEqual(st["readahead_chunks"], 0, st)
        self.assertEqual(st["readahead_layouts"], 0, st)
        m.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
