#!/bin/bash
# demo.sh: the main job, end to end, on a local store: mount, write a base
# checkpoint, write a delta checkpoint, list, verify every byte, show what
# was stored, unmount. Uses the binary in ./build (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPTFS=${CKPTFS:-$PWD/build/src/cli/ckptfs}
work=$(mktemp -d /tmp/ckptfs-demo.XXXXXX)
mnt=$work/mnt store=$work/store
mkdir -p "$mnt"
cleanup() {
	mountpoint -q "$mnt" && fusermount3 -u "$mnt"
	[ -n "${daemon:-}" ] && wait "$daemon" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "generate a 64 MiB bf16 model and its next training step"
/usr/bin/python3 bench/gen_ckpt.py --out "$work/out" --size-mb 64 --steps 0,1 --seed 7 --lr 1e-6 >/dev/null

say "ckptfs mount $store $mnt --job=demo"
"$CKPTFS" mount -f "$store" "$mnt" --job=demo 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt"

say "base: cp step 0 into sampler/step-0000"
mkdir "$mnt/sampler/step-0000"
cp "$work/out/step-0000/"* "$mnt/sampler/step-0000/"
say "delta: cp step 1 into sampler/step-0001"
mkdir "$mnt/sampler/step-0001"
cp "$work/out/step-0001/"* "$mnt/sampler/step-0001/"

say "ls sampler/"
ls -l "$mnt/sampler"
say "getfattr sampler/step-0001"
getfattr -d -m user.ckptfs "$mnt/sampler/step-0001"
say "checkpoints.jsonl"
cat "$mnt/checkpoints.jsonl"

say "verify: sha256 of every file read back"
for s in 0000 0001; do
	(cd "$work/out/step-$s" && sha256sum -- *) > "$work/want"
	(cd "$mnt/sampler/step-$s" && sha256sum -c --quiet "$work/want")
	echo "step-$s: all files identical"
done

fusermount3 -u "$mnt"
wait "$daemon"; daemon=
say "ckptfs stat / fsck"
"$CKPTFS" stat "$store"
"$CKPTFS" fsck "$store"
raw=$(du -sb "$work/out" | cut -f1); stored=$(du -sb "$store" | cut -f1)
echo "raw $raw bytes, stored $stored bytes ($(( raw / (stored > 0 ? stored : 1) ))x smaller)"
say "demo finished"
