/* The station's only script: keeps the live region of a page current (long-poll by content
   hash, see station/web/live.py), ticks "time in this lap", speaks new laps on request, and
   fills the phone's clock into the set-clock form. No framework, nothing from the internet. */
(function () {
  "use strict";
  var live = document.getElementById("live");
  var offline = document.getElementById("offline");
  // Session clock: now_s at a moment of performance.now(), advancing at `rate`.
  var clock = {now: 0, at: performance.now(), rate: 1};

  function setClock(now, rate) {
    clock = {now: Number(now) || 0, at: performance.now(), rate: Number(rate) || 1};
  }
  function sessionNow() {
    return clock.now + (performance.now() - clock.at) / 1000 * clock.rate;
  }
  function fmt(s) {
    if (s < 0) s = 0;
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m >= 60) return Math.floor(m / 60) + ":" + String(m % 60).padStart(2, "0") + ":" + String(sec).padStart(2, "0");
    return m + ":" + String(sec).padStart(2, "0");
  }
  function tick() {
    var now = sessionNow();
    var els = document.querySelectorAll(".tick[data-since]");
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = fmt(now - Number(els[i].getAttribute("data-since")));
    }
  }

  // ---- speech: only after a tap (phones allow speech only from a user gesture) ----------
  var speakBtn = document.getElementById("speak");
  var speaking = false;
  var spokenLaps = null;
  function lapsShown() {
    var r = live && live.querySelector(".runner");
    return r ? Number(r.getAttribute("data-laps")) : 0;
  }
  function say(text) {
    if (!("speechSynthesis" in window)) return;
    var u = new SpeechSynthesisUtterance(text);
    window.speechSynthesis.speak(u);
  }
  if (speakBtn) {
    if (!("speechSynthesis" in window)) { speakBtn.hidden = true; }
    speakBtn.addEventListener("click", function () {
      speaking = !speaking;
      speakBtn.setAttribute("aria-pressed", String(speaking));
      speakBtn.textContent = speaking ? "Speaking laps: tap to stop" : "Speak my laps";
      spokenLaps = lapsShown();
      if (speaking) {
        var r = live.querySelector(".runner");
        var last = r && r.getAttribute("data-say");
        say(last ? "Speaking your laps. " + last : "Speaking your laps.");
      } else if ("speechSynthesis" in window) {
        window.speechSynthesis.cancel();
      }
    });
  }
  function speakNewLap() {
    if (!speaking) return;
    var n = lapsShown();
    if (n > spokenLaps) {
      var r = live.querySelector(".runner");
      if (r && r.getAttribute("data-say")) say(r.getAttribute("data-say"));
    }
    spokenLaps = n;
  }

  // ---- live updates ------------------------------------------------------------------------
  var pending = null;   // a fragment held back while the coach types in a form
  var controller = null;
  var timer = null;
  var failures = 0;

  function busyTyping() {
    var a = document.activeElement;
    return a && live.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA") && a.value !== "";
  }
  // Never replace the buttons under a finger: a swap between touch-down and release (or
  // after a form was sent) would drop the coach's tap on a node that no longer exists.
  var pressing = false, submitting = false;
  function swap(html) {
    if (busyTyping() || pressing || submitting) { pending = html; return; }
    pending = null;
    live.innerHTML = html;
    tick();
    speakNewLap();
    document.dispatchEvent(new CustomEvent("station:updated"));
  }
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  // The coach's login ended (logged out elsewhere, or expired): say so and stop asking,
  // rather than "Reconnecting…" for ever.
  function loggedOut() {
    clearTimeout(timer);
    if (!offline) return;
    offline.textContent = "";
    var a = document.createElement("a");
    a.href = "/coach/login?next=" + encodeURIComponent(location.pathname);
    a.textContent = "Logged out: log in again";
    offline.appendChild(a);
    offline.hidden = false;
  }
  function poll() {
    if (controller) controller.abort();
    controller = new AbortController();
    var mine = controller;
    var url = live.getAttribute("data-live-url");
    url += (url.indexOf("?") < 0 ? "?" : "&") + "h=" + encodeURIComponent(live.getAttribute("data-h"));
    // A long-poll that outlives the server's hold (20 s) is a dead connection: give up on it.
    var guard = setTimeout(function () { mine.abort(); }, 25000);
    fetch(url, {cache: "no-store", credentials: "same-origin", signal: mine.signal})
      .then(function (r) {
        if (r.status === 403) { loggedOut(); return null; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (j) {
        clearTimeout(guard);
        if (j === null) return;
        failures = 0;
        if (offline) offline.hidden = true;
        setClock(j.now_s, j.rate);
        live.setAttribute("data-h", j.h);
        if (j.html !== null && j.html !== undefined) swap(j.html);
        schedule(j.retry_ms || 0);
      })
      .catch(function () {
        clearTimeout(guard);
        if (mine !== controller) return;  // replaced by a newer poll on purpose
        failures += 1;
        if (offline && failures > 1) offline.hidden = false;
        schedule(Math.min(1000 * failures, 5000));
      });
  }

  if (live) {
    setClock(live.getAttribute("data-now"), live.getAttribute("data-rate"));
    spokenLaps = lapsShown();
    var flush = function () {
      setTimeout(function () { if (pending !== null) swap(pending); }, 0);
    };
    live.addEventListener("focusout", flush);
    live.addEventListener("pointerdown", function () { pressing = true; });
    document.addEventListener("pointerup", function () { pressing = false; flush(); });
    document.addEventListener("pointercancel", function () { pressing = false; flush(); });
    live.addEventListener("submit", function () { submitting = true; });
    // Coming back to this page from history must not keep updates frozen.
    window.addEventListener("pageshow", function () { submitting = false; flush(); });
    // A phone waking up or rejoining the Wi-Fi asks at once instead of waiting out a timer.
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { failures = 0; poll(); }
    });
    window.addEventListener("online", function () { failures = 0; poll(); });
    poll();
  }
  tick();
  setInterval(tick, 500);

  // ---- health page: phone clock and camera picture -----------------------------------------
  var wall = document.getElementById("wall");
  var phoneClock = document.getElementById("phone-clock");
  if (phoneClock) {
    var showPhone = function () { phoneClock.textContent = new Date().toISOString().slice(0, 19) + "Z"; };
    showPhone();
    setInterval(showPhone, 1000);
  }
  var clockForm = document.getElementById("clock-form");
  if (clockForm && wall) {
    clockForm.addEventListener("submit", function () { wall.value = new Date().toISOString(); });
  }
  var snap = document.getElementById("snapshot");
  if (snap) {
    snap.addEventListener("click", function () {
      snap.src = snap.src.split("?")[0] + "?t=" + Date.now();
    });
  }
})();
