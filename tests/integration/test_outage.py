"""Issue 9 item 7: the S3 store goes away under a mount. A loopback proxy in
front of the test RGW is cut; while it is down, listings, stats and reads of
open files must return within one store deadline (CKPTFS_S3_TIMEOUT), serve
the last good listing, never report a committed file as ENOENT, and fail
only with EIO or ETIMEDOUT. (Before: listings were refreshed under the
global lock and every caller retried with a fresh deadline, so one `ls`
took many deadlines and everything else waited behind it.)"""
import errno
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from ckptfs_testlib import (BACKEND, MountTest, TcpRelay, random_file, requires_fuse,
                            sha256_file)

DEADLINE = 3.0          # CKPTFS_S3_TIMEOUT: one request, retries included
ALLOWED = (errno.EIO, errno.ETIMEDOUT)


@requires_fuse
@unittest.skipUnless(BACKEND == "s3", "S3-only tests (CKPTFS_TEST_BACKEND=s3)")
class StoreOutage(MountTest):
    def test_cut_store_bounded_and_no_enoent(self):
        port = int(self.s3.endpoint.rsplit(":", 1)[1])
        proxy = TcpRelay(port)
        env = dict(AWS_ENDPOINT_URL="http://127.0.0.1:%d" % proxy.port,
                   CKPTFS_S3_TIMEOUT=str(DEADLINE))
        m = self.mount(env=env)
        ck = m.path("sampler", "s")
        os.mkdir(ck)
        srcs = {}
        for name, size in (("a", 6 << 20), ("b", 300 << 10)):
            srcs[name] = os.path.join(self.src, name)
            random_file(srcs[name], size, seed=len(name) + size)
            with open(srcs[name], "rb") as f, open(os.path.join(ck, name), "wb") as g:
                g.write(f.read())
        held = open(os.path.join(ck, "a"), "rb")
        want_a = held.read()
        self.assertEqual(len(want_a), 6 << 20)
        proxy.cut()
        try:
            results = []

            def timed(what, fn):
                t0 = time.monotonic()
                try:
                    fn()
                    err = 0
                except OSError as e:
                    err = e.errno
                results.append((what, err, time.monotonic() - t0))

            def ls_sampler():
                self.assertIn("s", os.listdir(m.path("sampler")))

            def ls_ckpt():
                self.assertEqual(sorted(os.listdir(ck)), ["a", "b"])

            def read_held():
                self.assertEqual(os.pread(held.fileno(), len(want_a), 0), want_a)

            ops = [("ls sampler", ls_sampler), ("ls s", ls_ckpt),
                   ("stat a", lambda: os.stat(os.path.join(ck, "a"))),
                   ("stat b", lambda: os.stat(os.path.join(ck, "b"))),
                   ("read open a", read_held)]
            # Several rounds, so some callers meet a refresh in flight and
            # some start their own (list-ttl is 1 s).
            t_end = time.monotonic() + 3 * DEADLINE
            rounds = 0
            while time.monotonic() < t_end:
                ts = [threading.Thread(target=timed, args=op) for op in ops]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                rounds += 1
                time.sleep(0.4)
            timed("mkdir", lambda: os.mkdir(os.path.join(ck, "new")))
            for what, err, took in results:
                self.assertNotEqual(err, errno.ENOENT, "%s: ENOENT while the store is down" % what)
                self.assertTrue(err == 0 or err in ALLOWED, "%s: %s" % (what, errno.errorcode.get(err)))
                # Under two deadlines: one, plus slack for a loaded machine
                # (5.007 s was seen under ASan). Before the fix a caller
                # waited for many.
                self.assertLess(took, 2 * DEADLINE, "%s took %.1f s" % (what, took))
            for what, err, _ in results:
                if what != "mkdir":
                    self.assertEqual(err, 0, "%s failed with %s: the last good listing and the "
                                     "cache serve it" % (what, errno.errorcode.get(err)))
            self.assertIn(dict((w, e) for w, e, _ in results)["mkdir"], ALLOWED, m.log())
            self.assertGreaterEqual(rounds, 3)
        finally:
            proxy.mend()    # the server is back
        try:
            time.sleep(1.5)
            for name in srcs:
                self.assertEqual(sha256_file(os.path.join(ck, name)), sha256_file(srcs[name]))
            os.mkdir(os.path.join(ck, "after"))
            held.close()
            m.stop()
        finally:
            proxy.close()


if __name__ == "__main__":
    unittest.main()
