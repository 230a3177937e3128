#!/usr/bin/env bash
# The whole installation path on an emulated arm64 Debian (docs/EMULATION.md):
#
#   provisioning/emulate/arm64.sh WORK [STEP ...]      (as root; STEP: rootfs wheels simulate boot)
#
#   rootfs    debootstrap an arm64 Debian (SUITE=bookworm, or trixie) from Debian's packages
#             under qemu-user-static: systemd, cloud-init, python3, Debian's arm64 kernel
#   wheels    the card's wheelhouse: provisioning/wheelhouse.sh here for the arm64 wheels of
#             the index; what has none (pyalsaaudio, lgpio, RPi.GPIO) built with pip inside a
#             copy of the root file system with a compiler (the device's gets none)
#   simulate  install from the wheelhouse as the card does (a venv seeing python3-systemd,
#             --no-index) and run `contactpoint simulate` there; its output must be identical
#             to the same run on this machine
#   boot      the full proof: a broker (dynamic security), the enrollment service and the sink
#             on this machine's loopback; the root file system as a disk of qemu-system-aarch64
#             (Debian's kernel, systemd as PID 1), the `contactpoint provision card` output as
#             the NoCloud seed (a FAT image labelled CIDATA, mounted at /boot/firmware as a
#             Pi's boot partition). cloud-init runs the card's install.sh, the unit starts, the
#             device enrolls by claim and delivers a simulated contact with its clip. The guest
#             has qemu's restricted user network: it reaches only the broker (guestfwd).
#
# Every step prints how long it took; WORK/timings.txt keeps them. A step reuses what an
# earlier run of it left in WORK (remove WORK/<what> to redo it). Needs: debootstrap,
# qemu-user-static with binfmt_misc (the script registers qemu-aarch64 if it can),
# qemu-system-arm, e2fsprogs, dosfstools, mtools, mosquitto, socat, and the development
# checkout's .venv (scripts/setup; CONTACTPOINT=path/to/contactpoint to use another).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${1:?usage: provisioning/emulate/arm64.sh WORK [rootfs|wheels|simulate|boot ...]}
shift
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(rootfs wheels simulate boot)
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CONTACTPOINT=${CONTACTPOINT:-$REPO/.venv/bin/contactpoint}
HOST_PY=$(dirname "$(readlink -f "$CONTACTPOINT")")/python # its venv's (pip, packaging)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-3600}  # seconds for the guest to deliver, from power on
GUEST_MEMORY=${GUEST_MEMORY:-1024}  # MiB (a Zero 2 W has 512)
NAME=emu-1                          # the device's name (its card, its MQTT account)
BROKER_IN_GUEST=10.0.2.100:1883     # the broker as the guest sees it (guestfwd)

case $SUITE in
bookworm) PYVER=3.11 ASOUND=libasound2 ;;
trixie) PYVER=3.13 ASOUND=libasound2t64 ;;
*) echo "arm64.sh: SUITE=$SUITE: bookworm or trixie" >&2 && exit 2 ;;
esac
# trixie's arm64 code uses pointer authentication, which qemu's default 'max' CPU emulates
# very slowly; a Cortex-A72 has none (qemu-user reads QEMU_CPU)
export QEMU_CPU=${QEMU_CPU:-cortex-a72}
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
ROOTFS=$WORK/rootfs BUILDROOT=$WORK/buildroot WHEELS=$WORK/wheelhouse

say() { echo "arm64.sh: $*"; }
die() { echo "arm64.sh: $*" >&2; exit 1; }
timed() { # timed LABEL COMMAND...: run it, print and keep how long it took
    local label=$1 t0 t1
    shift
    t0=$(date +%s)
    "$@"
    t1=$(date +%s)
    printf '%-28s %6d s  (%s, %s)\n' "$label" $((t1 - t0)) "$SUITE" "$(date -u +%FT%TZ)" \
        | tee -a "$WORK/timings.txt"
}
in_root() { # in_root ROOT COMMAND...: run an arm64 command in ROOT (binfmt + qemu-user)
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive QEMU_CPU="$QEMU_CPU" "$@"
}

need_binfmt() {
    [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot)"
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        [ -e /proc/sys/fs/binfmt_misc/register ] \
            || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
        update-binfmts --enable qemu-aarch64 2>/dev/null || true
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "arm64 binaries cannot run here:
    binfmt_misc has no qemu-aarch64 (apt-get install qemu-user-static binfmt-support; in a
    container the host must allow mounting binfmt_misc)"
}

# --- rootfs ---------------------------------------------------------------------------------

# debootstrap resolves no virtual packages: python3-cffi-backend provides the cffi-backend-api
# python3-cryptography (cloud-init's oauthlib) depends on
PACKAGES=(python3 python3-venv python3-systemd systemd systemd-sysv udev dbus cloud-init
    linux-image-arm64 "$ASOUND" iproute2 netbase kmod sudo e2fsprogs procps passwd tzdata
    locales python3-cffi-backend)

debootstrap_rootfs() {
    rm -rf "$ROOTFS.partial"
    # the initrd holds only what the emulated machine boots from (MODULES=most copies a
    # thousand modules, one emulated process after another: half an hour under qemu-user)
    mkdir -p "$ROOTFS.partial/etc/initramfs-tools/conf.d" \
        "$ROOTFS.partial/usr/share/initramfs-tools/modules.d"
    echo MODULES=list >"$ROOTFS.partial/etc/initramfs-tools/conf.d/emulated.conf"
    printf '%s\n' virtio_pci virtio_mmio virtio_blk virtio_net ext4 vfat nls_cp437 nls_ascii \
        >"$ROOTFS.partial/usr/share/initramfs-tools/modules.d/emulated"
    debootstrap --arch=arm64 --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        "$SUITE" "$ROOTFS.partial" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed: see $WORK/debootstrap.log"
    mv -T "$ROOTFS.partial" "$ROOTFS"
}

configure_rootfs() {
    # what a flashed Raspberry Pi OS image has: the boot partition at /boot/firmware (here
    # the seed image, labelled CIDATA), DHCP on eth0 (cloud-init's network-config names it)
    cat >"$ROOTFS/etc/fstab" <<'EOF'
/dev/vda / ext4 defaults 0 1
LABEL=CIDATA /boot/firmware vfat defaults,nofail 0 2
EOF
    mkdir -p "$ROOTFS/boot/firmware"
    echo localhost >"$ROOTFS/etc/hostname"
    : >"$ROOTFS/etc/machine-id" # a new one on first boot (the device's serial falls back to it)
    # a generated locale, as a flashed image has (cloud-init sets LANG=en_US.UTF-8)
    sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$ROOTFS/etc/locale.gen"
    in_root "$ROOTFS" sh -c 'locale-gen && update-locale LANG=en_US.UTF-8' >/dev/null
    in_root "$ROOTFS" systemctl enable systemd-networkd.service >/dev/null
    # the card's network-config marks eth0 optional (RequiredForOnline=no), so trixie's
    # networkd-wait-online finds no link to wait for and times out after two minutes, holding
    # cloud-init's network stage; wait for eth0, as a Pi's NetworkManager waits for its link
    mkdir -p "$ROOTFS/etc/systemd/system/systemd-networkd-wait-online.service.d"
    cat >"$ROOTFS/etc/systemd/system/systemd-networkd-wait-online.service.d/emulated.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/lib/systemd/systemd-networkd-wait-online --interface=eth0
EOF
    # only on the emulated device: no GPIO, radio or microphone here, so the daemon plays a
    # scenario on the simulated hardware (the unit is otherwise the card's, unchanged)
    mkdir -p "$ROOTFS/etc/systemd/system/contactpoint-edge.service.d" \
        "$ROOTFS/usr/local/share/contactpoint-emulated"
    cat >"$ROOTFS/etc/systemd/system/contactpoint-edge.service.d/emulated.conf" <<'EOF'
# docs/EMULATION.md: the emulated arm64 device has no GPIO, radio or microphone; it plays a
# short scenario on the simulated hardware, in real time, and stops once all is delivered.
# qemu's TCG runs it 10-50x slower than a Pi: more time to start (Python's imports) and
# between watchdog pings
[Service]
TimeoutStartSec=900
WatchdogSec=300
ExecStart=
ExecStart=/opt/contactpoint/current/bin/contactpoint edge run --config /etc/contactpoint/device.toml --data /var/lib/contactpoint --scenario /usr/local/share/contactpoint-emulated/scenario.toml --drain-timeout 1800
EOF
    cp "$HERE/scenario.toml" "$ROOTFS/usr/local/share/contactpoint-emulated/"
    in_root "$ROOTFS" apt-get clean
}

step_rootfs() {
    need_binfmt
    if [ -x "$ROOTFS/usr/bin/python3" ]; then
        say "rootfs: $ROOTFS exists (remove it to build it again)"
    else
        say "rootfs: debootstrap $SUITE arm64 from $MIRROR (log: $WORK/debootstrap.log)"
        timed "rootfs: debootstrap" debootstrap_rootfs
    fi
    [ -e "$ROOTFS/usr/local/share/contactpoint-emulated/scenario.toml" ] \
        || timed "rootfs: configure" configure_rootfs
}

# --- wheels ---------------------------------------------------------------------------------

BUILD_PACKAGES=(build-essential python3-dev python3-pip python3-setuptools python3-wheel pkg-config
    libasound2-dev swig)

build_wheels() {
    # provisioning/wheelhouse.sh here: the package's own wheel and every arm64 wheel the index
    # has; it names the projects with C code and no arm64 wheel, which are built on arm64
    rm -rf "$WHEELS.partial" "$BUILDROOT"
    local missing=()
    PYTHONS=$PYVER PYTHON=$HOST_PY "$REPO/provisioning/wheelhouse.sh" "$WHEELS.partial" \
        >"$WORK/wheels.log" 2>&1 || true
    mapfile -t missing < <(sed -n 's/^  \(.*\) (Python .*)$/\1/p' "$WORK/wheels.log")
    compgen -G "$WHEELS.partial/contactpoint-*.whl" >/dev/null \
        || die "provisioning/wheelhouse.sh failed: see $WORK/wheels.log"
    if ((${#missing[@]})); then
        say "wheels: building on arm64: ${missing[*]}"
        cp -a "$ROOTFS" "$BUILDROOT"
        cp /etc/resolv.conf "$BUILDROOT/etc/resolv.conf"
        in_root "$BUILDROOT" apt-get update -qq
        in_root "$BUILDROOT" apt-get install -y -qq --no-install-recommends \
            "${BUILD_PACKAGES[@]}" >>"$WORK/wheels.log" 2>&1 \
            || die "apt-get in the build root failed: see $WORK/wheels.log"
        # their sources come through this machine's pip (its index, its certificates); the
        # build root needs nothing but Debian's mirror
        "$HOST_PY" -m pip download --quiet --no-deps --no-binary :all: \
            --dest "$BUILDROOT/sdists" "${missing[@]}" >>"$WORK/wheels.log" 2>&1 \
            || die "pip download of the sources failed: see $WORK/wheels.log"
        # PYPI=1: lgpio's setup.py links its own C sources in statically, as in its
        # published wheels (Debian bookworm has no liblgpio)
        in_root "$BUILDROOT" env PYPI=1 sh -c 'python3 -m pip wheel --no-deps --no-index \
            --no-build-isolation --wheel-dir /wheels /sdists/*' >>"$WORK/wheels.log" 2>&1 \
            || die "arm64 build failed: see $WORK/wheels.log"
        mv "$BUILDROOT"/wheels/*.whl "$WHEELS.partial/"
        rm -rf "$BUILDROOT"
    fi
    mv -T "$WHEELS.partial" "$WHEELS"
}

step_wheels() {
    need_binfmt
    [ -x "$ROOTFS/usr/bin/python3" ] || die "no $ROOTFS: run the rootfs step first"
    if compgen -G "$WHEELS/contactpoint-*.whl" >/dev/null; then
        say "wheels: $WHEELS exists (remove it to build it again)"
        return
    fi
    say "wheels: Python $PYVER arm64 (log: $WORK/wheels.log)"
    timed "wheels: download + build" build_wheels
    ls "$WHEELS"
}

# --- simulate -------------------------------------------------------------------------------

VERSION=""
version() { [ -n "$VERSION" ] || VERSION=$("$CONTACTPOINT" --version | awk '{print $NF}'); }

card_install() { # what the card's install.sh does to install, into a throwaway venv
    rm -rf "$ROOTFS/var/tmp/check" && mkdir -p "$ROOTFS/var/tmp/check"
    cp -r "$WHEELS" "$ROOTFS/var/tmp/check/wheelhouse"
    in_root "$ROOTFS" python3 -m venv --system-site-packages /var/tmp/check/venv
    in_root "$ROOTFS" /var/tmp/check/venv/bin/pip install --quiet --disable-pip-version-check \
        --no-index --find-links /var/tmp/check/wheelhouse "contactpoint[edge,pi]==$VERSION"
}

simulate_x86() {
    local host=$WORK/simulate-x86
    rm -rf "$host" && mkdir -p "$host"
    cp "$REPO/examples/shift.toml" "$host/"
    # the same relative paths on both sides: the printed store path is part of the output
    (cd "$host" && "$CONTACTPOINT" simulate shift.toml --data data >out.txt 2>err.txt)
    (cd "$host" && "$CONTACTPOINT" contacts --data data --json >contacts.jsonl)
}

simulate_arm64() {
    cp "$REPO/examples/shift.toml" "$ROOTFS/var/tmp/check/"
    in_root "$ROOTFS" sh -c 'cd /var/tmp/check && venv/bin/contactpoint simulate shift.toml \
        --data data >out.txt 2>err.txt && venv/bin/contactpoint contacts --data data --json \
        >contacts.jsonl'
}

step_simulate() {
    need_binfmt
    compgen -G "$WHEELS/contactpoint-*.whl" >/dev/null || die "no wheelhouse: run the wheels step"
    version
    say "simulate: install contactpoint[edge,pi]==$VERSION from the wheelhouse on arm64"
    timed "simulate: install (arm64)" card_install
    in_root "$ROOTFS" /var/tmp/check/venv/bin/contactpoint --version
    timed "simulate: run on x86_64" simulate_x86
    timed "simulate: run on arm64" simulate_arm64
    # the contacts with their clips' SHA-256; the random ids numbered by first appearance
    local f
    for f in "$WORK/simulate-x86/contacts.jsonl" "$ROOTFS/var/tmp/check/contacts.jsonl"; do
        python3 -c 'import re, sys
ids = {}
text = re.sub(r"\b[0-9a-f]{32}\b", lambda m: "id-%d" % ids.setdefault(m[0], len(ids)),
              sys.stdin.read())
sys.stdout.write(text)' <"$f" >"${f%.jsonl}.norm"
    done
    local ok=0
    for f in out.txt contacts.norm; do
        if cmp -s "$WORK/simulate-x86/$f" "$ROOTFS/var/tmp/check/$f"; then
            say "simulate: $f identical on x86_64 and arm64 ($(wc -l <"$WORK/simulate-x86/$f") lines)"
        else
            diff -u "$WORK/simulate-x86/$f" "$ROOTFS/var/tmp/check/$f" || true
            ok=1
        fi
    done
    cat "$WORK/simulate-x86/out.txt"
    rm -rf "$ROOTFS/var/tmp/check" # the boot installs from the card, not from this
    ((ok == 0)) || die "simulate: the arm64 output differs from x86_64"
}

# --- boot -----------------------------------------------------------------------------------

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}

free_port() {
    "$HOST_PY" -c \
        'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

host_services() { # the broker with dynamic security, the enrollment service, the sink
    local h=$WORK/host plugin
    rm -rf "$h" && mkdir -p "$h/sink"
    plugin=$(ls /usr/lib/*/mosquitto_dynamic_security.so 2>/dev/null | head -1)
    [ -n "$plugin" ] || die "mosquitto's dynamic-security plugin is missing (apt-get install mosquitto)"
    PORT=$(free_port)
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$h/admin.pw"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$h/sink.pw"
    # the admin account, and the sink's (reads the fleet, writes only its commands)
    "$CONTACTPOINT" fleet init-broker --out "$h/dynsec.json" --admin-password-file "$h/admin.pw" \
        --sink-password-file "$h/sink.pw"
    cat >"$h/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous false
persistence false
plugin $plugin
plugin_opt_config_file $h/dynsec.json
user $(id -un)
log_dest stderr
EOF
    mosquitto -c "$h/mosquitto.conf" 2>"$h/mosquitto.log" &
    PIDS+=($!)
    # a claim for one device of site-1, and the service that answers it
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$WORK/fleet/claim.token"
    "$CONTACTPOINT" fleet claim --db "$h/enroll.db" --label emulated --site site-1 --uses 1 \
        --token-file "$WORK/fleet/claim.token"
    "$CONTACTPOINT" fleet serve --db "$h/enroll.db" --broker "mqtt://127.0.0.1:$PORT" \
        --admin-password-file "$h/admin.pw" >"$h/fleet.log" 2>&1 &
    PIDS+=($!)
    "$CONTACTPOINT" sink run --broker "mqtt://127.0.0.1:$PORT" --data "$h/sink" \
        --username contactpoint-sink --password-file "$h/sink.pw" >"$h/sink.log" 2>&1 &
    PIDS+=($!)
}

make_card() { # the card, exactly as an installer makes it, as a FAT image labelled CIDATA
    version
    cat >"$WORK/fleet/fleet.toml" <<EOF
[fleet]
name = "emulated"
site = "site-1"
broker = "mqtt://$BROKER_IN_GUEST"
claim_token_file = "claim.token"
device_template = "device-template.toml"
timezone = "Europe/Berlin"
EOF
    cat >"$WORK/fleet/device-template.toml" <<'EOF'
[hardware]
backend = "simulated"
EOF
    rm -rf "$WORK/card"
    "$CONTACTPOINT" provision card --out "$WORK/card" --fleet "$WORK/fleet/fleet.toml" \
        --name "$NAME" --wheelhouse "$WHEELS"
    local kib
    kib=$(($(du -sk "$WORK/card" | cut -f1) + 16384))
    rm -f "$WORK/seed.img"
    mkfs.vfat -n CIDATA -C "$WORK/seed.img" "$kib" >/dev/null
    mcopy -s -p -i "$WORK/seed.img" "$WORK/card"/* ::/
}

make_disk() { # the root file system as an ext4 image (no loop mount), its kernel and initrd
    rm -f "$WORK/root.img"
    mkfs.ext4 -q -L root -d "$ROOTFS" "$WORK/root.img" 4G
    cp "$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1)" "$WORK/vmlinuz"
    cp "$(ls "$ROOTFS"/boot/initrd.img-* | sort -V | tail -1)" "$WORK/initrd.img"
}

delivered() { # the sink holds the device's contact with its verified clip
    "$CONTACTPOINT" sink contacts --data "$WORK/host/sink" --device "$NAME" --json 2>/dev/null \
        | grep -q '"audio": *"[^"]'
}
enrolled() {
    "$CONTACTPOINT" fleet list --db "$WORK/host/enroll.db" 2>/dev/null | grep -q "$NAME.*enrolled"
}

wait_until() { # wait_until LABEL T0 TEST...: poll the test, then keep the time since T0
    local label=$1 t0=$2 now
    shift 2
    until "$@"; do
        now=$(date +%s)
        ((now - t0 < BOOT_TIMEOUT)) || {
            tail -n 40 "$WORK/console.log" >&2
            die "boot: '$label' not reached within $BOOT_TIMEOUT s (console: $WORK/console.log)"
        }
        kill -0 "$QEMU" 2>/dev/null || die "boot: qemu exited (console: $WORK/console.log)"
        sleep 5
    done
    now=$(date +%s)
    printf '%-28s %6d s  (%s, since power on)\n' "boot: $label" $((now - t0)) "$SUITE" \
        | tee -a "$WORK/timings.txt"
}

step_boot() {
    command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 is missing (apt-get install qemu-system-arm)"
    command -v socat >/dev/null || die "socat is missing (apt-get install socat)"
    compgen -G "$WHEELS/contactpoint-*.whl" >/dev/null || die "no wheelhouse: run the wheels step"
    trap cleanup EXIT
    mkdir -p "$WORK/fleet"
    timed "boot: host services" host_services
    timed "boot: card + seed image" make_card
    timed "boot: root disk image" make_disk
    local t0 accel=tcg
    [ "$(uname -m)" = aarch64 ] && [ -w /dev/kvm ] && accel=kvm
    rm -f "$WORK/console.log"
    t0=$(date +%s)
    # restrict=on: the guest reaches nothing but the one forwarded address, which socat
    # connects (once per guest connection) to the broker on the host's loopback
    qemu-system-aarch64 -M virt -accel "$accel" -cpu cortex-a72 -smp 2 -m "$GUEST_MEMORY" \
        -display none -monitor none -serial "file:$WORK/console.log" -no-reboot \
        -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
        -append "root=/dev/vda rw console=ttyAMA0 net.ifnames=0 systemd.journald.forward_to_console=1" \
        -drive "file=$WORK/root.img,format=raw,if=virtio" \
        -drive "file=$WORK/seed.img,format=raw,if=virtio" \
        -netdev "user,id=net0,restrict=on,guestfwd=tcp:$BROKER_IN_GUEST-cmd:socat - TCP:127.0.0.1:$PORT" \
        -device virtio-net-pci,netdev=net0 &
    QEMU=$!
    PIDS+=("$QEMU")
    say "boot: qemu-system-aarch64 ($accel) started; console: $WORK/console.log"
    wait_until "kernel to systemd" "$t0" grep -qs "systemd\[1\]" "$WORK/console.log"
    wait_until "cloud-init runs install" "$t0" grep -qs "contactpoint install:" "$WORK/console.log"
    wait_until "wheels installed" "$t0" grep -qs "Successfully installed" "$WORK/console.log"
    wait_until "device enrolled" "$t0" enrolled
    wait_until "contact + clip at sink" "$t0" delivered
    "$CONTACTPOINT" sink contacts --data "$WORK/host/sink" --device "$NAME"
    say "boot: $NAME enrolled and delivered its contact with a verified clip"
}

for step in "${STEPS[@]}"; do
    case $step in
    rootfs | wheels | simulate | boot) "step_$step" ;;
    *) die "unknown step $step: rootfs wheels simulate boot" ;;
    esac
done
