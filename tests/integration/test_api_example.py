"""Issue 13: the C example of doc/API.md, compiled against the *installed*
libckptfs (`meson install --destdir`, then its pkg-config file), linked
both against the shared library and against the static archive alone, and
run on a store; and the shared library exports nothing but ckptfs_*.

Env: CKPTFS_BUILD_ROOT (the meson build directory), CKPTFS_CC (the compiler
of this build), CKPTFS_SANITIZE (its b_sanitize, "none" if none)."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import S3  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "..", "doc", "API.md")


def example_source():
    with open(DOC) as f:
        blocks = re.findall(r"```c\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 1, "doc/API.md must hold exactly one ```c block"
    return blocks[0]


class ApiExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ckptfs-apiex-", dir=os.environ.get("CKPTFS_TEST_TMP"))
        cls.dest = os.path.join(cls.tmp, "dest")
        r = subprocess.run(["meson", "install", "-C", os.environ["CKPTFS_BUILD_ROOT"],
                            "--no-rebuild", "--quiet", "--destdir", cls.dest],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        pcs = glob.glob(os.path.join(cls.dest, "**", "pkgconfig", "ckptfs.pc"), recursive=True)
        assert len(pcs) == 1, pcs
        cls.pcdir = os.path.dirname(pcs[0])
        cls.libdir = os.path.dirname(cls.pcdir)
        with open(pcs[0]) as f:
            prefix = re.search(r"^prefix=(.*)$", f.read(), re.M).group(1)
        cls.prefix = cls.dest + prefix
        cls.src = os.path.join(cls.tmp, "api_example.c")
        with open(cls.src, "w") as f:
            f.write(example_source())
        cls.cc = os.environ.get("CKPTFS_CC", "cc")
        san = os.environ.get("CKPTFS_SANITIZE", "none")
        cls.san = ([] if san in ("", "none") else ["-fsanitize=" + san]) + \
            os.environ.get("CKPTFS_EXTRA_CFLAGS", "").split()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def pkg_config(self, *args):
        env = dict(os.environ, PKG_CONFIG_PATH=self.pcdir)
        r = subprocess.run(["pkg-config", "--define-variable=prefix=" + self.prefix] + list(args)
                           + ["ckptfs"], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def compile(self, out, link):
        cmd = [self.cc, "-Wall", "-Wextra", "-Werror", "-std=c11", "-D_POSIX_C_SOURCE=200809L"] + \
            self.san + self.pkg_config("--cflags") + [self.src, "-o", out] + link
        r = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, " ".join(cmd) + "\n" + r.stderr)

    def run_example(self, exe, store, env=None):
        e = dict(os.environ, LD_LIBRARY_PATH=self.libdir)
        e.update(env or {})
        r = subprocess.run([exe, store], capture_output=True, text=True, env=e, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^sampler/step-1 kind=base base= logical=6291456 stored=\d+$")
        self.assertRegex(lines[1], r"^sampler/step-2 kind=delta base=step-1 logical=6291456 ")
        stored = int(lines[1].rsplit("=", 1)[1])
        self.assertLess(stored, 6291456 // 10)   # a delta of a few changed bytes
        self.assertEqual(lines[2], "promoted sampler/step-2 to models/example-model")

    def test_shared(self):
        exe = os.path.join(self.tmp, "example-shared")
        self.compile(exe, self.pkg_config("--libs"))
        self.run_example(exe, os.path.join(self.tmp, "store-shared"))
        # What a checkpoint written by the example is, the CLI reads back.
        ckptfs = os.environ.get("CKPTFS_BIN")
        if ckptfs:
            r = subprocess.run([ckptfs, "ls", os.path.join(self.tmp, "store-shared", "example")],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('"name":"step-2","dir":"sampler"', r.stdout)

    def test_static_archive_alone(self):
        exe = os.path.join(self.tmp, "example-static")
        # libckptfs.a, with its dependencies as the system's shared libraries
        # (Requires.private of ckptfs.pc; a fully static libcurl is not packaged).
        with open(os.path.join(self.pcdir, "ckptfs.pc")) as f:
            text = f.read()
        reqs = re.search(r"^Requires.private:(.*)$", text, re.M).group(1).replace(",", " ").split()
        own = re.search(r"^Libs.private:(.*)$", text, re.M).group(1).split()
        r = subprocess.run(["pkg-config", "--libs"] + reqs, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.compile(exe, [os.path.join(self.libdir, "libckptfs.a")] + r.stdout.split() + own)
        self.run_example(exe, os.path.join(self.tmp, "store-static"), env={"LD_LIBRARY_PATH": ""})

    def test_on_s3(self):
        if not S3.available():
            self.skipTest("no S3 server (set CKPTFS_TEST_S3_*)")
        s3 = S3()
        bucket = "ckptfs-apiex-%d" % os.getpid()
        s3.make_bucket(bucket)
        exe = os.path.join(self.tmp, "example-s3")
        self.compile(exe, self.pkg_config("--libs"))
        self.run_example(exe, "s3://%s/run" % bucket, env=s3.env())

    def test_only_ckptfs_symbols_exported(self):
        so = glob.glob(os.path.join(self.libdir, "libckptfs.so.*.*"))
        self.assertEqual(len(so), 1, so)
        r = subprocess.run(["nm", "-D", "--defined-only", so[0]], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        names = [line.split()[-1].split("@")[0] for line in r.stdout.splitlines()
                 if line.strip()]
        self.assertIn("ckptfs_open", names)
        self.assertIn("ckptfs_pread", names)
        others = [n for n in names if not n.startswith("ckptfs_") and n != "CKPTFS_1"]
        self.assertEqual(others, [])
        # And the header is the only one installed.
        headers = glob.glob(os.path.join(self.prefix, "include", "**", "*.h"), recursive=True)
        self.assertEqual([os.path.basename(h) for h in headers], ["ckptfs.h"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
