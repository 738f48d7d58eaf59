#!/usr/bin/env bash
# Turn a Raspberry Pi running Raspberry Pi OS (Bookworm or later, 64-bit) into a track
# station that starts at boot, with its own Wi-Fi hotspot, time server and MQTT broker
# (or into a checkpoint gate that joins one).
#
#   sudo deploy/install.sh             the finish station, or update after `git pull` (idempotent)
#   sudo deploy/install.sh --gate g200 --finish 10.42.0.1 --position 200 \
#        --mqtt-password-file mqtt-password --hotspot-file hotspot.txt
#                                      a checkpoint gate Pi (files copied from the finish Pi)
#   deploy/install.sh --dry-run [...]  print every step and change nothing (no root, no Pi)
#
# Options:
#   --ssid NAME      hotspot name (default: TrackStation-XXXX, XXXX from the machine id)
#   --country CC     Wi-Fi country (ISO code, e.g. GB); the hotspot needs one set once
#   --no-hotspot     leave Wi-Fi alone (the station is reached over Ethernet or a club LAN)
#   --no-start       install and enable, but do not (re)start the station now
#   --gate ID        this Pi is checkpoint gate ID (needs --finish): no hotspot, no broker;
#                    it joins the finish Pi's Wi-Fi, takes its time, and sends it its passes
#   --finish HOST    the finish station's address (10.42.0.1 on its hotspot)
#   --position M     with --gate: where the gate is, metres from the finish line (default 200)
#   --mqtt-password-file FILE   with --gate: the finish Pi's /etc/station/mqtt-password
#   --hotspot-file FILE         with --gate: the finish Pi's /etc/station/hotspot.txt (to join it)
#
# Kept on every re-run: /etc/station/station.toml (written once, never overwritten), the
# hotspot passphrase (/etc/station/hotspot.txt), the MQTT password (/etc/station/mqtt-password)
# and the data in /var/lib/station. deploy/uninstall.sh undoes all of it.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
umask 022 # the venv must stay readable by the station user

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib.sh
. "$SRC_DIR/deploy/lib.sh"

# python3-picamera2 and python3-lgpio come from Raspberry Pi OS's archive, built against its
# libcamera and kernel, which is why the venv sees the system's packages. dnsmasq-base serves
# DHCP for NetworkManager's shared (hotspot) mode; it is only a Recommends of network-manager.
# mosquitto is the checkpoint gates' broker, on the finish Pi only.
APT_PACKAGES=(python3-picamera2 python3-lgpio python3-numpy python3-venv
    chrony network-manager dnsmasq-base)

SSID=""
COUNTRY=""
HOTSPOT=1
START=1
GATE=""
FINISH=""
POSITION=200
MQTT_PASSWORD_IN=""
HOTSPOT_IN=""
while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --ssid) SSID=${2:?--ssid needs a name}; shift ;;
        --country) COUNTRY=${2:?--country needs a code like GB}; shift ;;
        --no-hotspot) HOTSPOT=0 ;;
        --no-start) START=0 ;;
        --gate) GATE=${2:?--gate needs a gate id, as in [[gates]]}; shift ;;
        --finish) FINISH=${2:?--finish needs the address of the finish station}; shift ;;
        --position) POSITION=${2:?--position needs metres}; shift ;;
        --mqtt-password-file) MQTT_PASSWORD_IN=${2:?--mqtt-password-file needs a file}; shift ;;
        --hotspot-file) HOTSPOT_IN=${2:?--hotspot-file needs a file}; shift ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
ROLE=finish
if [ -n "$GATE" ] || [ -n "$FINISH" ]; then
    ROLE=gate
    [[ $GATE =~ ^[A-Za-z0-9_-]{1,32}$ ]] || die "--gate: use 1-32 letters, digits, - or _ (got '$GATE')"
    [[ $FINISH =~ ^[A-Za-z0-9.:-]{1,253}$ ]] || die "--finish: the finish station's address, e.g. 10.42.0.1 (got '$FINISH')"
    if ! [[ $POSITION =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $POSITION =~ ^0+(\.0+)?$ ]]; then
        die "--position: metres from the finish line, more than 0 (got '$POSITION')"
    fi
    HOTSPOT=0
elif [ -n "$MQTT_PASSWORD_IN" ] || [ -n "$HOTSPOT_IN" ]; then
    die "--mqtt-password-file and --hotspot-file are for a checkpoint gate (--gate ID --finish HOST)"
fi
for file in "$MQTT_PASSWORD_IN" "$HOTSPOT_IN"; do
    if [ -n "$file" ] && [ ! -r "$file" ]; then
        die "cannot read $file"
    fi
done
if [ "$ROLE" = finish ]; then
    APT_PACKAGES+=(mosquitto)
fi
need_root
if [ "$DRY_RUN" -eq 1 ]; then
    echo "Dry run: printing every step; nothing is changed."
fi

step "1/12 Check the system"
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
note "source: $SRC_DIR"
note "OS: $codename"
if [ "$ROLE" = gate ]; then
    note "role: checkpoint gate '$GATE' at $POSITION m, finish station at $FINISH"
else
    note "role: finish station (hotspot, time server and MQTT broker for checkpoint gates)"
fi
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

step "2/12 Debian packages: ${APT_PACKAGES[*]}"
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

step "3/12 Python venv $VENV (sees the system's picamera2, lgpio, numpy)"
if [ -x "$VENV/bin/python" ] && grep -qs "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
    note "exists"
else
    run install -d -m 0755 "$APP_DIR"
    run python3 -m venv --system-site-packages "$VENV"
fi

step "4/12 Install the station package into the venv"
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

step "5/12 User $USER_NAME in groups ${DEVICE_GROUPS[*]}"
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

step "6/12 Data folder $DATA_DIR"
note "systemd creates and owns it for the station (StateDirectory=station in $UNIT)"
if [ -d "$DATA_DIR" ]; then
    note "exists: kept (the laps are in it)"
else
    # Made now too, so `sudo -u station station export` works before the first start.
    run install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$DATA_DIR"
fi

step "7/12 Configuration $CONFIG (written once, never overwritten)"
run install -d -m 0755 "$ETC_DIR"
if [ -e "$CONFIG" ]; then
    note "exists: kept"
    if [ "$DRY_RUN" -eq 0 ] && ! "$VENV/bin/python" -c 'import sys; from station.config import load_config; load_config(sys.argv[1])' "$CONFIG"; then
        warn "$CONFIG has an error (above): the station will not start until it is fixed"
    fi
    if ! grep -qs '^\[mqtt\]' "$CONFIG"; then
        note "no [mqtt] table in it: checkpoint gates need one (see $SRC_DIR/deploy/${ROLE/finish/station}.toml)"
    fi
elif [ "$ROLE" = gate ]; then
    sed -e "s/@GATE@/$GATE/g" -e "s/@POSITION@/$POSITION/g" -e "s/@FINISH@/$FINISH/g" \
        "$SRC_DIR/deploy/gate.toml" | write_file "$CONFIG" 0640 root "$USER_NAME"
    note "on the finish Pi, add this gate to /etc/station/station.toml and restart it:"
    note "  [[gates]]  id = \"$GATE\"  position_m = $POSITION  (no pin: its beam is on this Pi)"
else
    run install -m 0640 -o root -g "$USER_NAME" "$SRC_DIR/deploy/station.toml" "$CONFIG"
fi

step "8/12 systemd units"
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

if [ "$ROLE" = gate ]; then
    step "9/12 Wi-Fi: join the finish station's hotspot as '$UPLINK_CON' (NetworkManager)"
    if [ -z "$HOTSPOT_IN" ]; then
        note "no --hotspot-file: join it yourself (sudo nmcli device wifi connect <its SSID> --ask)"
    else
        UPLINK_SSID=$(sed -n 's/^ssid=//p' "$HOTSPOT_IN" | head -n 1)
        SECRET=$(sed -n 's/^passphrase=//p' "$HOTSPOT_IN" | head -n 1)
        if [ -z "$UPLINK_SSID" ] || [ -z "$SECRET" ]; then
            die "$HOTSPOT_IN: needs ssid= and passphrase= lines (the finish Pi's /etc/station/hotspot.txt)"
        fi
        uplink=(connection.autoconnect yes connection.autoconnect-priority 100
            802-11-wireless.ssid "$UPLINK_SSID" wifi-sec.key-mgmt wpa-psk wifi-sec.psk "$SECRET"
            ipv6.method disabled)
        if have nmcli && grep -qx "$UPLINK_CON" <<<"$(nmcli -t -f NAME connection show 2>/dev/null)"; then
            run nmcli connection modify "$UPLINK_CON" "${uplink[@]}"
        else
            run nmcli connection add type wifi ifname "$HOTSPOT_IFACE" con-name "$UPLINK_CON" \
                ssid "$UPLINK_SSID" "${uplink[@]}"
        fi
        note "it joins '$UPLINK_SSID' whenever the finish station is in range"
    fi
else
    step "9/12 Wi-Fi hotspot '$HOTSPOT_CON' on $HOTSPOT_IFACE ($HOTSPOT_ADDR, NetworkManager)"
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
fi

if [ "$ROLE" = gate ]; then
    step "10/12 chrony: take the time from the finish station $FINISH"
    chrony_conf=$(printf '%s\n' \
        "# Track station checkpoint gate (deploy/install.sh --gate): this Pi's clock follows the" \
        "# finish station's, which turns this gate's times into its session clock. Step at once" \
        "# when off by more than 0.1 s, at any time: a coach may set the finish Pi's clock mid-session." \
        "server $FINISH iburst minpoll 0 maxpoll 4 prefer" \
        "makestep 0.1 -1")
    # chrony keeps the last makestep it reads, and Debian's chrony.conf has its own after confdir.
    if grep -qs '^makestep ' "$CHRONY_MAIN"; then
        run sed -i 's/^makestep /#station: makestep /' "$CHRONY_MAIN"
    else
        note "$CHRONY_MAIN has no makestep of its own: ours applies"
    fi
else
    step "10/12 chrony: serve time to checkpoint gates on $HOTSPOT_NET"
    chrony_conf=$(printf '%s\n' \
        "# Track station (deploy/install.sh): checkpoint gates on the hotspot take their time from" \
        "# this Pi. There is no internet at the track, so its own clock is the reference." \
        "allow $HOTSPOT_NET" \
        "local stratum 10")
fi
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

step "11/12 MQTT for checkpoint gates (user $MQTT_USER, password in $MQTT_PASSWORD_FILE)"
MQTT_NEW=0
if [ -s "$MQTT_PASSWORD_FILE" ]; then
    MQTT_SECRET=$(head -n 1 "$MQTT_PASSWORD_FILE")
    note "password kept from $MQTT_PASSWORD_FILE"
elif [ "$ROLE" = gate ] && [ -n "$MQTT_PASSWORD_IN" ]; then
    MQTT_SECRET=$(head -n 1 "$MQTT_PASSWORD_IN")
    [ -n "$MQTT_SECRET" ] || die "$MQTT_PASSWORD_IN is empty (copy the finish Pi's $MQTT_PASSWORD_FILE)"
    MQTT_NEW=1
elif [ "$ROLE" = gate ]; then
    warn "no --mqtt-password-file: copy the finish Pi's $MQTT_PASSWORD_FILE here (root:$USER_NAME 0640)"
else
    # 24 characters from 32: 120 random bits. Only its first 4 are ever shown.
    MQTT_SECRET=$(python3 -c 'import secrets; a = "abcdefghijkmnpqrstuvwxyz23456789"; print("".join(secrets.choice(a) for _ in range(24)))')
    MQTT_NEW=1
fi
if [ "$MQTT_NEW" -eq 1 ]; then
    printf '%s\n' "$MQTT_SECRET" | write_file "$MQTT_PASSWORD_FILE" 0640 root "$USER_NAME"
fi
if [ -n "$MQTT_SECRET" ] && { [ "$MQTT_NEW" -eq 0 ] || [ "$DRY_RUN" -eq 0 ]; }; then
    note "password begins '${MQTT_SECRET:0:4}' (compare on the gates; never shown in full)"
fi
if [ "$ROLE" = finish ]; then
    if [ "$HOTSPOT" -eq 1 ]; then
        gate_listener="listener $MQTT_PORT $HOTSPOT_ADDR"
    else
        gate_listener="listener $MQTT_PORT"
    fi
    mosquitto_conf=$(printf '%s\n' \
        "# Track station (deploy/install.sh): checkpoint gates publish their passes here; the" \
        "# station on this Pi subscribes. Password required on every listener." \
        "per_listener_settings false" \
        "allow_anonymous false" \
        "password_file $MOSQUITTO_PASSWD" \
        "# A gate's events wait here (QoS 1, persistent sessions) while the station is away." \
        "max_queued_messages 200000" \
        "persistent_client_expiration 14d" \
        "listener $MQTT_PORT 127.0.0.1" \
        "$gate_listener")
    mosquitto_changed=0
    if [ -r "$MOSQUITTO_CONF" ] && [ "$(cat "$MOSQUITTO_CONF")" = "$mosquitto_conf" ]; then
        note "$MOSQUITTO_CONF is up to date"
    else
        run install -d -m 0755 "$(dirname "$MOSQUITTO_CONF")"
        printf '%s\n' "$mosquitto_conf" | write_file "$MOSQUITTO_CONF" 0644 root root
        mosquitto_changed=1
    fi
    if [ "$MQTT_NEW" -eq 1 ] || [ ! -e "$MOSQUITTO_PASSWD" ]; then
        # Written in clear, then hashed in place: the password never appears on a command line.
        printf '%s:%s\n' "$MQTT_USER" "$MQTT_SECRET" | write_file "$MOSQUITTO_PASSWD" 0640 root mosquitto
        run mosquitto_passwd -U "$MOSQUITTO_PASSWD"
        mosquitto_changed=1
    else
        note "$MOSQUITTO_PASSWD exists: kept"
    fi
    # The hotspot address exists only once NetworkManager has the hotspot up: until then
    # mosquitto cannot bind it and exits, so it retries rather than giving up.
    dropin=$(printf '%s\n' "# Track station (deploy/install.sh): retry until the hotspot address exists." \
        "[Unit]" "After=NetworkManager.service" "StartLimitIntervalSec=0" \
        "[Service]" "Restart=on-failure" "RestartSec=5")
    if [ -r "$MOSQUITTO_DROPIN" ] && [ "$(cat "$MOSQUITTO_DROPIN")" = "$dropin" ]; then
        note "$MOSQUITTO_DROPIN is up to date"
    else
        run install -d -m 0755 "$(dirname "$MOSQUITTO_DROPIN")"
        printf '%s\n' "$dropin" | write_file "$MOSQUITTO_DROPIN" 0644 root root
        mosquitto_changed=1
    fi
    if [ "$mosquitto_changed" -eq 1 ] && { [ "$DRY_RUN" -eq 1 ] || systemd_running; }; then
        run systemctl daemon-reload
        run systemctl enable mosquitto.service
        run systemctl restart mosquitto.service
    fi
    note "to add a checkpoint gate: copy $MQTT_PASSWORD_FILE and $HOTSPOT_FILE to it, then run there:"
    note "  sudo deploy/install.sh --gate ID --finish $HOTSPOT_ADDR --position M --mqtt-password-file mqtt-password --hotspot-file hotspot.txt"
fi

step "12/12 Start the station"
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
if [ "$ROLE" = gate ]; then
    note "checkpoint gate '$GATE': its health page is on port 8080 at its address in the hotspot"
    note "(sudo nmcli -g IP4.ADDRESS device show $HOTSPOT_IFACE); chronyc sources shows the finish Pi"
else
    run "$VENV/bin/python" -m station.deploy_info --hotspot "$HOTSPOT_FILE" --config "$CONFIG" --png "$HOTSPOT_PNG" ||
        warn "could not show the join code: sudo $VENV/bin/python -m station.deploy_info --hotspot $HOTSPOT_FILE"
    if [ "$DRY_RUN" -eq 0 ] && [ -e "$HOTSPOT_PNG" ]; then
        chgrp "$USER_NAME" "$HOTSPOT_PNG"
        chmod 0640 "$HOTSPOT_PNG"
    fi
fi
echo
echo "Done. Wiring, mounting and faults: $APP_DIR/docs/HARDWARE.md"
