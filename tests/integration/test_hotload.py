"""Issue 5: `echo DEPLOYMENT > sampler/X/hotload` syncs a running server
(loopback stand-ins speaking sglang, vllm and a webhook) and blocks until it
confirms; the server reads the checkpoint through the mount and must see
exactly the committed bytes.

Issue 14: the stand-ins behave like the engines as read (vLLM dev mode:
pause / collective_rpc reload_weights / update_weight_version / resume, 500
for engine errors; SGLang /model_info and its 404 alias, admin keys;
adapters on both). Issue 9 items 3 and 6: token variables are limited to
what the mount allows and never leak; hung servers cannot take the mount."""
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
TOKEN_ENV = "CKPTFS_TOKEN_DEPLOY"


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
        self.m = self.mount(env={TOKEN_ENV: TOKEN})
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
        self.deploy("sg", "sglang", srv.url, token_env=TOKEN_ENV, timeout_s=30)
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
        # Issue 14 items 1 and 3: upstream's dev-mode routes, paused around
        # the reload, resumed at the end.
        paths = [r["path"] for r in st["requests"]]
        self.assertEqual(paths, ["/pause", "/collective_rpc", "/update_weight_version",
                                 "/weight_info", "/reset_prefix_cache", "/resume"])
        self.assertIn("mode=wait", st["requests"][0]["query"])
        self.assertEqual(st["requests"][1]["body"]["method"], "reload_weights")
        self.assertEqual(st["reloads_while_serving"], 0)
        self.assertFalse(st["paused"])
        snap = os.getxattr(self.m.path("sampler", "s1"), "user.ckptfs.snapshot").decode()
        self.assertEqual(st["weight_version"], snap)
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

    def status_text(self, ckpt):
        with open(self.m.path("sampler", ckpt, "hotload")) as f:
            return f.read()

    def test_engine_refusal_is_eio_within_seconds(self):
        """Issue 14 item 2: vLLM answers an engine error with HTTP 500; that
        is a refusal (EIO at once, the engine's message in the status), not
        a transient failure retried for timeout_s. Item 3: resumed anyway."""
        vl = self.server("vllm", "--refuse")
        self.deploy("vl", "vllm", vl.url)      # timeout_s: the default 600
        t = time.time()
        self.assertErrno(errno.EIO, self.hotload, "s1", "vl")
        self.assertLess(time.time() - t, 5)
        s = self.status("s1")
        self.assertEqual(s["state"], "failed")
        self.assertEqual(s["errno"], "EIO")
        self.assertEqual(s["http_status"], 500)
        self.assertIn("shape mismatch", s["error"])
        st = vl.state()
        self.assertEqual([r["path"] for r in st["requests"]],
                         ["/pause", "/collective_rpc", "/resume"])
        self.assertFalse(st["paused"])
        # SGLang's refusal (400, success false) too.
        sg = self.server("sglang", "--refuse")
        self.deploy("sg", "sglang", sg.url)
        t = time.time()
        self.assertErrno(errno.EIO, self.hotload, "s1", "sg")
        self.assertLess(time.time() - t, 5)
        self.assertIn("stand-in refuses this model", self.status("s1")["error"])

    def test_sglang_generations_and_admin_key(self):
        """Issue 14 items 4 and 5."""
        old = self.server("sglang", "--generation", "old")
        self.deploy("old", "sglang", old.url, timeout_s=30)
        self.hotload("s1", "old")
        self.assertEqual([r["path"] for r in old.state()["requests"]],
                         ["/update_weights_from_disk", "/model_info", "/get_weight_version"])
        new = self.server("sglang", "--generation", "new", "--api-key", TOKEN,
                          "--admin-api-key", "adm-" + TOKEN)
        self.deploy("new", "sglang", new.url, timeout_s=30, token_env=TOKEN_ENV)
        self.assertErrno(errno.EIO, self.hotload, "s1", "new")
        self.assertIn("Unauthorized", self.status("s1")["error"])
        m2 = self.mount("mnt2", env={TOKEN_ENV: TOKEN, "CKPTFS_TOKEN_ADMIN": "adm-" + TOKEN})
        with open(m2.path("deployments", "new2"), "w") as f:
            json.dump({"protocol": "sglang", "url": new.url, "timeout_s": 30,
                       "model_path": m2.mnt + "/sampler/{checkpoint}",
                       "token_env": TOKEN_ENV, "admin_token_env": "CKPTFS_TOKEN_ADMIN",
                       "warmup": True}, f)
        with open(m2.path("sampler", "s1", "hotload"), "w") as f:
            f.write("new2\n")
        reqs = new.state()["requests"][1:]
        self.assertEqual([(r["path"], r["auth"]) for r in reqs],
                         [("/update_weights_from_disk", "Bearer adm-" + TOKEN),
                          ("/model_info", "Bearer " + TOKEN),
                          ("/generate", "Bearer " + TOKEN)])
        self.assertEqual({k: v["sha256"] for k, v in new.state()["loads"][-1]["files"].items()},
                         sha256_tree(os.path.join(self.src, "s1")))
        m2.stop()
        self.assertNotIn(TOKEN, m2.log())

    def make_lora(self, name, seed):
        d = os.path.join(self.src, name)
        os.makedirs(d)
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump({"r": 8, "lora_alpha": 16, "seed": seed}, f)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"),
                          [("lora_A", "BF16", (64, 256)), ("lora_B", "BF16", (256, 64))],
                          seed=seed)
        os.mkdir(self.m.path("sampler", name))
        for n in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(os.path.join(d, n), self.m.path("sampler", name, n))
        self.assertEqual(os.getxattr(self.m.path("sampler", name), "user.ckptfs.kind"),
                         b"lora")

    def test_adapters_replace_previous(self):
        """Issue 14 item 6: on both engines, load the new adapter, confirm,
        then unload the previous one (max_adapters 1)."""
        for n, seed in (("l0", 10), ("l1", 11)):
            self.make_lora(n, seed)
        for proto in ("sglang", "vllm"):
            srv = self.server(proto)
            self.deploy("ad-" + proto, proto, srv.url, timeout_s=30, lora=True)
            snaps = []
            for n in ("l0", "l1"):
                self.hotload(n, "ad-" + proto)
                snaps.append(os.getxattr(self.m.path("sampler", n),
                                         "user.ckptfs.snapshot").decode())
                self.assertEqual(self.status(n)["state"], "confirmed")
                got = {k: v["sha256"] for k, v in srv.state()["loads"][-1]["files"].items()}
                self.assertEqual(got, sha256_tree(os.path.join(self.src, n)))
            st = srv.state()
            self.assertEqual(list(st["loras"]), [snaps[1]], proto)
            self.assertEqual(st["unloaded"], [snaps[0]], proto)
            paths = [r["path"] for r in st["requests"]]
            load = "/load_lora_adapter" if proto == "sglang" else "/v1/load_lora_adapter"
            # The unload comes after the new adapter is loaded (and confirmed).
            self.assertLess(len(paths) - 1 - paths[::-1].index(load),
                            paths.index(load.replace("load_", "unload_")))

    def test_token_env_not_allowed(self):
        """Issue 9 item 3: a deployment naming a variable the mount does not
        allow is EINVAL at close, with one log line; the allow-list option
        admits more names."""
        d = {"protocol": "http", "url": "http://127.0.0.1:9/hook",
             "model_path": self.m.mnt + "/sampler/{checkpoint}",
             "token_env": "AWS_SECRET_ACCESS_KEY"}
        f = open(self.m.path("deployments", "steal"), "w")
        f.write(json.dumps(d))
        with self.assertRaises(OSError) as cm:
            try:
                f.close()
            finally:
                f.close()
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertNotIn("steal", os.listdir(self.m.path("deployments")))
        lines = [l for l in self.m.log().splitlines() if "AWS_SECRET_ACCESS_KEY" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("EINVAL", lines[0])
        # Allowed by --hotload-token-env.
        m2 = self.mount("mnt2", args=["--hotload-token-env=HF_TOKEN,AWS_SECRET_ACCESS_KEY"])
        with open(m2.path("deployments", "ok"), "w") as f:
            json.dump(d, f)
        self.assertIn("ok", os.listdir(m2.path("deployments")))
        m2.stop()
        # A file stored by that mount is still refused here, at hotload time.
        self.assertErrno(errno.EINVAL, self.hotload, "s1", "ok")
        self.assertIn("not a token variable this mount allows", self.status("s1")["error"])

    def test_echoed_token_never_leaks(self):
        """Issue 9 item 3: a server echoing the token in a long message, the
        token starting at byte 360 and running past byte 384 of what the
        client keeps: no piece of it in `cat X/hotload` or the log."""
        wrong = "tok-WRONG-" + "5a6b7c8d9e0f" * 3
        m2 = self.mount("mnt2", env={"CKPTFS_TOKEN_WRONG": wrong})
        hk = self.server("http", "--token", TOKEN, "--echo-auth", "315")
        with open(m2.path("deployments", "hook"), "w") as f:
            json.dump({"protocol": "http", "url": hk.url, "timeout_s": 10,
                       "model_path": m2.mnt + "/sampler/{checkpoint}",
                       "token_env": "CKPTFS_TOKEN_WRONG"}, f)
        fd = os.open(m2.path("sampler", "s1", "hotload"), os.O_WRONLY | os.O_TRUNC)
        with self.assertRaises(OSError) as cm:
            os.write(fd, b"hook\n")
        os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertEqual(hk.state()["auth_seen"], ["Bearer " + wrong])
        with open(m2.path("sampler", "s1", "hotload")) as f:
            status = f.read()
        self.assertIn("Unauthorized: xxx", status)
        self.assertIn("[redacted]", status)     # masked, then cut
        m2.stop()
        log = m2.log()
        for i in range(len(wrong) - 5):
            piece = wrong[i:i + 6]
            self.assertNotIn(piece, status)
            self.assertNotIn(piece, log)

    def test_hung_server_bounded(self):
        """Issue 9 item 6: hotloads to a server that accepts and never
        answers hold at most --hotload-max FUSE threads; one more is EBUSY at
        once; listings, stat and reads stay fast; the hung ones end with
        ETIMEDOUT per timeout_s."""
        m2 = self.mount("mnt2", args=["--hotload-max=2"])
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)                 # the kernel accepts; nobody answers
        self.addCleanup(hung.close)
        with open(m2.path("deployments", "hung"), "w") as f:
            json.dump({"protocol": "sglang", "timeout_s": 8,
                       "url": "http://127.0.0.1:%d" % hung.getsockname()[1],
                       "model_path": m2.mnt + "/sampler/{checkpoint}"}, f)
        results = {}

        def run(ck):
            t = time.time()
            fd = os.open(m2.path("sampler", ck, "hotload"), os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, b"hung\n")
                results[ck] = (0, time.time() - t)
            except OSError as e:
                results[ck] = (e.errno, time.time() - t)
            finally:
                os.close(fd)
        ts = [threading.Thread(target=run, args=(c,)) for c in ("s0", "s1")]
        for t in ts:
            t.start()
        # A third checkpoint: a write to s0's or s1's hotload file would wait
        # for the hung one in the kernel (one writer per inode).
        os.mkdir(m2.path("sampler", "s2"))
        with open(m2.path("sampler", "s2", "config.json"), "w") as f:
            f.write("{}")
        time.sleep(1.5)                 # both are inside write(2) now
        self.assertEqual(results, {})
        t = time.time()
        fd = os.open(m2.path("sampler", "s2", "hotload"), os.O_WRONLY | os.O_TRUNC)
        with self.assertRaises(OSError) as cm:
            os.write(fd, b"hung\n")
        os.close(fd)
        self.assertEqual(cm.exception.errno, errno.EBUSY)
        self.assertLess(time.time() - t, 3)
        t = time.time()
        self.assertEqual(sorted(os.listdir(m2.path("sampler"))), ["s0", "s1", "s2"])
        os.stat(m2.path("sampler", "s1", "model.safetensors"))
        with open(m2.path("sampler", "s1", "config.json")) as f:
            self.assertEqual(json.load(f), {"step": "s1"})
        self.assertEqual(sha256_tree(m2.path("sampler", "s0")),
                         sha256_tree(os.path.join(self.src, "s0")))
        self.assertLess(time.time() - t, 3)
        for th in ts:
            th.join(30)
        self.assertEqual({k: v[0] for k, v in results.items()},
                         {"s0": errno.ETIMEDOUT, "s1": errno.ETIMEDOUT})
        for _, dt in results.values():
            self.assertLess(dt, 8 + 5)
        m2.stop()
        busy = [l for l in m2.log().splitlines() if "already in flight" in l]
        self.assertEqual(len(busy), 1, busy)
        self.assertIn("EBUSY", busy[0])

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
