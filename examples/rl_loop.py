#!/usr/bin/env python3
"""rl_loop.py: an RL training loop's checkpoint traffic through ckptfs,
standard library only.

Each step writes the policy weights (a bf16 safetensors file) and its config
into MNT/sampler/step-NNNN/, hotloads the step into the inference deployment
that generates the next rollouts (the write blocks until the server confirms
it serves the new weights), scores the step, and at the end promotes the
best step to a deployable model with one symlink.

    python3 examples/rl_loop.py MNT DEPLOYMENT [--steps 5] [--model-id best-policy]

The "training" here is a stand-in (a few weights nudged each step, the way
small-lr Adam steps change bf16 values); everything the filesystem sees is
what a real trainer would do.
"""
import argparse
import json
import os
import random
import struct
import sys


def write_safetensors(path, tensors):
    """tensors: {name: (shape, list of uint16 bf16 bit patterns)}"""
    header, blobs, off = {}, [], 0
    for name, (shape, values) in tensors.items():
        data = struct.pack("<%dH" % len(values), *values)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())       # durable in the store when this returns
    os.rename(tmp, path)           # renames stay inside the checkpoint


def bf16(x):
    return struct.unpack("<I", struct.pack("<f", x))[0] >> 16


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mnt")
    ap.add_argument("deployment")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--model-id", default="best-policy")
    ap.add_argument("--size", type=int, default=1 << 18, help="weights per tensor")
    args = ap.parse_args()

    rng = random.Random(0)
    weights = {"policy.w1": [bf16(rng.gauss(0, 0.02)) for _ in range(args.size)],
               "policy.w2": [bf16(rng.gauss(0, 0.02)) for _ in range(args.size)]}
    best = (None, float("-inf"))
    for step in range(args.steps):
        if step:   # one optimizer step: ~2% of bf16 values move by one ulp
            for vals in weights.values():
                for i in rng.sample(range(len(vals)), len(vals) // 50):
                    vals[i] = (vals[i] + rng.choice((-1, 1))) & 0xFFFF
        name = "step-%04d" % step
        ckpt = os.path.join(args.mnt, "sampler", name)
        os.makedirs(ckpt, exist_ok=True)
        write_safetensors(os.path.join(ckpt, "model.safetensors"),
                          {k: ([len(v)], v) for k, v in weights.items()})
        with open(os.path.join(ckpt, "config.json"), "w") as f:
            json.dump({"step": step, "model_type": "toy-policy"}, f)

        # Weight sync: blocks until the deployment serves this step.
        try:
            with open(os.path.join(ckpt, "hotload"), "w") as f:
                f.write(args.deployment + "\n")
        except OSError as e:
            with open(os.path.join(ckpt, "hotload")) as f:
                print("hotload of %s failed: %s\n%s" % (name, e, f.read()), file=sys.stderr)
            return 1
        kind = os.getxattr(ckpt, "user.ckptfs.kind").decode()
        stored = int(os.getxattr(ckpt, "user.ckptfs.stored_bytes"))
        logical = int(os.getxattr(ckpt, "user.ckptfs.logical_bytes"))
        score = rng.random()   # the rollouts' reward would go here
        print("%s  %-5s  stored %8d of %8d bytes  hotloaded  reward %.3f"
              % (name, kind, stored, logical, score))
        if score > best[1]:
            best = (name, score)

    # Promote the best step: a pinned, read-only model (a delta is
    # materialized into full weights).
    link = os.path.join(args.mnt, "models", args.model_id)
    os.symlink(os.path.join("..", "sampler", best[0]), link)
    print("promoted %s -> models/%s" % (best[0], args.model_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
