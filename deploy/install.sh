#!/usr/bin/env bash
# Turn a Raspberry Pi running Raspberry Pi OS (Bookworm or later, 64-bit) into a track
# station that starts at boot, with its own Wi-Fi hotspot and time server.
#
#   sudo deploy/install.sh             install, or update after `git pull` (idempotent)
#   deploy/install.sh --dry-run        print every step and change nothing (no root, no Pi)
#
# Options:
#   --ssid NAME      hotspot name (default: TrackStation-XXXX, XXXX from the machine id)
#   --country CC     Wi-Fi country (ISO code, e.g. GB); the hotspot needs one set once
#   --no-hotspot     leave Wi-Fi alone (the station is reached over Ethernet or a club LAN)
#   --no-start       install and enable, but do not (re)start the station now
#
# Kept on every re-run: /etc/station/station.toml (written once, never overwritten), the
# hotspot passphrase (/etc/station/hotspot.txt) and the data in /var/lib/station.
# deploy/uninstall.sh undoes all of it.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
umask 022 # the venv must stay readable by the station user

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$SRC_DIR/deploy/lib.sh"

# python3-picamera2 and python3-lgpio come from Raspberry Pi OS's archive, built against its
# libcamera and kernel, which is why the venv sees the system's packages. dnsmasq-base serves
# DHCP for NetworkManager's shared (hotspot) mode; it is only a Recommends of network-manager.
APT_PACKAGES=(python3-picamera2 python3-lgpio python3-numpy python3-venv
    chrony network-manager dnsmasq-base)

SSID=""
COUNTRY=""
HOTSPOT=1
START=1
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --ssid) SSID=${2:?--ssid needs a name}; shift ;;
        --country) COUNTRY=${2:?--country needs a code like GB}; shift ;;
        --no-hotspot) HOTSPOT=0 ;;
        --no-start) START=0 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if [ -n "$SSID" ] && ! [[ $SSID =~ ^[A-Za-z0-9_-]{1,32}$ ]]; then
    die "--ssid: use 1-32 letters, digits, - or _ (got '$SSID')"
fi
if [ -n "$COUNTRY" ] && ! [[ $COUNTRY =~ ^[A-Z]{2}$ ]]; then
    die "--country: use a two-letter ISO code such as GB, DE, US (got '$COUNTRY')"
fi
need_root
if [ "$DRY_RUN" -eq 1 ]; then
    echo "Dry run: printing every step; nothing is changed."
fi

step "1/11 Check the system"
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
note "source: $SRC_DIR"
note "OS: $codename"
case $codename in
    bullseye | buster | stretch) die "Raspberry Pi OS $codename is too old: Bookworm or later is needed (NetworkManager, Python 3.11)" ;;
esac
if grep -qs "Raspberry Pi" /proc/device-tree/model; then
    note "board: $(tr -d '\0' </proc/device-tree/model)"
else
    warn "not a Raspberry Pi: no GPIO or camera here (the station runs, with sensor faults)"
fi
if [ "$(uname -m)" != aarch64 ]; then
    warn "$(uname -m): the 64-bit Raspberry Pi OS is advised (Python wheels for OpenCV and orjson)"
fi

step "2/11 Debian packages: ${APT_PACKAGES[*]}"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    note "all installed"
else
    if [ "$DRY_RUN" -eq 0 ] && ! apt-cache show python3-picamera2 >/dev/null 2>&1; then
        # Not Raspberry Pi OS's archive: the station still runs, without its camera.
        warn "python3-picamera2 is not in this machine's apt sources: skipped (no camera)"
        available=()
        for pkg in "${missing[@]}"; do
            [ "$pkg" = python3-picamera2 ] || available+=("$pkg")
        done
        missing=("${available[@]}")
    fi
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

step "3/11 Python venv $VENV (sees the system's picamera2, lgpio, numpy)"
if [ -x "$VENV/bin/python" ] && grep -qs "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
    note "exists"
else
    run install -d -m 0755 "$APP_DIR"
    run python3 -m venv --system-site-packages "$VENV"
fi

step "4/11 Install the station package into the venv"
# Pin numpy to the system's: apt's picamera2 and simplejpeg are built against it, and a second
# numpy in the venv would shadow it and break them.
if [ "$DRY_RUN" -eq 1 ]; then
    printf 'numpy==<the version of apt'"'"'s python3-numpy>\n' | write_file "$APP_DIR/constraints.txt" 0644 root root
elif numpy_version=$(python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null); then
    printf 'numpy==%s\n' "$numpy_version" | write_file "$APP_DIR/constraints.txt" 0644 root root
else
    warn "no system numpy: pip chooses one (fine without picamera2)"
    printf '# no system numpy to pin\n' | write_file "$APP_DIR/constraints.txt" 0644 root root
fi
run "$VENV/bin/python" -m pip install --quiet --upgrade --constraint "$APP_DIR/constraints.txt" "$SRC_DIR"
run install -d -m 0755 "$APP_DIR/docs"
run install -m 0644 "$SRC_DIR/docs/HARDWARE.md" "$APP_DIR/docs/HARDWARE.md"

step "5/11 User $USER_NAME in groups ${DEVICE_GROUPS[*]}"
for group in "${DEVICE_GROUPS[@]}"; do
    if ! getent group "$group" >/dev/null; then
        # Raspberry Pi OS has both; elsewhere the unit still needs them to exist.
        run groupadd --system "$group"
    fi
done
if id "$USER_NAME" >/dev/null 2>&1; then
    note "user $USER_NAME exists"
else
    run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "Track station" "$USER_NAME"
fi
groups_needed=()
for group in "${DEVICE_GROUPS[@]}"; do
    if [[ " $(id -nG "$USER_NAME" 2>/dev/null) " != *" $group "* ]]; then
        groups_needed+=("$group")
    fi
done
if [ ${#groups_needed[@]} -gt 0 ]; then
    run usermod --append --groups "$(IFS=,; echo "${groups_needed[*]}")" "$USER_NAME"
else
    note "already in ${DEVICE_GROUPS[*]}"
fi

step "6/11 Data folder $DATA_DIR"
note "systemd creates and owns it for the station (StateDirectory=station in $UNIT)"
if [ -d "$DATA_DIR" ]; then
    note "exists: kept (the laps are in it)"
else
    # Made now too, so `sudo -u station station export` works before the first start.
    run install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$DATA_DIR"
fi

step "7/11 Configuration $CONFIG (written once, never overwritten)"
run install -d -m 0755 "$ETC_DIR"
if [ -e "$CONFIG" ]; then
    note "exists: kept"
    if [ "$DRY_RUN" -eq 0 ] && ! "$VENV/bin/python" -c 'import sys; from station.config import load_config; load_config(sys.argv[1])' "$CONFIG"; then
        warn "$CONFIG has an error (above): the station will not start until it is fixed"
    fi
else
    run install -m 0640 -o root -g "$USER_NAME" "$SRC_DIR/deploy/station.toml" "$CONFIG"
fi

step "8/11 systemd units"
units_changed=0
for unit in "${ALL_UNITS[@]}"; do
    if cmp -s "$SRC_DIR/systemd/$unit" "$UNIT_DIR/$unit"; then
        note "$UNIT_DIR/$unit is up to date"
    else
        run install -m 0644 "$SRC_DIR/systemd/$unit" "$UNIT_DIR/$unit"
        units_changed=1
    fi
done
if [ "$units_changed" -eq 1 ] && { [ "$DRY_RUN" -eq 1 ] || systemd_running; }; then
    run systemctl daemon-reload
fi
run systemctl enable "$UNIT" "$CLOCK_PATH"

step "9/11 Wi-Fi hotspot '$HOTSPOT_CON' on $HOTSPOT_IFACE ($HOTSPOT_ADDR, NetworkManager)"
PASSPHRASE=""
if [ -r "$HOTSPOT_FILE" ]; then
    PASSPHRASE=$(sed -n 's/^passphrase=//p' "$HOTSPOT_FILE" | head -n 1)
    if [ -z "$SSID" ]; then
        SSID=$(sed -n 's/^ssid=//p' "$HOTSPOT_FILE" | head -n 1)
    fi
fi
if [ -z "$SSID" ]; then
    machine_id=$(cat /etc/machine-id 2>/dev/null || echo 0000)
    SSID="TrackStation-${machine_id:0:4}"
fi
if [ -n "$PASSPHRASE" ]; then
    note "passphrase kept from $HOTSPOT_FILE"
    SECRET=$PASSPHRASE
else
    # 16 characters from 32 that are easy to read and type on a phone: 80 random bits.
    PASSPHRASE=$(python3 -c 'import secrets; a = "abcdefghijkmnpqrstuvwxyz23456789"; print("-".join("".join(secrets.choice(a) for _ in range(4)) for _ in range(4)))')
    SECRET=$PASSPHRASE
    note "new random passphrase for this unit"
fi
printf '# Track station hotspot, written once by deploy/install.sh and kept on re-runs.\n# Delete this file and re-run the installer for a new passphrase.\nssid=%s\npassphrase=%s\n' \
    "$SSID" "$PASSPHRASE" | {
    if [ -r "$HOTSPOT_FILE" ] && grep -qx "ssid=$SSID" "$HOTSPOT_FILE"; then
        cat >/dev/null
        note "$HOTSPOT_FILE is up to date"
    else
        write_file "$HOTSPOT_FILE" 0640 root "$USER_NAME"
    fi
}
if [ "$HOTSPOT" -eq 0 ]; then
    note "skipped (--no-hotspot)"
elif [ "$DRY_RUN" -eq 0 ] && ! { have nmcli && nmcli general status >/dev/null 2>&1; }; then
    warn "NetworkManager is not running: no hotspot yet (re-run this installer once it is)"
else
    if [ -n "$COUNTRY" ]; then
        if have raspi-config; then
            run raspi-config nonint do_wifi_country "$COUNTRY"
        else
            run iw reg set "$COUNTRY"
        fi
    fi
    settings=(
        connection.autoconnect yes
        connection.autoconnect-priority 100
        802-11-wireless.mode ap
        802-11-wireless.band bg
        802-11-wireless.ssid "$SSID"
        ipv4.method shared
        ipv4.addresses "$HOTSPOT_ADDR/24"
        ipv6.method disabled
        wifi-sec.key-mgmt wpa-psk
        wifi-sec.proto rsn
        wifi-sec.pairwise ccmp
        wifi-sec.group ccmp
        # The Pi's Wi-Fi firmware mishandles protected management frames in AP mode, and
        # some phones then fail to join.
        wifi-sec.pmf disable
        wifi-sec.psk "$PASSPHRASE"
    )
    connections=""
    if have nmcli; then
        connections=$(nmcli -t -f NAME connection show 2>/dev/null || true)
    fi
    if grep -qx "$HOTSPOT_CON" <<<"$connections"; then
        run nmcli connection modify "$HOTSPOT_CON" "${settings[@]}"
    else
        run nmcli connection add type wifi ifname "$HOTSPOT_IFACE" con-name "$HOTSPOT_CON" \
            ssid "$SSID" "${settings[@]}"
    fi
    # Bringing the hotspot up takes wlan0 away from whatever uses it: over SSH on that Wi-Fi
    # (or on the hotspot itself) the session would drop mid-install, so then it waits for
    # the next boot.
    current=""
    if have nmcli; then
        current=$(nmcli -t -f DEVICE,CONNECTION device status 2>/dev/null |
            sed -n "s/^$HOTSPOT_IFACE://p" | grep -vx -e "" -e "--" || true)
    fi
    if [ "$current" = "$HOTSPOT_CON" ]; then
        note "the hotspot is up; changes apply at the next boot (or: sudo nmcli connection up $HOTSPOT_CON)"
    elif [ -n "$current" ]; then
        note "$HOTSPOT_IFACE is on '$current' now: the hotspot starts at the next boot"
        note "(or now, dropping that Wi-Fi: sudo nmcli connection up $HOTSPOT_CON)"
    elif ! run nmcli connection up "$HOTSPOT_CON"; then
        warn "the hotspot did not come up now; it retries at boot. Wi-Fi country set? (--country CC)"
    fi
fi

step "10/11 chrony: serve time to checkpoint gates on $HOTSPOT_NET"
chrony_conf=$(printf '%s\n' \
    "# Track station (deploy/install.sh): checkpoint gates on the hotspot take their time from" \
    "# this Pi. There is no internet at the track, so its own clock is the reference." \
    "allow $HOTSPOT_NET" \
    "local stratum 10")
if [ -r "$CHRONY_CONF" ] && [ "$(cat "$CHRONY_CONF")" = "$chrony_conf" ]; then
    note "$CHRONY_CONF is up to date"
else
    run install -d -m 0755 "$(dirname "$CHRONY_CONF")"
    printf '%s\n' "$chrony_conf" | write_file "$CHRONY_CONF" 0644 root root
    if ! grep -qs "^confdir /etc/chrony/conf.d" /etc/chrony/chrony.conf && [ "$DRY_RUN" -eq 0 ]; then
        warn "/etc/chrony/chrony.conf has no 'confdir /etc/chrony/conf.d': add it"
    fi
    if [ "$DRY_RUN" -eq 1 ] || systemd_running; then
        run systemctl restart chrony.service
    fi
fi

step "11/11 Start the station"
if [ "$START" -eq 0 ]; then
    note "skipped (--no-start): sudo systemctl start $UNIT"
elif [ "$DRY_RUN" -eq 0 ] && ! systemd_running; then
    warn "systemd is not running here (container or chroot): the station starts at the next boot"
else
    # A station systemd had given up on gets a fresh start limit.
    run systemctl reset-failed "$UNIT"
    run systemctl restart "$UNIT" "$CLOCK_PATH"
    note "follow it: journalctl -u $UNIT -f"
fi

echo
run "$VENV/bin/python" -m station.deploy_info --hotspot "$HOTSPOT_FILE" --config "$CONFIG" --png "$HOTSPOT_PNG" ||
    warn "could not show the join code: sudo $VENV/bin/python -m station.deploy_info --hotspot $HOTSPOT_FILE"
if [ "$DRY_RUN" -eq 0 ] && [ -e "$HOTSPOT_PNG" ]; then
    chgrp "$USER_NAME" "$HOTSPOT_PNG"
    chmod 0640 "$HOTSPOT_PNG"
fi
echo
echo "Done. Wiring, mounting and faults: $APP_DIR/docs/HARDWARE.md"
