#!/usr/bin/env bash
# Build the wheelhouse an SD card carries (contactpoint provision card --wheelhouse DIR): the
# package's own wheel and every arm64 wheel a contact point installs (the core, `edge` and
# `pi` extras; not what only the sink needs), for Raspberry Pi OS bookworm (Python 3.11) and
# trixie (Python 3.13), so that the device needs neither a compiler nor the network.
#
#   provisioning/wheelhouse.sh OUT_DIR        (from a development checkout: scripts/setup)
#
# Binary wheels come from the package index (pip download --only-binary=:all: for
# manylinux2014_aarch64 / manylinux_2_28_aarch64). Pure-Python projects published only as
# sources (pigpio) are built here into py3-none-any wheels. Projects with C code and no arm64
# wheel (pyalsaaudio, RPi.GPIO, lgpio on 3.13) can only be built on arm64: run this script on
# an arm64 machine (a Pi, or an arm64 Debian chroot under qemu-user-static) and they are built
# too; elsewhere the script lists them and exits 1. systemd-python is left out: the device
# uses Debian's python3-systemd (the card's venv sees the system packages).
set -euo pipefail
OUT=${1:?usage: provisioning/wheelhouse.sh OUT_DIR}
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PYTHONS=${PYTHONS:-"3.11 3.13"}
mkdir -p "$OUT"

echo "wheelhouse: the package's own wheel"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$OUT" .

missing=()
for version in $PYTHONS; do
    # the device's requirements with their markers evaluated for an arm64 Pi with this Python
    mapfile -t reqs < <("$PY" - "$version" <<'PYEOF'
import sys, tomllib
from packaging.requirements import Requirement
version = sys.argv[1]
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
env = {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": version,
       "python_full_version": version + ".0", "implementation_name": "cpython",
       "platform_system": "Linux", "os_name": "posix", "extra": ""}
extras = project["optional-dependencies"]
for line in [*project["dependencies"], *extras["edge"], *extras["pi"]]:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate(env):
        continue
    if req.name == "systemd-python":  # Debian's python3-systemd on the device
        continue
    req.marker = None
    print(req)
PYEOF
)
    echo "wheelhouse: Python $version, ${#reqs[@]} requirements and what they need"
    for req in "${reqs[@]}"; do
        if "$PY" -m pip download --quiet --dest "$OUT" --only-binary=:all: \
            --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
            --platform linux_aarch64 --platform any \
            --python-version "$version" --implementation cp "$req"; then
            continue
        fi
        # no arm64 wheel: a pure-Python sdist builds anywhere, C code only on arm64
        tmp=$(mktemp -d)
        if "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" "$req" \
            && ls "$tmp"/*-none-any.whl >/dev/null 2>&1; then
            mv "$tmp"/*.whl "$OUT"/
        elif [ "$(uname -m)" = aarch64 ] && [ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$version" ]; then
            # PYPI=1: lgpio links its bundled C library in statically (no liblgpio needed)
            PYPI=1 "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$OUT" "$req"
        else
            missing+=("$req (Python $version)")
        fi
        rm -rf "$tmp"
    done
done

ls "$OUT"/*.whl | wc -l | xargs echo "wheelhouse: wheels in $OUT:"
if ((${#missing[@]})); then
    echo "wheelhouse: no arm64 wheel for these; build them on arm64 with this Python:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
