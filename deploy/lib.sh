# Shared by deploy/install.sh and deploy/uninstall.sh (sourced, not run): paths, and the
# helpers that print every step and, unless --dry-run, do it.
# shellcheck shell=bash disable=SC2034  # (the variables are used by the scripts that source this)

# Where things go. The STATION_* overrides exist for the tests only.
APP_DIR=${STATION_APP_DIR:-/opt/station}
VENV=$APP_DIR/venv
ETC_DIR=${STATION_ETC_DIR:-/etc/station}
CONFIG=$ETC_DIR/station.toml
HOTSPOT_FILE=$ETC_DIR/hotspot.txt
HOTSPOT_PNG=$ETC_DIR/hotspot-qr.png
DATA_DIR=/var/lib/station
UNIT_DIR=${STATION_UNIT_DIR:-/etc/systemd/system}
CHRONY_CONF=${STATION_CHRONY_CONF:-/etc/chrony/conf.d/station.conf}
UNIT=station.service
FAILED_UNIT=station-failed@.service
# Sets the system clock when a coach asks (the station itself may not): path + service.
CLOCK_PATH=station-clock.path
ALL_UNITS=("$UNIT" "$FAILED_UNIT" station-clock.service "$CLOCK_PATH")
USER_NAME=station
DEVICE_GROUPS=(gpio video)
HOTSPOT_CON=station-hotspot
HOTSPOT_IFACE=wlan0
# NetworkManager's shared mode defaults to this subnet; we pin it because chrony allows it.
HOTSPOT_ADDR=10.42.0.1
HOTSPOT_NET=10.42.0.0/24

DRY_RUN=0
# A value never printed (the hotspot passphrase): show() masks it.
SECRET=""

step() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
warn() { printf '   WARNING: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Print a command as one would type it (the secret masked).
show() {
    local line
    line=$(printf '%q ' "$@")
    line=${line% }
    if [ -n "$SECRET" ]; then
        line=${line//"$SECRET"/<passphrase>}
    fi
    printf '   + %s\n' "$line"
}

# Print a command, then run it unless this is a dry run.
run() {
    show "$@"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

# write_file PATH MODE OWNER GROUP: write standard input to PATH (atomically: a power cut
# leaves the old file or the new one). A dry run prints the content instead.
write_file() {
    local path=$1 mode=$2 owner=$3 group=$4 content
    content=$(cat)
    printf '   + write %s (mode %s, %s:%s)\n' "$path" "$mode" "$owner" "$group"
    if [ "$DRY_RUN" -eq 1 ]; then
        if [ -n "$SECRET" ]; then
            content=${content//"$SECRET"/<passphrase>}
        fi
        printf '%s\n' "$content" | sed 's/^/     | /'
        return 0
    fi
    local tmp
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chown "$owner:$group" "$tmp"
    chmod "$mode" "$tmp"
    sync "$tmp"
    mv -f "$tmp" "$path"
}

need_root() {
    if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0), or with --dry-run to see the steps"
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# True if systemd is running this machine (a container or chroot may not be).
systemd_running() { [ -d /run/systemd/system ]; }
