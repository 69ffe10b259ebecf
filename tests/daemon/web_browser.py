#!/usr/bin/env python3
"""The web console in a real browser: Debian's chromium, headless, driven by
chromedriver over the W3C WebDriver HTTP protocol (urllib and json, nothing
else). Opens the URL `hostvisor web` printed, checks that the page lists VM
as running, opens its console, types `echo web-NNNNN` and waits for the
guest's answer in the terminal, clicks pause and resume and sees the state
follow, takes a snapshot and a clone (VM-copy) through the page's buttons and
their name prompts, waits for the CPU and memory plots, and saves a
screenshot to SCREENSHOT. Only the chromedriver this script starts
(in a session of its own, so chromium is in its process group) is killed.

Usage: web_browser.py URL VM SCREENSHOT [--fake-vm]
--fake-vm: VM is the test stand-in (fake_vm.py), whose console answers
with what it is typed in capitals."""

import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
ENTER = "\ue007"


class WebDriverError(Exception):
    pass


class Browser:
    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="hv-web-chromium.")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w")
        self.driver = subprocess.Popen(
            ["chromedriver", "--port=%d" % self.port, "--allowed-ips=127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except (OSError, WebDriverError):
                pass
            if time.time() > deadline or self.driver.poll() is not None:
                self.close()
                raise WebDriverError("chromedriver did not come up (log: %s)" % self.log.name)
            time.sleep(0.1)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--user-data-dir=" + os.path.join(self.profile, "profile"), "--window-size=1400,1000",
                "--no-first-run", "--no-default-browser-check"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as e:
            raise WebDriverError("%s %s: %s" % (method, path, e.read()[:500].decode(errors="replace")))

    def s(self, method, path, body=None):
        return self.call(method, "/session/%s%s" % (self.session, path), body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def run(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, css):
        self.s("POST", "/element/%s/click" % self.find(css), {})

    def type_keys(self, text):
        """Key presses to whatever has the focus (xterm.js's hidden textarea)."""
        actions = []
        for key in text:
            actions += [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]
        self.s("POST", "/actions", {"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})

    def answer_prompt(self, text, timeout=10):
        """Types `text` into the page's window.prompt() and accepts it."""
        deadline = time.time() + timeout
        while True:
            try:
                self.s("GET", "/alert/text")
                break
            except WebDriverError:
                if time.time() > deadline:
                    raise WebDriverError("no prompt came up within %d s" % timeout)
                time.sleep(0.1)
        self.s("POST", "/alert/text", {"text": text})
        self.s("POST", "/alert/accept", {})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.s("GET", "/screenshot")))

    def wait_for(self, what, script, *args, timeout=30):
        deadline = time.time() + timeout
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.time() > deadline:
                raise WebDriverError("timed out after %d s waiting for %s" % (timeout, what))
            time.sleep(0.2)

    def close(self):
        try:
            if getattr(self, "session", None):
                self.s("DELETE", "")
        except (OSError, WebDriverError):
            pass
        # chromedriver and the chromium it started share its process group.
        try:
            os.killpg(self.driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.driver.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", self.profile])


def main():
    url, vm, screenshot = sys.argv[1:4]
    fake_vm = "--fake-vm" in sys.argv[4:]
    failures = []

    def check(name, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail), flush=True)
        if not ok:
            failures.append(name)

    browser = Browser()
    # A test that hangs is killed by ctest; chromedriver and chromium with it.
    signal.signal(signal.SIGTERM, lambda *_: (browser.close(), sys.exit(1)))
    try:
        browser.go(url)
        # The token went into the cookie and out of the address bar.
        current = browser.s("GET", "/url")
        check("the first visit moves the token out of the URL", "token=" not in current, current)
        row = "tr[data-vm='%s']" % vm
        state_of = "const r = document.querySelector(arguments[0]); return r ? r.dataset.state : null;"
        browser.wait_for("the VM in the list", state_of, row)
        check("the page lists the VM as running", browser.run(state_of, row) == "running",
              str(browser.run(state_of, row)))
        check("the events stream is live", browser.wait_for(
            "the events stream", "return document.getElementById('events-status').dataset.live === 'true';"))

        browser.click(row + " button[data-action='console']")
        browser.wait_for("the console's WebSocket", "return document.getElementById('console').dataset.connected === 'true';")
        marker = "web-%d" % random.randint(10000, 99999)
        lines = "return Array.from(document.querySelectorAll('#terminal .xterm-rows > div')).map(d => d.textContent);"
        if not fake_vm:
            # A fresh prompt first: the console may be mid-line after the boot.
            browser.type_keys(ENTER)
            time.sleep(0.5)
        browser.type_keys("echo " + marker + ENTER)
        # The guest's answer is a line of its own (the command's echo has the
        # prompt and "echo " before it).
        want = ("echo " + marker).upper() if fake_vm else marker
        answer = ("const want = arguments[0];" + lines.replace("return ", "const l = ") +
                  "return l.some(t => t.trim() === want);")
        try:
            browser.wait_for("the guest's answer in the terminal", answer, want, timeout=30)
            check("the guest answers in the terminal (%s)" % marker, True)
        except WebDriverError as e:
            check("the guest answers in the terminal (%s)" % marker, False,
                  "%s; the terminal shows: %s" % (e, [t for t in browser.run(lines) if t.strip()][-8:]))

        browser.click(row + " button[data-action='pause']")
        try:
            browser.wait_for("paused", "return document.querySelector(arguments[0]).dataset.state === 'paused';", row)
            check("pause: the state shows paused", True)
        except WebDriverError as e:
            check("pause: the state shows paused", False, str(e))
        check("pause: resume is offered, pause no longer",
              browser.run("const r = document.querySelector(arguments[0]);"
                          "return !r.querySelector('[data-action=resume]').disabled &&"
                          " r.querySelector('[data-action=pause]').disabled;", row))
        browser.click(row + " button[data-action='resume']")
        try:
            browser.wait_for("running", "return document.querySelector(arguments[0]).dataset.state === 'running';", row)
            check("resume: the state shows running", True)
        except WebDriverError as e:
            check("resume: the state shows running", False, str(e))

        # Snapshot and clone ask for a name (window.prompt).
        message = "return document.getElementById('message').textContent;"
        browser.click(row + " button[data-action='snapshot']")
        browser.answer_prompt("web-snap")
        try:
            browser.wait_for("the snapshot", "return document.getElementById('message').textContent === arguments[0];",
                             "snapshot web-snap of %s taken" % vm, timeout=120)
            check("snapshot: taken from the page", True)
        except WebDriverError as e:
            check("snapshot: taken from the page", False, "%s; the page says: %s" % (e, browser.run(message)))
        copy = vm + "-copy"
        browser.click(row + " button[data-action='clone']")
        browser.answer_prompt(copy)
        try:
            browser.wait_for("the clone in the list", "return document.querySelector(arguments[0]) !== null;",
                             "tr[data-vm='%s']" % copy, timeout=120)
            check("clone: the clone appears in the list", True)
        except WebDriverError as e:
            check("clone: the clone appears in the list", False, "%s; the page says: %s" % (e, browser.run(message)))

        label = "return document.querySelector(arguments[0] + ' td.' + arguments[1] + ' span').textContent;"
        try:
            memory = browser.wait_for("the memory plot", label, row, "memory", timeout=20)
            check("the memory plot shows the VM's memory (%s)" % memory, memory.endswith("MiB"), memory)
            cpu = browser.wait_for("the CPU plot", label, row, "cpu", timeout=20)
            check("the CPU plot shows the VM's load (%s)" % cpu, cpu.endswith("%"), cpu)
        except WebDriverError as e:
            check("the plots fill", False, str(e))

        # Plots with a few points in the picture (one every 2 s).
        try:
            browser.wait_for("three samples in the plots",
                             "return document.querySelector(arguments[0] + ' td.memory canvas').dataset.samples >= 3;",
                             row, timeout=20)
        except WebDriverError as e:
            check("the plots fill", False, str(e))
        browser.screenshot(screenshot)
        check("screenshot saved to " + screenshot, os.path.getsize(screenshot) > 1000)
    except WebDriverError as e:
        check("the browser session", False, str(e))
        try:
            browser.screenshot(screenshot)
            print("screenshot of the failure: " + screenshot)
        except (OSError, WebDriverError):
            pass
    finally:
        browser.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
