#!/usr/bin/env bash
# Undo deploy/install.sh: stop and remove the service, the hotspot (or a checkpoint gate's link
# to it), the chrony and mosquitto settings, the venv and the station user.
#
#   sudo deploy/uninstall.sh            remove the station, KEEP its config and lap data
#   sudo deploy/uninstall.sh --purge    also delete /etc/station and /var/lib/station (laps!)
#   deploy/uninstall.sh --dry-run       print every step and change nothing
#
# Debian packages (chrony, mosquitto, network-manager, picamera2, ...) stay installed: the
# system and other software may use them.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$SRC_DIR/deploy/lib.sh"

PURGE=0
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --purge) PURGE=1 ;;
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root
if [ "$DRY_RUN" -eq 1 ]; then
    echo "Dry run: printing every step; nothing is changed."
fi

# present DESCRIPTION TEST...: true if the thing is there to remove. A dry run shows every
# step anyway, saying whether this machine has the thing.
present() {
    local what=$1
    shift
    if "$@"; then
        return 0
    fi
    if [ "$DRY_RUN" -eq 1 ]; then
        note "($what: not present on this machine)"
        return 0
    fi
    note "$what: not present"
    return 1
}
unit_file() { [ -e "$UNIT_DIR/$1" ]; }
user_exists() { id "$1" >/dev/null 2>&1; }
nm_connection() { have nmcli && grep -qx "$1" <<<"$(nmcli -t -f NAME connection show 2>/dev/null)"; }

step "1/7 Stop and disable the station"
if present "$UNIT" unit_file "$UNIT"; then
    if [ "$DRY_RUN" -eq 1 ] || systemd_running; then
        run systemctl disable --now "$UNIT" "$CLOCK_PATH"
    fi
fi

step "2/7 Remove the systemd units"
for unit in "${ALL_UNITS[@]}"; do
    if present "$unit" unit_file "$unit"; then
        run rm -f "$UNIT_DIR/$unit"
    fi
done
if [ "$DRY_RUN" -eq 1 ] || systemd_running; then
    run systemctl daemon-reload
    # Forget a give-up systemd may remember; nothing to forget is fine too.
    run systemctl reset-failed "$UNIT" "station-failed@$UNIT.service" 2>/dev/null || true
fi

step "3/7 Remove the Wi-Fi hotspot '$HOTSPOT_CON' (or a checkpoint gate's '$UPLINK_CON')"
for con in "$HOTSPOT_CON" "$UPLINK_CON"; do
    if present "NetworkManager connection $con" nm_connection "$con"; then
        run nmcli connection delete "$con"
    fi
done

step "4/7 Stop serving time to the hotspot (chrony)"
chrony_changed=0
if present "$CHRONY_CONF" test -e "$CHRONY_CONF"; then
    run rm -f "$CHRONY_CONF"
    chrony_changed=1
fi
# A checkpoint gate commented out Debian's own makestep: give it back.
if present "makestep commented out by a checkpoint gate install" grep -qs '^#station: makestep ' "$CHRONY_MAIN"; then
    run sed -i 's/^#station: makestep /makestep /' "$CHRONY_MAIN"
    chrony_changed=1
fi
if [ "$chrony_changed" -eq 1 ] && { [ "$DRY_RUN" -eq 1 ] || systemd_running; }; then
    run systemctl restart chrony.service
fi

step "5/7 Remove the checkpoint gates' MQTT broker settings (mosquitto)"
mosquitto_changed=0
for file in "$MOSQUITTO_CONF" "$MOSQUITTO_PASSWD" "$MOSQUITTO_DROPIN"; do
    if present "$file" test -e "$file"; then
        run rm -f "$file"
        mosquitto_changed=1
    fi
done
if [ "$mosquitto_changed" -eq 1 ] && { [ "$DRY_RUN" -eq 1 ] || systemd_running; }; then
    run systemctl daemon-reload
    # Back to Debian's default: local connections only. (Not running is fine too.)
    run systemctl try-restart mosquitto.service
fi

step "6/7 Remove the program ($APP_DIR) and the user $USER_NAME"
if present "$APP_DIR" test -e "$APP_DIR"; then
    run rm -rf "$APP_DIR"
fi
if present "user $USER_NAME" user_exists "$USER_NAME"; then
    run userdel "$USER_NAME"
fi

step "7/7 Configuration and lap data"
if [ "$PURGE" -eq 1 ]; then
    for dir in "$ETC_DIR" "$DATA_DIR"; do
        if present "$dir" test -e "$dir"; then
            run rm -rf "$dir"
        fi
    done
else
    note "kept: $ETC_DIR (config, hotspot passphrase, MQTT password) and $DATA_DIR (the lap database)"
    note "a later install.sh picks them up again; delete them with --purge"
fi
note "Debian packages stay installed (chrony, mosquitto, network-manager, python3-picamera2, ...)"
echo
echo "Done."
