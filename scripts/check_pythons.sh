#!/usr/bin/env bash
# The Pythons that CI does not run (issue 24): `make check-pythons` or `bash scripts/check_pythons.sh [PYTHON ...]`
# (default: python3.12 python3.13). For each interpreter: a venv .venv-<version> with torch 2.13.0 (PyPI's build for
# that Python, ~5 GB with its CUDA libraries, 1-1.5 minutes to install here) and the test dependencies, then the
# parity, data and model tests (the fused loss's included) with this checkout on PYTHONPATH (requires-python names
# 3.11 only, so jepagolf itself is not installed there). tests/test_corpus.py builds the demo corpus and compares it
# with the pinned hashes, so a pass means the same shards and tokenizer as under 3.11; the parity test holds the
# reference's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
pythons=("$@")
[[ ${#pythons[@]} -gt 0 ]] || pythons=(python3.12 python3.13)
tests=(tests/test_baseline_parity.py tests/test_corpus.py tests/test_shards.py tests/test_build.py tests/test_bytes.py
       tests/test_model.py tests/test_fast_paths.py)
for py in "${pythons[@]}"; do
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=".venv-$version"
  start=$SECONDS
  # jepagolf's own dependencies but torch (pinned above them), and the test tools of its dev extra, from pyproject.toml:
  # a dependency added there reaches these venvs too (scipy once did not, and the CLI's error path failed on import).
  # The stamp holds the list, so a changed list reinstalls.
  reqs=$("$py" -c 'import re, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda r: re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower()
deps = [r for r in p["dependencies"] if name(r) != "torch"]
print("\n".join(deps + [r for r in p["optional-dependencies"]["dev"] if name(r) in {"pytest", "hypothesis", "pyarrow"}]))')
  if [[ ! -f "$venv/.installed" ]] || [[ "$(cat "$venv/.installed")" != "$reqs" ]]; then
    [[ -d "$venv" ]] || "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
    mapfile -t req_list <<< "$reqs"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${req_list[@]}"
    printf '%s' "$reqs" > "$venv/.installed"
  fi
  echo "check-pythons: $("$venv/bin/python" -VV | head -1): setup $((SECONDS - start)) s"
  start=$SECONDS
  PYTHONPATH="$PWD" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$venv/bin/python" -m pytest -p no:cacheprovider "${tests[@]}"
  echo "check-pythons: Python $version: tests passed in $((SECONDS - start)) s"
done
