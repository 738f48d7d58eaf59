"""What people say to the engine: check-in and check-out, faults the station reports, a
coach silencing alarms or correcting a pass. A part of `Engine` (core.py), kept apart to
keep each file small; the methods use the engine's state directly."""

from __future__ import annotations

from . import credit as cr
from .model import MANUAL


class People:
    """Engine handlers of `checkin`, `checkout`, `fault`, `silence` and `correct`."""

    def _on_checkin(self, ev: dict, t: float) -> None:
        self._checked_in.add(ev["bib"])
        self._checked_out.discard(ev["bib"])
        self.version += 1

    def _on_checkout(self, ev: dict, t: float) -> None:
        self._checked_in.discard(ev["bib"])
        self._checked_out.add(ev["bib"])
        self.version += 1

    def _on_fault(self, ev: dict, t: float) -> None:
        source = str(ev["source"])
        cam = self._cams.get(source)
        gate = cam.gate if cam is not None else source
        key = (str(ev["kind"]), source)
        if ev["active"]:
            if key not in self._open_faults:
                row = [key[0], gate, t, None, source, str(ev.get("message", ""))]
                self._faults.append(row)
                self._open_faults[key] = row
                self.version += 1
        else:
            row = self._open_faults.pop(key, None)
            if row is not None:
                row[3] = t
                self.version += 1

    def _on_silence(self, ev: dict, t: float) -> None:
        if ev.get("bib") is None:
            self.safety.silence(None, t)    # everybody
            return
        try:
            self.safety.silence(int(ev["bib"]), t)
        except (TypeError, ValueError):
            pass   # a bib that is no bib silences nobody (never everybody)

    def _on_correct(self, ev: dict, t: float) -> None:
        """A coach's correction of a pass, named by gate and time as shown (3 decimals)."""
        gate = self._gates.get(ev.get("gate"))
        action = ev.get("action")
        try:
            pass_t = round(float(ev.get("pass_t")), 3)
        except (TypeError, ValueError):
            return
        bib = ev.get("bib")
        bibs = (bib,) if isinstance(bib, int) and bib > 0 else ()
        if gate is None:
            return
        if action == "add":
            if bibs:
                self._add_pass(gate, cr.PassRec(gate.id, pass_t, bibs, MANUAL), t)
            return
        want_deleted = action == "restore"
        found = [p for p in self._passes
                 if p.gate == gate.id and abs(round(p.t_s, 3) - pass_t) < 5e-4]
        found.sort(key=lambda p: p.deleted != want_deleted)
        if not found:
            return
        p = found[0]
        if action == "assign":
            self._recredit(gate, p, bibs, MANUAL)
            if bibs:
                self._take_back(gate, bibs[0], p)
        elif action == "delete" and not p.deleted:
            self._unindex(gate, p)
            p.deleted = True
            self._changed(p)
        elif action == "restore" and p.deleted:
            p.deleted = False
            self._index(gate, p)
            self._changed(p)
