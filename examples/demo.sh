#!/bin/bash
# demo.sh: the main job, end to end, on a local store: mount, write a base
# checkpoint, write a delta checkpoint, list, verify every byte, promote the
# delta to a model, hotload it into a running (stand-in) SGLang server that
# reads the weights through the mount, show what was stored, unmount.
# Uses the binary in ./build (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPTFS=${CKPTFS:-$PWD/build/src/cli/ckptfs}
work=$(mktemp -d /tmp/ckptfs-demo.XXXXXX)
mnt=$work/mnt store=$work/store
mkdir -p "$mnt"
cleanup() {
	[ -n "${server:-}" ] && kill "$server" 2>/dev/null
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

say "promote: ln -s ../sampler/step-0001 models/demo-model (the delta is materialized)"
ln -s ../sampler/step-0001 "$mnt/models/demo-model"
ls -l "$mnt/models/"
(cd "$work/out/step-0001" && sha256sum -- *) > "$work/want"
(cd "$mnt/models/demo-model" && sha256sum -c --quiet "$work/want") && echo "model: all files identical"

say "hotload: a loopback SGLang stand-in reads the checkpoint through the mount"
/usr/bin/python3 tests/servers/standin.py --protocol sglang --port 0 --portfile "$work/port" &
server=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
cat > "$mnt/deployments/demo" <<JSON
{"protocol": "sglang", "url": "http://127.0.0.1:$(cat "$work/port")",
 "model_path": "$mnt/sampler/{checkpoint}", "timeout_s": 60}
JSON
echo demo > "$mnt/sampler/step-0001/hotload"
cat "$mnt/sampler/step-0001/hotload"
echo "deployment now serves: $(getfattr --only-values -n user.ckptfs.current "$mnt/deployments/demo")"
curl -s "http://127.0.0.1:$(cat "$work/port")/model_info"; echo

fusermount3 -u "$mnt"
wait "$daemon"; daemon=
say "ckptfs stat / fsck"
"$CKPTFS" stat "$store"
"$CKPTFS" fsck "$store"
raw=$(du -sb "$work/out" | cut -f1); stored=$(du -sb "$store" | cut -f1)
awk -v r="$raw" -v s="$stored" 'BEGIN { printf "raw %d bytes (two checkpoints), store %d bytes incl. the promoted model: %.2f of raw\n", r, s, s / r }'
say "demo finished"
