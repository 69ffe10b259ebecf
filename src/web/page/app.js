// The web console's page: the VM list (kept live by /v1/events), the
// lifecycle buttons, a terminal on a VM's console (xterm.js over the console
// WebSocket) and CPU and memory plots from /v1/vms/NAME/metrics. It talks
// only to the daemon's /v1 API on this same origin; the token travels in the
// HttpOnly cookie the first visit set, so this script never sees it.
"use strict";

(function () {
  const kPlotSamples = 60;
  const kMetricsPeriodMs = 2000;
  const kStates = ["running", "paused", "stopped", "suspended"];

  const tbody = document.querySelector("#vms tbody");
  const noVms = document.getElementById("no-vms");
  const message = document.getElementById("message");
  const eventsStatus = document.getElementById("events-status");
  const vms = new Map(); // name -> {row, stateCell, buttons, cpu, memory, lastCpu}
  let console_ = null; // {name, term, socket}

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
  }

  async function api(method, path, body) {
    const init = { method: method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const why = data && data.error ? data.error.message : response.status + " " + response.statusText;
      throw new Error(why);
    }
    return data;
  }

  // A small line plot on a canvas: the last kPlotSamples values, scaled to
  // `max`, with the latest value written beside it.
  class Plot {
    constructor(cell, color, format) {
      this.samples = [];
      this.color = color;
      this.format = format;
      const box = document.createElement("div");
      box.className = "plot";
      this.canvas = document.createElement("canvas");
      this.canvas.width = 140;
      this.canvas.height = 32;
      this.label = document.createElement("span");
      box.append(this.canvas, this.label);
      cell.append(box);
    }
    add(value, max) {
      this.samples.push(value);
      if (this.samples.length > kPlotSamples) this.samples.shift();
      this.label.textContent = this.format(value);
      this.canvas.dataset.samples = this.samples.length;
      this.draw(Math.max(max, ...this.samples, 1e-9));
    }
    clear() {
      this.samples = [];
      this.label.textContent = "";
      this.draw(1);
    }
    draw(max) {
      const c = this.canvas.getContext("2d");
      const w = this.canvas.width;
      const h = this.canvas.height;
      c.clearRect(0, 0, w, h);
      if (this.samples.length < 2) return;
      const step = w / (kPlotSamples - 1);
      const x0 = w - step * (this.samples.length - 1);
      c.beginPath();
      this.samples.forEach((v, i) => {
        const x = x0 + i * step;
        const y = h - 1 - (v / max) * (h - 2);
        if (i === 0) c.moveTo(x, y);
        else c.lineTo(x, y);
      });
      c.strokeStyle = this.color;
      c.lineWidth = 1.5;
      c.stroke();
      c.lineTo(w, h);
      c.lineTo(x0, h);
      c.closePath();
      c.globalAlpha = 0.15;
      c.fillStyle = this.color;
      c.fill();
      c.globalAlpha = 1;
    }
  }

  const kActions = [
    { action: "start", enabled: (s) => s === "stopped" || s === "suspended" },
    { action: "stop", enabled: (s) => s === "running" || s === "paused" },
    { action: "pause", enabled: (s) => s === "running" },
    { action: "resume", enabled: (s) => s === "paused" },
    { action: "snapshot", enabled: (s) => s === "running" || s === "paused" },
    { action: "clone", enabled: () => true },
    { action: "console", enabled: (s) => s === "running" || s === "paused" },
  ];

  function timestamp() {
    const d = new Date();
    const two = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + two(d.getMonth() + 1) + two(d.getDate()) + "-" + two(d.getHours()) + two(d.getMinutes()) + two(d.getSeconds());
  }

  async function act(name, action, button) {
    const path = "/v1/vms/" + encodeURIComponent(name);
    button.disabled = true;
    try {
      if (action === "console") {
        openConsole(name);
        return;
      }
      if (action === "snapshot") {
        const snapshot = window.prompt("Name of the snapshot of " + name, "snap-" + timestamp());
        if (!snapshot) return;
        say("taking snapshot " + snapshot + " of " + name + "…");
        await api("POST", path + "/snapshots", { name: snapshot });
        say("snapshot " + snapshot + " of " + name + " taken");
        return;
      }
      if (action === "clone") {
        const copy = window.prompt("Name of the clone of " + name, name + "-clone");
        if (!copy) return;
        say("cloning " + name + " as " + copy + "…");
        await api("POST", path + "/clone", { name: copy });
        say("cloned " + name + " as " + copy);
        return;
      }
      say(action + " " + name + "…");
      const vm = await api("POST", path + "/" + action);
      if (vm && vm.state) setState(name, vm.state);
      say(name + ": " + (vm && vm.state ? vm.state : action + " done"));
    } catch (e) {
      say(action + " " + name + ": " + e.message, true);
    } finally {
      const vm = vms.get(name);
      if (vm) updateButtons(vm);
    }
  }

  function updateButtons(vm) {
    for (const { action, enabled } of kActions) vm.buttons[action].disabled = !enabled(vm.state);
  }

  function setState(name, state) {
    const vm = vms.get(name);
    if (!vm || !kStates.includes(state)) return;
    vm.state = state;
    vm.row.dataset.state = state;
    vm.stateCell.textContent = state;
    updateButtons(vm);
    if (state === "stopped" || state === "suspended") {
      vm.cpu.clear();
      vm.memory.clear();
      vm.lastCpu = null;
    }
  }

  function addRow(info) {
    const row = document.createElement("tr");
    row.dataset.vm = info.name;
    const cells = ["name", "state", "cpu", "memory", "actions"].map((kind) => {
      const cell = document.createElement("td");
      cell.className = kind;
      row.append(cell);
      return cell;
    });
    cells[0].textContent = info.name;
    const vm = {
      row: row,
      stateCell: cells[1],
      buttons: {},
      cpu: new Plot(cells[2], "#3b82f6", (v) => v.toFixed(v < 10 ? 1 : 0) + " %"),
      memory: new Plot(cells[3], "#8b5cf6", (v) => (v / 1048576).toFixed(0) + " MiB"),
      lastCpu: null,
      state: null,
    };
    for (const { action } of kActions) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = action;
      button.dataset.action = action;
      button.addEventListener("click", () => act(info.name, action, button));
      cells[4].append(button);
      vm.buttons[action] = button;
    }
    vms.set(info.name, vm);
    return vm;
  }

  async function refresh() {
    let list;
    try {
      list = await api("GET", "/v1/vms");
    } catch (e) {
      say("listing the VMs: " + e.message, true);
      return;
    }
    const names = new Set(list.map((vm) => vm.name));
    for (const [name, vm] of vms) {
      if (!names.has(name)) {
        vm.row.remove();
        vms.delete(name);
      }
    }
    for (const info of list) {
      const vm = vms.get(info.name) || addRow(info);
      tbody.append(vm.row); // in the list's order
      setState(info.name, info.state);
    }
    noVms.hidden = list.length > 0;
  }

  function onEvent(event) {
    if (event.type === "vm-state") setState(event.vm, event.state);
    else if (event.type === "vm-created" || event.type === "vm-deleted") refresh();
    else if (event.type === "snapshot-created") say("snapshot " + event.snapshot + " of " + event.vm + " taken");
    if (event.type === "vm-state" && console_ && console_.name === event.vm && event.state === "stopped")
      console_.term.write("\r\n[" + event.vm + " stopped]\r\n");
  }

  // /v1/events is a never-ending response of JSON lines. The list is read
  // once the stream is open, so no change falls between the two.
  async function followEvents() {
    for (;;) {
      try {
        const response = await fetch("/v1/events");
        if (response.status === 401) {
          eventsStatus.textContent = "the token is no longer valid: `hostvisor web` prints a new URL";
          eventsStatus.dataset.live = "false";
          await new Promise((resolve) => setTimeout(resolve, 10000));
          continue;
        }
        if (!response.ok) throw new Error("events: " + response.status);
        eventsStatus.textContent = "live";
        eventsStatus.dataset.live = "true";
        await refresh();
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let newline;
          while ((newline = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, newline).trim();
            buffer = buffer.slice(newline + 1);
            if (line) onEvent(JSON.parse(line));
          }
        }
      } catch (e) {
        // the daemon went away, or the token was revoked: try again
      }
      eventsStatus.textContent = "reconnecting…";
      eventsStatus.dataset.live = "false";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // CPU: the VM process's user + system time over wall time (100 % is one
  // host core); memory: its resident set, on a scale of the guest's RAM.
  async function sampleMetrics() {
    const now = performance.now();
    await Promise.all(
      [...vms].map(async ([name, vm]) => {
        if (vm.state !== "running" && vm.state !== "paused") return;
        let metrics;
        try {
          metrics = await api("GET", "/v1/vms/" + encodeURIComponent(name) + "/metrics");
        } catch (e) {
          return; // stopped meanwhile
        }
        if (metrics.cpu) {
          const cpuNs = metrics.cpu.user_ns + metrics.cpu.system_ns;
          if (vm.lastCpu && cpuNs >= vm.lastCpu.ns)
            vm.cpu.add(((cpuNs - vm.lastCpu.ns) / 1e6 / (now - vm.lastCpu.at)) * 100, 100);
          vm.lastCpu = { ns: cpuNs, at: now };
        }
        if (metrics.memory) vm.memory.add(metrics.memory.host_rss_bytes, metrics.memory.guest_bytes);
      })
    );
    setTimeout(sampleMetrics, kMetricsPeriodMs);
  }

  function closeConsole() {
    if (!console_) return;
    console_.socket.onclose = null;
    console_.socket.close();
    console_.term.destroy();
    console_ = null;
    document.getElementById("terminal").textContent = "";
    document.getElementById("console").hidden = true;
  }

  function openConsole(name) {
    closeConsole();
    const section = document.getElementById("console");
    section.hidden = false;
    document.getElementById("console-name").textContent = name;
    // The DOM renderer keeps the text in the page (for find, copy, and the
    // browser test); xterm.js 3 draws on a canvas unless told.
    const term = new Terminal({ rendererType: "dom", cols: 100, rows: 30, scrollback: 5000 });
    term.open(document.getElementById("terminal"));
    const url = "ws://" + location.host + "/v1/vms/" + encodeURIComponent(name) + "/console";
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    const decoder = new TextDecoder();
    const encoder = new TextEncoder();
    socket.onmessage = (event) =>
      term.write(typeof event.data === "string" ? event.data : decoder.decode(new Uint8Array(event.data), { stream: true }));
    socket.onopen = () => section.dataset.connected = "true";
    socket.onclose = () => {
      section.dataset.connected = "false";
      term.write("\r\n[console closed]\r\n");
    };
    const send = (data) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    };
    if (typeof term.onData === "function") term.onData(send);
    else term.on("data", send);
    console_ = { name: name, term: term, socket: socket };
    term.focus();
  }

  document.getElementById("console-close").addEventListener("click", closeConsole);
  followEvents();
  sampleMetrics();
})();
