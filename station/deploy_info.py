"""How to join the station: its Wi-Fi hotspot as a QR code, and the dashboard's address.

`deploy/install.sh` writes the hotspot's name and passphrase once to
`/etc/station/hotspot.txt` (`ssid=...` and `passphrase=...` lines) and ends with

    python -m station.deploy_info --hotspot /etc/station/hotspot.txt --config /etc/station/station.toml

which prints a QR code phones scan to join (the `WIFI:T:WPA;S:...;P:...;;` format that
Android and iOS cameras read), the dashboard's address, and can save the code as a PNG to
print and tape to the station box. The dashboard may use `read_hotspot()` and `wifi_uri()`
to show the same code to a logged-in coach.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path

# NetworkManager's shared mode (ipv4.method shared) puts the Pi here; install.sh pins it.
HOTSPOT_ADDRESS = "10.42.0.1"
DEFAULT_PORT = 8080


class HotspotFileError(ValueError):
    """hotspot.txt is missing a key or is not readable; the message names which."""


@dataclass(frozen=True)
class Hotspot:
    ssid: str
    passphrase: str


def read_hotspot(path: str | Path) -> Hotspot:
    """Parse hotspot.txt: `key=value` lines, `#` comments, keys `ssid` and `passphrase`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HotspotFileError(f"{path}: cannot read: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise HotspotFileError(f"{path}:{number}: expected key=value, got {raw!r}")
        values[key.strip()] = value.strip()
    for key in ("ssid", "passphrase"):
        if not values.get(key):
            raise HotspotFileError(f"{path}: no {key}= line")
    if not 8 <= len(values["passphrase"]) <= 63:
        raise HotspotFileError(f"{path}: passphrase must be 8..63 characters (WPA2)")
    return Hotspot(values["ssid"], values["passphrase"])


def _escape(text: str) -> str:
    # The WIFI: format reserves these; a backslash makes them literal.
    for ch in "\\;,:\"":
        text = text.replace(ch, "\\" + ch)
    return text


def wifi_uri(ssid: str, passphrase: str) -> str:
    """The text of a "join this Wi-Fi" QR code (WPA/WPA2 personal)."""
    return f"WIFI:T:WPA;S:{_escape(ssid)};P:{_escape(passphrase)};;"


def dashboard_url(port: int = DEFAULT_PORT, host: str = HOTSPOT_ADDRESS) -> str:
    return f"http://{host}/" if port == 80 else f"http://{host}:{port}/"


def _qr(text: str):
    import qrcode  # only here: the station itself never needs it at start-up

    # Medium error correction: still reads from a phone held at an angle to a screen.
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return code


def qr_text(text: str, tty: bool = False) -> str:
    """The QR code as terminal text (half blocks, two modules a line).

    On a terminal, explicit ANSI colours make it black on white whatever the theme; in a
    log file it is drawn for a dark background, the common case for SSH sessions."""
    out = io.StringIO()
    _qr(text).print_ascii(out=out, tty=False, invert=not tty)
    if not tty:
        return out.getvalue()
    lines = out.getvalue().splitlines()
    return "".join(f"\x1b[48;5;15m\x1b[38;5;0m{line}\x1b[0m\n" for line in lines)


def save_png(text: str, path: str | Path) -> Path:
    path = Path(path)
    _qr(text).make_image(fill_color="black", back_color="white").save(str(path))
    return path


def _port_from_config(config_path: str | None) -> int:
    if not config_path:
        return DEFAULT_PORT
    from station.config import load_config

    return load_config(config_path).web_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m station.deploy_info", description=__doc__.splitlines()[0])
    parser.add_argument("--hotspot", required=True, metavar="FILE", help="hotspot.txt (ssid= and passphrase=)")
    parser.add_argument("--config", metavar="FILE", help="station.toml, for the dashboard's port")
    parser.add_argument("--png", metavar="FILE", help="also save the join code as a PNG, to print")
    args = parser.parse_args(argv)
    try:
        hotspot = read_hotspot(args.hotspot)
        port = _port_from_config(args.config)
    except (HotspotFileError, ValueError) as exc:
        print(f"deploy_info: error: {exc}", file=sys.stderr)
        return 2
    uri = wifi_uri(hotspot.ssid, hotspot.passphrase)
    url = dashboard_url(port)
    tty = sys.stdout.isatty()
    print("Join the station's Wi-Fi: scan this with a phone camera")
    print(qr_text(uri, tty=tty), end="")
    print(f"  Wi-Fi name:  {hotspot.ssid}")
    print(f"  Passphrase:  {hotspot.passphrase}")
    print()
    print("Then open the dashboard:")
    print(qr_text(url, tty=tty), end="")
    print(f"  {url}")
    if args.png:
        print(f"  (join code saved as {save_png(uri, args.png)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
