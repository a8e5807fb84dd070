"""Issue 5: `echo DEPLOYMENT > sampler/X/hotload` syncs a running server
(loopback stand-ins speaking sglang, vllm and a webhook) and blocks until it
confirms; the server reads the checkpoint through the mount and must see
exactly the committed bytes."""
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (MountTest, StandIn, perturb_safetensors, requires_fuse,
                            sha256_tree, write_safetensors)

TOKEN = "s3cr3t-token-value"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@requires_fuse
class Hotload(MountTest):
    def setUp(self):
        super().setUp()
        self.servers = []
        self.m = self.mount(env={"DEPLOY_TOKEN": TOKEN})
        # A base and a delta checkpoint of a small bf16 model.
        os.makedirs(os.path.join(self.src, "s0"))
        os.makedirs(os.path.join(self.src, "s1"))
        write_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                          [("w", "BF16", (1024, 2048)), ("b", "F32", (4096,))], seed=4)
        perturb_safetensors(os.path.join(self.src, "s0", "model.safetensors"),
                            os.path.join(self.src, "s1", "model.safetensors"), 0.02, seed=5)
        for s in ("s0", "s1"):
            with open(os.path.join(self.src, s, "config.json"), "w") as f:
                json.dump({"step": s}, f)
            os.mkdir(self.m.path("sampler", s))
            for n in os.listdir(os.path.join(self.src, s)):
                shutil.copy(os.path.join(self.src, s, n), self.m.path("sampler", s, n))
        self.assertEqual(os.getxattr(self.m.path("sampler", "s1"), "user.ckptfs.kind"), b"delta")

    def tearDown(self):
        for s in self.servers:
            s.stop()
        super().tearDown()

    def server(self, protocol, *args):
        s = StandIn(self.tmp, protocol, *args)
        self.servers.append(s)
        return s

    def deploy(self, name, protocol, url, **extra):
        d = {"protocol": protocol, "url": url,
             "model_path": self.m.mnt + "/sampler/{checkpoint}"}
        d.update(extra)
        with open(self.m.path("deployments", name), "w") as f:
            json.dump(d, f)

    def hotload(self, ckpt, name):
        fd = os.open(self.m.path("sampler", ckpt, "hotload"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, (name + "\n").encode())
        finally:
            os.close(fd)

    def status(self, ckpt):
        with open(self.m.path("sampler", ckpt, "hotload")) as f:
            return json.load(f)

    def test_sglang_base_and_delta_exact_bytes(self):
        srv = self.server("sglang", "--token", TOKEN)
        self.deploy("sg", "sglang", srv.url, token_env="DEPLOY_TOKEN", timeout_s=30)
        for ck in ("s0", "s1"):
            self.hotload(ck, "sg")
            st = srv.state()
            want = sha256_tree(os.path.join(self.src, ck))
            got = {k: v["sha256"] for k, v in st["loads"][-1]["files"].items()}
            self.assertEqual(got, want, "the server must read exactly the committed bytes")
            snap = os.getxattr(self.m.path("sampler", ck), "user.ckptfs.snapshot").decode()
            self.assertEqual(st["weight_version"], snap)
            self.assertEqual(os.getxattr(self.m.path("deployments", "sg"),
                                         "user.ckptfs.current").decode(), snap)
            s = self.status(ck)
            self.assertEqual(s["state"], "confirmed")
            self.assertEqual(s["deployment"], "sg")
            self.assertEqual(s["snapshot"], snap)
            self.assertEqual(s["http_status"], 200)
        # The token went as a Bearer header and never into the log.
        self.assertTrue(all(a == "Bearer " + TOKEN for a in srv.state()["auth_seen"]))
        self.m.stop()
        self.assertNotIn(TOKEN, self.m.log())

    def test_vllm_and_http(self):
        vl = self.server("vllm")
        self.deploy("vl", "vllm", vl.url, timeout_s=30)
        self.hotload("s1", "vl")
        st = vl.state()
        self.assertEqual(st["inits"], 1)
        paths = [r["path"] for r in st["requests"]]
        for p in ("/start_weight_update", "/update_weights", "/finish_weight_update",
                  "/weight_info", "/reset_prefix_cache"):
            self.assertIn(p, paths)
        self.assertEqual({k: v["sha256"] for k, v in st["loads"][-1]["files"].items()},
                         sha256_tree(os.path.join(self.src, "s1")))
        hk = self.server("http")
        self.deploy("hook", "http", hk.url + "/hook", timeout_s=30)
        self.hotload("s1", "hook")
        body = [r for r in hk.state()["requests"] if r["path"] == "/hook"][-1]["body"]
        self.assertEqual(body["kind"], "delta")
        self.assertEqual(body["base"], "s0")
        listed = {f["path"]: f["sha256"] for f in body["files"]}
        self.assertEqual(listed, sha256_tree(os.path.join(self.src, "s1")))

    def test_errors(self):
        # Unknown deployment.
        self.assertErrno(errno.ENOENT, self.hotload, "s1", "nope")
        self.assertEqual(self.status("s1")["state"], "failed")
        # Train-state checkpoint.
        os.mkdir(self.m.path("state", "t1"))
        srv = self.server("sglang")
        self.deploy("sg", "sglang", srv.url, timeout_s=10)
        fd = os.open(self.m.path("state", "t1", "hotload"), os.O_WRONLY | os.O_TRUNC)
        with self.assertRaises(OSError) as cm:
            os.write(fd, b"sg\n")
        os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        # A checkpoint whose files are still open for writing.
        os.mkdir(self.m.path("sampler", "busy"))
        with open(self.m.path("sampler", "busy", "f"), "wb") as f:
            f.write(b"partial")
            self.assertErrno(errno.EINVAL, self.hotload, "busy", "sg")
        # Server down: ETIMEDOUT within timeout_s.
        self.deploy("down", "sglang", "http://127.0.0.1:%d" % free_port(), timeout_s=2)
        t = time.time()
        self.assertErrno(errno.ETIMEDOUT, self.hotload, "s1", "down")
        self.assertLess(time.time() - t, 6)
        # 500 first, then success: retried.
        flaky = self.server("sglang", "--fail-first", "1", "--status-fail", "500")
        self.deploy("flaky", "sglang", flaky.url, timeout_s=20)
        self.hotload("s1", "flaky")
        self.assertEqual(self.status("s1")["state"], "confirmed")
        # success: false -> EIO, message in the status.
        refusing = self.server("sglang", "--refuse")
        self.deploy("ref", "sglang", refusing.url, timeout_s=10)
        self.assertErrno(errno.EIO, self.hotload, "s1", "ref")
        s = self.status("s1")
        self.assertEqual(s["state"], "failed")
        self.assertTrue(s["error"])
        # Slow server beyond the timeout.
        slow = self.server("sglang", "--delay", "6")
        self.deploy("slow", "sglang", slow.url, timeout_s=2)
        self.assertErrno(errno.ETIMEDOUT, self.hotload, "s1", "slow")

    def test_invalid_deployment_keeps_previous(self):
        srv = self.server("sglang")
        self.deploy("sg", "sglang", srv.url, timeout_s=10)
        with open(self.m.path("deployments", "sg")) as f:
            before = f.read()
        for bad in ('{"protocol": "sglang"', '{"protocol": "grpc", "url": "http://x", "model_path": "/m"}',
                    '{"protocol": "sglang", "url": "http://x", "model_path": "/m", "colour": 1}'):
            f = open(self.m.path("deployments", "sg"), "w")
            f.write(bad)
            with self.assertRaises(OSError) as cm:
                try:
                    f.close()
                finally:
                    f.close()  # a failed close still releases the descriptor
            self.assertEqual(cm.exception.errno, errno.EINVAL)
        with open(self.m.path("deployments", "sg")) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(self.m.path("deployments")), ["sg"])
        os.unlink(self.m.path("deployments", "sg"))
        self.assertEqual(os.listdir(self.m.path("deployments")), [])
        # hotload is resolvable but never listed.
        self.assertNotIn("hotload", os.listdir(self.m.path("sampler", "s1")))

    def test_two_hotloads_serialized(self):
        srv = self.server("sglang", "--delay", "1")
        self.deploy("sg", "sglang", srv.url, timeout_s=30)
        errs = []

        def run(ck):
            try:
                self.hotload(ck, "sg")
            except OSError as e:
                errs.append(e)
        ts = [threading.Thread(target=run, args=(c,)) for c in ("s0", "s1")]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errs, [])
        st = srv.state()
        self.assertEqual(len(st["loads"]), 2)
        self.assertFalse(st["overlap"])


    def test_example_rl_loop(self):
        srv = self.server("sglang")
        self.deploy("rollouts", "sglang", srv.url, timeout_s=30)
        example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "rl_loop.py")
        r = subprocess.run([sys.executable, example, self.m.mnt, "rollouts", "--steps", "3",
                            "--size", "65536"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("promoted", r.stdout)
        self.assertEqual(len(srv.state()["loads"]), 3)
        self.assertTrue(os.path.isdir(self.m.path("models", "best-policy")))
        last = srv.state()["loads"][-1]["files"]
        self.assertEqual(sorted(last), ["config.json", "model.safetensors"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
