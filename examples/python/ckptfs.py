"""ckptfs from Python without a compiled extension: ctypes over libckptfs.

    import ckptfs
    with ckptfs.Store("s3://bucket/runs", job="rl-7") as st:   # or a directory
        ckptfs.save_safetensors(st, "sampler/step-2/model.safetensors", tensors)
        weights = ckptfs.load_safetensors(st, "sampler/step-2/model.safetensors")
        print(st.info("sampler/step-2"))        # kind "delta", base "step-1", ...

A checkpoint written here is exactly one written through a ckptfs mount (same
policy: the job's first sampler checkpoint is a base, later ones XOR deltas).
The library is found through $CKPTFS_LIB, then the linker's search path
(libckptfs.so.1, installed by `meson install`). Errors raise OSError with the
errno the C API returned. Tensors are numpy arrays (numpy is needed only by the
safetensors helpers; bf16 is kept as raw uint16, numpy has no bfloat16).
"""
import ctypes
import ctypes.util
import errno as _errno
import json
import os
import struct

API_VERSION = 1


def _load():
    name = os.environ.get("CKPTFS_LIB") or ctypes.util.find_library("ckptfs") or "libckptfs.so.1"
    lib = ctypes.CDLL(name)
    if lib.ckptfs_api_version() < API_VERSION:
        raise OSError(_errno.ENOSYS, "libckptfs API %d < %d" % (lib.ckptfs_api_version(),
                                                                 API_VERSION))
    P, C, I, U64, SZ = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_size_t
    PP = ctypes.POINTER(ctypes.c_void_p)
    sig = {
        "ckptfs_open": (I, [C, C, ctypes.POINTER(C), PP]),
        "ckptfs_close": (None, [P]),
        "ckptfs_mkckpt": (I, [P, C, C]),
        "ckptfs_create": (I, [P, C, ctypes.c_uint32, I, PP]),
        "ckptfs_write": (ctypes.c_ssize_t, [P, P, SZ]),
        "ckptfs_open_file": (I, [P, C, PP]),
        "ckptfs_pread": (ctypes.c_ssize_t, [P, P, SZ, U64]),
        "ckptfs_file_size": (U64, [P]),
        "ckptfs_file_close": (I, [P]),
        "ckptfs_abort": (None, [P]),
        "ckptfs_stat": (I, [P, C, P]),
        "ckptfs_readdir": (I, [P, C, P, P]),
        "ckptfs_checkpoints_jsonl": (I, [P, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(SZ)]),
        "ckptfs_promote": (I, [P, C, C]),
        "ckptfs_set_ttl": (I, [P, C, ctypes.c_int64]),
        "ckptfs_remove": (I, [P, C]),
        "ckptfs_info": (I, [P, C, P]),
        "ckptfs_info_release": (None, [P]),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_lib = None
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


def lib():
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


def _check(rc, what):
    if rc < 0:
        raise OSError(-rc, "%s: %s" % (what, os.strerror(-rc)))
    return rc


def _b(s):
    return s.encode() if isinstance(s, str) else s


class _Stat(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("size", ctypes.c_uint64), ("mtime", ctypes.c_int64),
                ("mode", ctypes.c_uint32)]


class _Info(ctypes.Structure):
    _fields_ = [("dir", ctypes.c_char_p), ("name", ctypes.c_char_p), ("kind", ctypes.c_char_p),
                ("base", ctypes.c_char_p), ("snapshot", ctypes.c_char_p),
                ("created", ctypes.c_double), ("ttl", ctypes.c_int64),
                ("expires_at", ctypes.c_double), ("logical_bytes", ctypes.c_uint64),
                ("stored_bytes", ctypes.c_uint64), ("promotable", ctypes.c_int),
                ("priv_", ctypes.c_void_p)]


_DIRENT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Stat))


class File:
    """A file being written (Store.create) or read (Store.open)."""

    def __init__(self, handle, what):
        self._f, self._what = handle, what

    def write(self, data):
        if isinstance(data, bytes):
            ptr, n, keep = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data), data
        else:
            mv = memoryview(data).cast("B")
            if mv.readonly:
                return self.write(bytes(mv))
            keep = (ctypes.c_char * len(mv)).from_buffer(mv)   # no copy
            ptr, n = ctypes.addressof(keep), len(mv)
        _check(lib().ckptfs_write(self._f, ptr, n), self._what)
        del keep
        return n

    def size(self):
        return lib().ckptfs_file_size(self._f)

    def pread(self, size, offset):
        """Up to size bytes at offset (short only at the end of the file)."""
        buf = ctypes.create_string_buffer(size)
        n = _check(lib().ckptfs_pread(self._f, buf, size, offset), self._what)
        return buf.raw[:n]

    def readinto(self, mv, offset):
        """Read into a writable buffer (a numpy array's memory) at offset."""
        mv = memoryview(mv).cast("B")
        addr = ctypes.addressof((ctypes.c_char * len(mv)).from_buffer(mv))
        return _check(lib().ckptfs_pread(self._f, addr, len(mv), offset), self._what)

    def close(self):
        """For a file being written: commit (durable once this returns)."""
        if self._f:
            f, self._f = self._f, None
            _check(lib().ckptfs_file_close(f), self._what)

    def abort(self):
        if self._f:
            lib().ckptfs_abort(self._f)
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Store:
    """An open store (a directory or s3://BUCKET[/PREFIX]) as one job's view.
    options: mount option names, e.g. {"delta-policy": "auto", "lora": True}."""

    def __init__(self, store, job=None, options=None):
        opts = []
        for k, v in (options or {}).items():
            opts.append(k if v is True else "%s=%s" % (k, v))
        arr = (ctypes.c_char_p * (len(opts) + 1))(*[_b(o) for o in opts], None)
        h = ctypes.c_void_p()
        _check(lib().ckptfs_open(_b(store), _b(job) if job else None, arr, ctypes.byref(h)),
               "open %s" % store)
        self._h = h

    def close(self):
        if self._h:
            lib().ckptfs_close(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def mkckpt(self, path, kind=None):
        _check(lib().ckptfs_mkckpt(self._h, _b(path), _b(kind) if kind else None), path)

    def create(self, path, mode=0o644, make_checkpoint=True):
        f = ctypes.c_void_p()
        _check(lib().ckptfs_create(self._h, _b(path), mode, 1 if make_checkpoint else 0,
                                   ctypes.byref(f)), path)
        return File(f, path)

    def open(self, path):
        f = ctypes.c_void_p()
        _check(lib().ckptfs_open_file(self._h, _b(path), ctypes.byref(f)), path)
        return File(f, path)

    def read(self, path, offset=0, size=None):
        with self.open(path) as f:
            if size is None:
                size = max(0, f.size() - offset)
            return f.pread(size, offset)

    def write(self, path, data):
        with self.create(path) as f:
            f.write(data)

    def stat(self, path):
        st = _Stat()
        _check(lib().ckptfs_stat(self._h, _b(path), ctypes.byref(st)), path)
        return {"type": "dir" if st.type == 2 else "file", "size": st.size,
                "mtime": st.mtime, "mode": st.mode}

    def listdir(self, path):
        names = []

        def cb(arg, name, st):
            names.append(name.decode())
            return 0
        fn = _DIRENT(cb)
        _check(lib().ckptfs_readdir(self._h, _b(path), ctypes.cast(fn, ctypes.c_void_p), None),
               path)
        return names

    def info(self, path):
        """A checkpoint's metadata: kind, base, snapshot, bytes, TTL..."""
        i = _Info()
        _check(lib().ckptfs_info(self._h, _b(path), ctypes.byref(i)), path)
        try:
            return {k: (getattr(i, k).decode() if isinstance(getattr(i, k), bytes)
                        else getattr(i, k))
                    for k, _ in _Info._fields_ if k != "priv_"}
        finally:
            lib().ckptfs_info_release(ctypes.byref(i))

    def checkpoints(self):
        """The job's checkpoints.jsonl, parsed."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        _check(lib().ckptfs_checkpoints_jsonl(self._h, ctypes.byref(p), ctypes.byref(n)),
               "checkpoints.jsonl")
        try:
            text = ctypes.string_at(p, n.value).decode()
        finally:
            _libc.free(p)
        return [json.loads(line) for line in text.splitlines() if line]

    def promote(self, path, model_id):
        _check(lib().ckptfs_promote(self._h, _b(path), _b(model_id)), path)

    def set_ttl(self, path, seconds):
        _check(lib().ckptfs_set_ttl(self._h, _b(path), int(seconds)), path)

    def remove(self, path):
        _check(lib().ckptfs_remove(self._h, _b(path)), path)


# ---- safetensors, streamed: no copy of the whole file in memory ----

_DTYPES = {"BF16": ("uint16", 2), "F16": ("float16", 2), "F32": ("float32", 4),
           "F64": ("float64", 8), "I64": ("int64", 8), "I32": ("int32", 4),
           "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1), "BOOL": ("bool", 1)}


def save_safetensors(store, path, tensors, metadata=None, bf16=()):
    """Write {name: numpy array} as a safetensors file at path (the checkpoint
    is created with the policy if missing). Names in bf16 are uint16 arrays
    holding bfloat16 bits."""
    import numpy as np
    rev = {v[0]: k for k, v in _DTYPES.items()}
    header, off, order = {}, 0, sorted(tensors)
    for name in order:
        a = np.ascontiguousarray(tensors[name])
        dt = "BF16" if name in bf16 else rev[a.dtype.name]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with store.create(path) as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for name in order:
            f.write(np.ascontiguousarray(tensors[name]).reshape(-1).view(np.uint8))


def load_safetensors(store, path, names=None):
    """{name: numpy array} of the tensors of a safetensors file (only those
    in names, if given: each is one range read, as an mmap loader does)."""
    import numpy as np
    out = {}
    with store.open(path) as f:
        (hlen,) = struct.unpack("<Q", f.pread(8, 0))
        header = json.loads(f.pread(hlen, 8))
        for name, t in header.items():
            if name == "__metadata__" or (names is not None and name not in names):
                continue
            npdt, _ = _DTYPES[t["dtype"]]
            a, b = t["data_offsets"]
            arr = np.empty(int(np.prod(t["shape"], dtype=np.int64)), dtype=npdt)
            if b > a and f.readinto(arr.view(np.uint8), 8 + hlen + a) != b - a:
                raise OSError(_errno.EIO, "%s: tensor %s is truncated" % (path, name))
            out[name] = arr.reshape(t["shape"])
    return out
