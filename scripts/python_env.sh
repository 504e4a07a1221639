# Sourced by the GPU scripts after `cd` to the repository root: ROOT, the Python to use (PYTHON, else the
# project's .venv, else python3), the package importable from the checkout, unbuffered output.
ROOT=$(pwd)
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
