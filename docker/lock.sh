#!/usr/bin/env bash
# Rewrite docker/constraints.txt: the packages a clean install of the serving extras resolves
# to, pinned at the versions of the environment the tests ran in (TESTED, default .venv).
#   docker/lock.sh            # after changing dependencies in pyproject.toml, then run the tests
set -euo pipefail
cd "$(dirname "$0")/.."
tested=${TESTED:-.venv}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet ".[cpu,serve,s3,triton]"
"$scratch/venv/bin/pip" freeze --all > "$scratch/clean.txt"
"$tested/bin/pip" freeze --all > "$scratch/tested.txt"
python3 - "$scratch/clean.txt" "$scratch/tested.txt" <<'PY'
import sys
def pins(path):
    return {line.split("==")[0].lower(): line.strip().split("==", 1) for line in open(path) if "==" in line}
clean, tested = pins(sys.argv[1]), pins(sys.argv[2])
rows = [f"{name}=={tested.get(key, (name, version))[1]}" for key, (name, version) in sorted(clean.items())
        if key not in ("qc", "pip", "setuptools", "wheel")]
header = [line for line in open("docker/constraints.txt") if line.startswith("#")]
open("docker/constraints.txt", "w").write("".join(header) + "\n".join(rows) + "\n")
print(f"docker/constraints.txt: {len(rows)} pins")
PY
