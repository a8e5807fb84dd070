"""Issue 13: examples/python/ckptfs.py (ctypes over libckptfs, no compiled
extension): save and load safetensors checkpoints, base then delta, range
reads of single tensors, listing, promotion; what it wrote reads back
byte-exact through a real mount. CKPTFS_LIB names the built libckptfs.so."""
import hashlib
import io
import os
import sys
import unittest


# A libckptfs built with AddressSanitizer needs the ASan runtime loaded first,
# which a plain python3 does not have: re-run this file with it preloaded.
_san = os.environ.get("CKPTFS_SANITIZE", "none")
if "address" in _san and "CKPTFS_ASAN_PRELOADED" not in os.environ:
    import subprocess
    rt = subprocess.run([os.environ.get("CKPTFS_CC", "cc"), "-print-file-name=libclang_rt.asan-"
                         + os.uname().machine + ".so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(rt):   # gcc names it libasan.so
        rt = subprocess.run([os.environ.get("CKPTFS_CC", "cc"), "-print-file-name=libasan.so"],
                            capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=rt, CKPTFS_ASAN_PRELOADED="1",
               # Python itself leaks by LeakSanitizer's measure; the last
               # setting wins over scripts/test.sh's detect_leaks=1.
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
# Loaded now; programs this test starts (ckptfs mount) carry their own runtime.
os.environ.pop("LD_PRELOAD", None) if "CKPTFS_ASAN_PRELOADED" in os.environ else None

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
import ckptfs  # noqa: E402
from ckptfs_testlib import MountTest, requires_fuse, sha256_file  # noqa: E402


def model(seed, prev=None):
    import numpy as np
    rng = np.random.default_rng(seed)
    if prev is None:
        w = (rng.standard_normal((512, 1024), dtype=np.float32) * 0.02)
        bits = (w.view(np.uint32) >> 16).astype(np.uint16)   # bf16 bits
        return {"layer.0.weight": bits,
                "layer.0.norm": np.ones(1024, dtype=np.float32),
                "step": np.array([seed], dtype=np.int64)}
    out = {k: v.copy() for k, v in prev.items()}
    w = out["layer.0.weight"].reshape(-1)
    idx = rng.choice(w.size, w.size // 50, replace=False)     # 2% of values move 1 ulp
    w[idx] += 1
    out["step"][0] = seed
    return out


class PythonApi(MountTest):
    def open(self, **kw):
        os.environ.update(self.store_env)
        return ckptfs.Store(self.store, job="py", **kw)

    def test_save_load_base_delta(self):
        import numpy as np
        m1 = model(1)
        m2 = model(2, m1)
        with self.open() as st:
            ckptfs.save_safetensors(st, "sampler/step-1/model.safetensors", m1,
                                    metadata={"format": "pt"}, bf16={"layer.0.weight"})
            st.write("sampler/step-1/config.json", b'{"hidden_size": 1024}\n')
            ckptfs.save_safetensors(st, "sampler/step-2/model.safetensors", m2,
                                    metadata={"format": "pt"}, bf16={"layer.0.weight"})
            i1, i2 = st.info("sampler/step-1"), st.info("sampler/step-2")
            self.assertEqual((i1["kind"], i2["kind"], i2["base"]), ("base", "delta", "step-1"))
            self.assertLess(i2["stored_bytes"], i2["logical_bytes"] // 4)
            self.assertEqual(sorted(st.listdir("sampler/step-1")),
                             ["config.json", "model.safetensors"])
            self.assertEqual([c["name"] for c in st.checkpoints()], ["step-1", "step-2"])
        # A new handle (a cold reader) loads exactly what was saved.
        with self.open() as st:
            for path, want in (("sampler/step-1/model.safetensors", m1),
                               ("sampler/step-2/model.safetensors", m2)):
                got = ckptfs.load_safetensors(st, path)
                self.assertEqual(sorted(got), sorted(want))
                for k in want:
                    self.assertTrue(np.array_equal(got[k], want[k]), k)
                    self.assertEqual(got[k].dtype, want[k].dtype)
            # One tensor by its byte range only.
            one = ckptfs.load_safetensors(st, "sampler/step-2/model.safetensors", names={"step"})
            self.assertEqual(list(one), ["step"])
            self.assertEqual(int(one["step"][0]), 2)
            self.assertEqual(st.read("sampler/step-1/config.json"), b'{"hidden_size": 1024}\n')
            self.assertEqual(st.read("sampler/step-1/config.json", offset=2, size=6), b'hidden')
            st.promote("sampler/step-2", "py-model")
            got = ckptfs.load_safetensors(st, "models/py-model/model.safetensors")
            self.assertTrue(np.array_equal(got["layer.0.weight"], m2["layer.0.weight"]))
            st.set_ttl("sampler/step-1", 7200)
            self.assertEqual(st.info("sampler/step-1")["ttl"], 7200)
            st.remove("sampler/step-2")
            with self.assertRaises(OSError) as cm:
                st.open("sampler/step-2/model.safetensors")
            self.assertEqual(cm.exception.errno, 2)

    def test_errors(self):
        os.environ.update(self.store_env)
        with self.assertRaises(OSError) as cm:
            ckptfs.Store(self.store + "-missing", options={"create": 0})
        self.assertEqual(cm.exception.errno, 2)
        with self.assertRaises(OSError) as cm:
            ckptfs.Store(self.store, options={"no-such-option": 1})
        self.assertEqual(cm.exception.errno, 22)
        with self.open() as st:
            with self.assertRaises(OSError) as cm:
                st.mkckpt("state/s", kind="base")
            self.assertEqual(cm.exception.errno, 22)
            # A failed write commits nothing.
            with self.assertRaises(RuntimeError):
                with st.create("sampler/x/partial.bin") as f:
                    f.write(b"x" * 1000)
                    raise RuntimeError("trainer crashed")
            with self.assertRaises(OSError):
                st.open("sampler/x/partial.bin")

    @requires_fuse
    def test_mount_reads_what_python_wrote(self):
        m1 = model(3)
        with self.open() as st:
            ckptfs.save_safetensors(st, "sampler/a/model.safetensors", m1,
                                    bf16={"layer.0.weight"})
            data = st.read("sampler/a/model.safetensors")
        mnt = self.mount(job="py")
        self.assertEqual(sha256_file(mnt.path("sampler", "a", "model.safetensors")),
                         hashlib.sha256(data).hexdigest())
        with open(mnt.path("sampler", "a", "model.safetensors"), "rb") as f:
            buf = io.BytesIO(f.read())
        self.assertEqual(buf.getvalue(), data)
        mnt.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
