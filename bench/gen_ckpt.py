#!/usr/bin/python3
"""Generate seeded, realistic bf16 safetensors checkpoints for the ckptfs benchmarks.

    gen_ckpt.py --out DIR --size-mb 300 --steps 0,1,5,25 --seed 1 [--lr 1e-5] [--files 2]

writes, for every requested step S,

    DIR/step-SSSS/model-0000N-of-0000M.safetensors   the weights, sharded into M files
    DIR/step-SSSS/model.safetensors.index.json       (only when M > 1, as Hugging Face does)
    DIR/step-SSSS/config.json                        identical for all steps

The model is a Llama-shaped transformer sized to --size-mb MiB: a token embedding,
per layer q/k/v/o attention projections (grouped-query k/v), gate/up/down MLP
matrices and two RMSNorm vectors, a final norm, plus one fp32 tensor (learned
position embeddings). Everything but that tensor is bf16.

Weights (step 0) are drawn like a trained model rather than uniform bytes: normal
values with a per-tensor std around 0.02, multiplied by a log-normal scale per row
and per column (which gives the heavier tails of real weights) and a few outlier
input channels; norm vectors are near 1.0. They live as fp32 "master" weights; a
checkpoint stores their round-to-nearest-even bf16 image.

Steps simulate Adam: each step adds to every master weight

    lr * (A_DRIFT * d + A_NOISE * s_t)          (A_DRIFT = 0.4, A_NOISE = 0.1)

where d in [-1, 1) is a per-element direction that persists across steps (Adam's
momentum on a consistent gradient) and s_t = +-1 is fresh per step (gradient noise);
|update| <= lr/2, as Adam's normalized update m/(sqrt(v)+eps) is at most about 1. The
bf16 value changes only when its master crosses a rounding boundary, so a small fraction
of values changes per step, mostly by 1 ulp, and the fraction grows with lr x steps.
The constants are fitted to the real 82M-model measurements in shared/PERFORMANCE.md:
lr 1e-5 gives ~8% changed values after 1 step and ~25% after 5 steps, lr 1e-4 ~39%
after 1 step; lr 1e-6 gives the ~1% of large-model RL runs.

The per-step signs are drawn as bits, 8 steps per random byte, so step k costs about
k/8 byte draws per element and the result for a step does not depend on which other
steps were requested. Generation is chunked (whole rows, ~128K elements at a time),
vectorized, and memory-bounded; output is deterministic for a given seed.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

MiB = 1 << 20

# Calibration (see the module docstring): the update per step is
# lr * (A_DRIFT * d + A_NOISE * s_t), d uniform in [-1, 1), s_t = +-1.
# Fitted to the three real data points in shared/PERFORMANCE.md: at lr 1e-5 this
# gives ~7.8% changed after 1 step (real: ~8%) and ~25% after 5 (real: ~24%); at
# lr 1e-4, ~39% after 1 step (real: ~36%). Momentum (beta1 = 0.9) makes Adam's
# consecutive updates strongly correlated, hence the large persistent part.
A_DRIFT = 0.4
A_NOISE = 0.1
CHUNK_ELEMS = 1 << 17        # elements per generated chunk (rounded to whole rows)
SEED_TAG = 0x636B7074        # "ckpt": keeps these streams apart from other users of --seed

# Stream ids inside one chunk's SeedSequence.
STREAM_WEIGHTS, STREAM_DIRECTION, STREAM_SCALES, STREAM_BLOCK0 = 0, 1, 2, 16


# --------------------------------------------------------------------------- model

class Tensor:
    """One tensor of the model: name, shape, dtype and how to draw its values."""

    def __init__(self, name, shape, dtype, kind, std=0.02):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = dtype          # "BF16" or "F32"
        self.kind = kind            # "matrix", "norm" or "embed_pos"
        self.std = std
        self.index = -1             # position in the model, part of the seed

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def itemsize(self):
        return 2 if self.dtype == "BF16" else 4

    @property
    def nbytes(self):
        return self.numel * self.itemsize


def round_up(x, m):
    return (x + m - 1) // m * m


def choose_architecture(total_bytes):
    """Pick hidden size, layers and vocab so the bf16 model is about total_bytes."""
    params = total_bytes // 2
    for d in (256, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096, 5120, 8192):
        head_dim = 64 if d <= 1024 else 128
        n_heads = d // head_dim
        n_kv = max(1, n_heads // 4)
        ffn = round_up(d * 8 // 3, 256)
        per_layer = 2 * d * d + 2 * d * n_kv * head_dim + 3 * d * ffn + 2 * d
        vocab_guess = min(32000, max(256, int(params * 0.25) // d))
        layers = round((params - vocab_guess * d) / per_layer)
        if layers <= max(8, d // 64):
            break
    layers = max(1, layers)
    # fp32 position table: at most 1024 rows and at most ~3% of the model.
    max_pos = max(16, min(1024, int(total_bytes * 0.03) // (4 * d)))
    # The vocabulary absorbs the remainder so the total lands close to the target.
    rest = params - layers * per_layer - d - 2 * max_pos * d
    vocab = max(256, rest // d // 64 * 64)
    return dict(hidden_size=d, num_hidden_layers=layers, num_attention_heads=n_heads,
                num_key_value_heads=n_kv, head_dim=head_dim, intermediate_size=ffn,
                vocab_size=vocab, max_position_embeddings=max_pos)


def build_tensors(cfg):
    d, ffn, kv = cfg["hidden_size"], cfg["intermediate_size"], \
        cfg["num_key_value_heads"] * cfg["head_dim"]
    # The fp32 tensor comes first: safetensors writers put the widest alignment first
    # so every tensor stays aligned to its element size.
    ts = [Tensor("model.embed_positions.weight", (cfg["max_position_embeddings"], d),
                 "F32", "embed_pos", std=0.01),
          Tensor("model.embed_tokens.weight", (cfg["vocab_size"], d), "BF16", "matrix",
                 std=0.025)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        ts += [Tensor(p + "input_layernorm.weight", (d,), "BF16", "norm"),
               Tensor(p + "self_attn.q_proj.weight", (d, d), "BF16", "matrix", 0.025),
               Tensor(p + "self_attn.k_proj.weight", (kv, d), "BF16", "matrix", 0.03),
               Tensor(p + "self_attn.v_proj.weight", (kv, d), "BF16", "matrix", 0.015),
               Tensor(p + "self_attn.o_proj.weight", (d, d), "BF16", "matrix", 0.015),
               Tensor(p + "post_attention_layernorm.weight", (d,), "BF16", "norm"),
               Tensor(p + "mlp.gate_proj.weight", (ffn, d), "BF16", "matrix", 0.02),
               Tensor(p + "mlp.up_proj.weight", (ffn, d), "BF16", "matrix", 0.02),
               Tensor(p + "mlp.down_proj.weight", (d, ffn), "BF16", "matrix", 0.015)]
    ts.append(Tensor("model.norm.weight", (d,), "BF16", "norm"))
    for i, t in enumerate(ts):
        t.index = i
    return ts


def shard(tensors, files):
    """Split the tensor list, in order, into `files` non-empty runs of about equal bytes:
    the i-th cut is the tensor boundary nearest to i/files of the total."""
    files = max(1, min(files, len(tensors)))
    ends, total = [], 0
    for t in tensors:
        total += t.nbytes
        ends.append(total)          # ends[j]: bytes up to and including tensor j
    cuts, prev = [], 0              # a cut c: the next shard starts at tensor c
    for i in range(1, files):
        lo, hi = prev + 1, len(tensors) - (files - i)   # keep every shard non-empty
        want = total * i / files
        c = min(range(lo, hi + 1), key=lambda c: abs(ends[c - 1] - want))
        cuts.append(c)
        prev = c
    bounds = [0] + cuts + [len(tensors)]
    return [tensors[a:b] for a, b in zip(bounds, bounds[1:])]


def safetensors_header(tensors):
    """The header bytes (length prefix included) and each tensor's data offset."""
    hdr = {"__metadata__": {"format": "pt"}}
    offsets, off = {}, 0
    for t in tensors:
        hdr[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                       "data_offsets": [off, off + t.nbytes]}
        offsets[t.name] = off
        off += t.nbytes
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * (round_up(len(js), 8) - len(js))
    return len(js).to_bytes(8, "little") + js, offsets, off


# --------------------------------------------------------------------------- numerics

def rng_for(seed, tensor_index, chunk_index, stream):
    ss = np.random.SeedSequence([SEED_TAG, seed, tensor_index, chunk_index, stream])
    return np.random.Generator(np.random.SFC64(ss))


def to_bf16(x):
    """fp32 -> bf16 bits (uint16), round to nearest even. No NaNs occur here."""
    b = x.view(np.uint32)
    r = (b >> 16) & 1
    r += 0x7FFF
    r += b
    r >>= 16
    return r.astype(np.uint16)


def standard_normal(g, n):
    """float32 N(0, 1) by Box-Muller: about twice as fast as Generator.standard_normal."""
    h = (n + 1) // 2
    u = g.random(2 * h, dtype=np.float32)
    r = np.subtract(np.float32(1.0), u[:h])      # (0, 1], so the log is finite
    np.log(r, out=r)
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    th = u[h:]
    th *= np.float32(2.0 * np.pi)
    out = np.empty(2 * h, dtype=np.float32)
    np.cos(th, out=out[:h])
    np.sin(th, out=out[h:])
    out[:h] *= r
    out[h:] *= r
    return out[:n]


M1, M2, M4 = (np.uint64(0x5555555555555555), np.uint64(0x3333333333333333),
              np.uint64(0x0F0F0F0F0F0F0F0F))


def popcount_bytes(b):
    """Per-byte popcount of a uint8 array whose length is a multiple of 8 (SWAR)."""
    x = b.view(np.uint64)
    x = x - ((x >> np.uint64(1)) & M1)
    x = (x & M2) + ((x >> np.uint64(2)) & M2)
    x = (x + (x >> np.uint64(4))) & M4
    return x.view(np.uint8)


class ChunkState:
    """fp32 master weights of one chunk and the sign-noise sum, walked step by step."""

    def __init__(self, seed, t, chunk_index, rows, row_scale, col_scale, lr):
        self.seed, self.t, self.ci = seed, t, chunk_index
        cols = t.shape[-1] if len(t.shape) > 1 else t.numel
        n = rows * cols if len(t.shape) > 1 else t.numel
        self.n = n
        self.npad = round_up(n, 8)
        w = standard_normal(rng_for(seed, t.index, chunk_index, STREAM_WEIGHTS), n)
        if t.kind == "norm":
            w *= 0.05
            w += 1.0
        else:
            w *= t.std
            w2 = w.reshape(rows, cols)
            w2 *= row_scale[:, None]
            w2 *= col_scale[None, :]
        self.master0 = w
        g = rng_for(seed, t.index, chunk_index, STREAM_DIRECTION)
        # lr * A_DRIFT * d, d in [-1, 1): the persistent part of each step's update.
        self.drift = (g.integers(-128, 128, n, dtype=np.int8).astype(np.float32)
                      * np.float32(lr * A_DRIFT / 128.0))
        self.noise_scale = lr * A_NOISE
        self.count = np.zeros(n, dtype=np.int16)   # number of +1 signs so far
        self.block = -1                            # cached 8-step block of sign bits
        self.block_bits = None
        self.full_blocks = 0                       # blocks already added to count

    def _bits(self, b):
        if self.block != b:
            g = rng_for(self.seed, self.t.index, self.ci, STREAM_BLOCK0 + b)
            self.block_bits = np.frombuffer(g.bytes(self.npad), dtype=np.uint8).copy()
            self.block = b
        return self.block_bits

    def master_at(self, k):
        """fp32 master weights after k steps (k must not decrease between calls)."""
        if k == 0:
            return self.master0
        b, j = (k - 1) // 8, (k - 1) % 8 + 1         # step k is bit j-1 of block b
        while self.full_blocks < b:
            self.count += popcount_bytes(self._bits(self.full_blocks))[:self.n]
            self.full_blocks += 1
        bits = self._bits(b)
        if j < 8:
            bits = bits & np.uint8((1 << j) - 1)
        ones = self.count + popcount_bytes(bits)[:self.n]
        # master0 + k * drift + noise_scale * (sum of k signs = 2 * ones - k)
        m = ones.astype(np.float32)
        m *= np.float32(2.0 * self.noise_scale)
        m += np.float32(-k * self.noise_scale)
        m += self.master0
        m += self.drift * np.float32(k)
        return m


# --------------------------------------------------------------------------- driver

class Stats:
    """Per-step counts of how bf16 values differ from the base (step 0)."""

    def __init__(self):
        self.bf16 = 0
        self.changed = self.ulp1 = self.ulp2 = self.hi = 0
        self.f32 = self.f32_changed = 0

    def add_bf16(self, base, cur):
        self.bf16 += base.size
        x = base ^ cur
        self.changed += int(np.count_nonzero(x))
        self.hi += int(np.count_nonzero(x > 0xFF))
        # With equal signs (x < 0x8000) the ulp distance is the difference of the
        # bit patterns; int16 wrap-around only happens for opposite signs.
        dist = cur.view(np.int16) - base.view(np.int16)
        same_sign = x < 0x8000
        self.ulp1 += int(np.count_nonzero(same_sign & ((dist == 1) | (dist == -1))))
        self.ulp2 += int(np.count_nonzero(same_sign & ((dist == 2) | (dist == -2))))

    def add_f32(self, base, cur):
        self.f32 += base.size
        self.f32_changed += int(np.count_nonzero(base.view(np.uint32) != cur.view(np.uint32)))


def parse_steps(s):
    steps = sorted({int(x) for x in s.split(",") if x.strip() != ""})
    if not steps or steps[0] < 0:
        raise argparse.ArgumentTypeError("steps must be non-negative integers")
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--size-mb", type=float, default=300,
                    help="model size in MiB (bf16), default 300")
    ap.add_argument("--steps", type=parse_steps, default=[0, 1, 5, 25],
                    help="comma-separated steps to write, default 0,1,5,25")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-5,
                    help="learning rate of the simulated Adam updates, default 1e-5")
    ap.add_argument("--files", type=int, default=2, help="safetensors shards, default 2")
    ap.add_argument("--quiet", action="store_true", help="print only the summary table")
    args = ap.parse_args()

    t_start = time.monotonic()
    cfg = choose_architecture(int(args.size_mb * MiB))
    tensors = build_tensors(cfg)
    shards = shard(tensors, args.files)
    nfiles = len(shards)
    steps = args.steps

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
              **cfg}
    names = [f"model-{i + 1:05d}-of-{nfiles:05d}.safetensors" for i in range(nfiles)]
    layouts = [safetensors_header(s) for s in shards]
    total = sum(len(h) + size for h, _, size in layouts)
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)},
             "weight_map": {t.name: names[i] for i, s in enumerate(shards) for t in s}}

    step_dirs = {k: os.path.join(args.out, f"step-{k:04d}") for k in steps}
    for k, d in step_dirs.items():
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        if nfiles > 1:
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump(index, f, indent=2)
                f.write("\n")

    if not args.quiet:
        print(f"model: d={cfg['hidden_size']} layers={cfg['num_hidden_layers']} "
              f"vocab={cfg['vocab_size']} ffn={cfg['intermediate_size']} "
              f"tensors={len(tensors)} files={nfiles} "
              f"bytes/checkpoint={total} ({total / MiB:.1f} MiB)", file=sys.stderr)

    stats = {k: Stats() for k in steps if k > 0}
    for fi, (tlist, (hdr, _, _)) in enumerate(zip(shards, layouts)):
        outs = {k: open(os.path.join(step_dirs[k], names[fi]), "wb") for k in steps}
        try:
            for f in outs.values():
                f.write(hdr)
            for t in tlist:
                write_tensor(args, t, steps, outs, stats)
        finally:
            for f in outs.values():
                f.close()

    elapsed = time.monotonic() - t_start
    print_summary(args, steps, step_dirs, total, stats, elapsed)


def write_tensor(args, t, steps, outs, stats):
    """Generate one tensor for every requested step, chunk by chunk, and append it."""
    if len(t.shape) > 1:
        rows, cols = t.shape[0], t.numel // t.shape[0]
        g = rng_for(args.seed, t.index, 0, STREAM_SCALES)
        row_scale = np.exp(g.standard_normal(rows, dtype=np.float32) * np.float32(0.25))
        col_scale = np.exp(g.standard_normal(cols, dtype=np.float32) * np.float32(0.25))
        # A few outlier input channels, as trained transformers have.
        n_out = max(1, cols // 256)
        col_scale[g.choice(cols, n_out, replace=False)] *= np.float32(4.0)
        rows_per_chunk = max(1, CHUNK_ELEMS // cols)
    else:
        rows, cols, row_scale, col_scale, rows_per_chunk = 1, t.numel, None, None, 1
    for ci, r0 in enumerate(range(0, rows, rows_per_chunk)):
        r1 = min(rows, r0 + rows_per_chunk)
        st = ChunkState(args.seed, t, ci, r1 - r0,
                        row_scale[r0:r1] if row_scale is not None else None, col_scale,
                        args.lr)
        base = None
        for k in steps:
            m = st.master_at(k)
            if t.dtype == "BF16":
                cur = to_bf16(m)
                if base is None:
                    base = cur if k == 0 else to_bf16(st.master0)
                if k > 0:
                    stats[k].add_bf16(base, cur)
            else:
                cur = m
                if k > 0:
                    stats[k].add_f32(st.master0, cur)
            outs[k].write(memoryview(cur))


def print_summary(args, steps, step_dirs, total, stats, elapsed):
    print(f"# gen_ckpt: seed {args.seed}, lr {args.lr:g}, {total} bytes "
          f"({total / MiB:.1f} MiB) per checkpoint, {len(steps)} checkpoint(s) "
          f"in {elapsed:.1f} s ({total * len(steps) / MiB / elapsed:.0f} MiB/s)")
    print(f"# out: {args.out}")
    print("| step | bf16 changed vs base | of which 1 ulp | 2 ulp | >2 ulp "
          "| high byte changed | fp32 changed |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k in steps:
        if k == 0:
            print("| 0 | (base) | | | | | |")
            continue
        s = stats[k]
        ch = max(1, s.changed)
        print(f"| {k} | {100 * s.changed / s.bf16:.2f}% | {100 * s.ulp1 / ch:.1f}% "
              f"| {100 * s.ulp2 / ch:.1f}% | {100 * (s.changed - s.ulp1 - s.ulp2) / ch:.1f}% "
              f"| {100 * s.hi / s.bf16:.3f}% | {100 * s.f32_changed / max(1, s.f32):.1f}% |")


if __name__ == "__main__":
    main()
