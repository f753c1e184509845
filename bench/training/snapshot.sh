#!/bin/sh
# Run bench/training/run.py on exactly the committed code (HEAD), not on a shared working tree that
# others are editing: export HEAD to /tmp, run there at nice 19, write results beside this script.
#   bench/training/snapshot.sh [run.py arguments]   (an --out path must be absolute: the run's cwd is the snapshot)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sha=$(git -C "$root" rev-parse HEAD)
dest=/tmp/artq-snapshot-$sha
rm -rf "$dest" && mkdir -p "$dest"
git -C "$root" archive HEAD | tar -x -C "$dest"
echo "$sha" > "$dest/COMMIT"
mkdir -p "$dest/bench/training"
cp "$here/run.py" "$dest/bench/training/run.py"  # this bench, as it is now
export ARTQ_BENCH_TRAINING_CACHE="$here/.cache"
cd "$dest"
nice -n 19 "$root/.venv/bin/python" bench/training/run.py --out "$here/results.json" "$@"
