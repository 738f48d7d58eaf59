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
# Debian's main chrony.conf: a checkpoint gate comments out its `makestep 1 3` (see install.sh).
CHRONY_MAIN=${STATION_CHRONY_MAIN:-/etc/chrony/chrony.conf}
# The finish Pi's MQTT broker for checkpoint gates (Debian's mosquitto reads conf.d/).
MOSQUITTO_DIR=${STATION_MOSQUITTO_DIR:-/etc/mosquitto}
MOSQUITTO_CONF=$MOSQUITTO_DIR/conf.d/station.conf
MOSQUITTO_PASSWD=$MOSQUITTO_DIR/station.passwd
MOSQUITTO_DROPIN=$UNIT_DIR/mosquitto.service.d/station.conf
# The broker password in plain text, for the station (and to copy to checkpoint gates).
MQTT_PASSWORD_FILE=$ETC_DIR/mqtt-password
MQTT_USER=station
MQTT_PORT=1883
# A checkpoint gate's Wi-Fi connection to the finish station's hotspot.
UPLINK_CON=station-uplink
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
# Values never printed (the hotspot passphrase, the MQTT password): show() masks them.
SECRET=""
MQTT_SECRET=""

step() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
warn() { printf '   WARNING: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Standard input with the secrets masked.
mask() {
    local text
    text=$(cat)
    if [ -n "$SECRET" ]; then
        text=${text//"$SECRET"/<passphrase>}
    fi
    if [ -n "$MQTT_SECRET" ]; then
        text=${text//"$MQTT_SECRET"/<mqtt password>}
    fi
    printf '%s\n' "$text"
}

# Print a command as one would type it (the secrets masked).
show() {
    local line
    line=$(printf '%q ' "$@")
    line=${line% }
    printf '   + %s\n' "$line" | mask
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
        printf '%s\n' "$content" | mask | sed 's/^/     | /'
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
