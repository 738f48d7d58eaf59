"""The gpiozero pin factory named in the config (`hardware.pin_factory`), and nothing else.

gpiozero, left alone, tries lgpio, then RPi.GPIO, then pigpio, then a native driver, and
falls back silently. A station that quietly ends up on the wrong driver (or on none) counts
no laps, so the factory is named in the config and a missing library or GPIO chip is a
`PinFactoryError` at start-up that says what to install or check.
"""

from __future__ import annotations

# name -> (module, class, what to install when it is missing)
FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory",
              "sudo apt install python3-lgpio (and create the venv with --system-site-packages)"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory",
                "sudo apt install python3-rpi.gpio (and create the venv with --system-site-packages)"),
    "mock": ("gpiozero.pins.mock", "MockFactory", "gpiozero (pip install gpiozero)"),
}


class PinFactoryError(RuntimeError):
    """The configured pin factory cannot be used on this machine."""


def make_pin_factory(name: str, **kwargs):
    """A new gpiozero pin factory for `name` ("lgpio", "rpigpio" or "mock").

    kwargs go to the factory (e.g. `chip=4` for LGPIOFactory, `pin_class=` for MockFactory).
    """
    import importlib

    if name not in FACTORIES:
        raise PinFactoryError(f"hardware.pin_factory: unknown pin factory {name!r} "
                              f"(use one of {', '.join(FACTORIES)})")
    module_name, class_name, install = FACTORIES[name]
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except ImportError as exc:
        raise PinFactoryError(f"hardware.pin_factory = {name!r}: cannot load {class_name} "
                              f"({exc}); install: {install}") from None
    try:
        return cls(**kwargs)
    except ImportError as exc:
        # gpiozero imports the driver library (lgpio, RPi.GPIO) inside the factory.
        raise PinFactoryError(f"hardware.pin_factory = {name!r}: the {name} library is missing "
                              f"({exc}); install: {install}") from None
    except Exception as exc:  # noqa: BLE001 - the driver's own errors vary (lgpio.error, RuntimeError)
        hint = ("no GPIO chip found: is this a Raspberry Pi, is /dev/gpiochip* present and "
                "readable by this user (group gpio)?") if name != "mock" else "see the error"
        raise PinFactoryError(f"hardware.pin_factory = {name!r}: cannot open the GPIO "
                              f"({type(exc).__name__}: {exc}); {hint}") from None
