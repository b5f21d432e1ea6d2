// A run's page: its live log and its status.
//
// The page starts from the log's tail: the plain GET endpoint's last TAIL_BYTES (`?tail=`, which
// says where they start in `X-Log-Start`), shown from its first whole line, so a 100 MB log
// costs its last 256 KB, not its whole length. The log then follows the API's Server-Sent
// Events stream from the tail's end, by byte offset: every event's id is the
// offset after its bytes, so the browser's own reconnection (Last-Event-ID) resumes exactly
// where it stopped, and an event that starts before what is already shown is dropped: no line
// is lost or repeated. Only the last MAX_LINES lines are kept in the page while it follows;
// "Show earlier lines" (or scrolling to the top) fetches the bytes before them by offset from the
// plain GET endpoint. ANSI colours (SGR) become classes; other escape sequences are removed.
"use strict";

(function () {
  var box = document.getElementById("log");
  if (!box) return;
  var lines = document.getElementById("log-lines");
  var earlier = document.getElementById("log-earlier");
  var stateText = document.getElementById("log-state");
  var followBox = document.getElementById("log-follow");
  var streamUrl = box.getAttribute("data-stream");
  var bytesUrl = box.getAttribute("data-bytes");

  var MAX_LINES = 1500; // kept while following the tail
  var HARD_MAX = 50000; // kept at most when the reader scrolled up
  var EARLIER_BYTES = 256 * 1024;
  var TAIL_BYTES = 256 * 1024; // the first screen's read: the log's end
  var MAX_LINE_CHARS = 64 * 1024;

  var offset = 0; // bytes received so far (the stream's position)
  var firstOffset = 0; // offset of the first line shown
  var carry = new Uint8Array(0); // the last line's bytes, while it has no newline yet
  var carryNode = null;
  var decoder = new TextDecoder("utf-8");
  var ended = false;
  var source = null;
  var pendingScroll = false;

  // -- ANSI -------------------------------------------------------------------------------------
  var ESCAPES = /\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;
  var SGR = /\x1b\[([0-9;]*)m/g;

  function applySgr(style, params) {
    var codes = params === "" ? [0] : params.split(";").map(Number);
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { style = { fg: null, bg: null, bold: false }; }
      else if (c === 1) style.bold = true;
      else if (c === 22) style.bold = false;
      else if (c >= 30 && c <= 37) style.fg = c - 30;
      else if (c >= 90 && c <= 97) style.fg = c - 90 + 8;
      else if (c === 39) style.fg = null;
      else if (c >= 40 && c <= 47) style.bg = c - 40;
      else if (c === 49) style.bg = null;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5) { i += 2; }
      else if ((c === 38 || c === 48) && codes[i + 1] === 2) { i += 4; }
    }
    return style;
  }

  function lineNode(text) {
    // a carriage return without a newline redraws the line (progress bars): keep what is last
    if (text.length > 0 && text.charCodeAt(text.length - 1) === 13) text = text.slice(0, -1);
    var cr = text.lastIndexOf("\r");
    if (cr >= 0) text = text.slice(cr + 1);
    if (text.length > MAX_LINE_CHARS) text = text.slice(0, MAX_LINE_CHARS) + " …(line cut)";
    var node = document.createElement("div");
    node.className = "l";
    if (text.indexOf("\x1b") < 0) {
      node.textContent = text.replace(ESCAPES, "");
      return node;
    }
    var style = { fg: null, bg: null, bold: false };
    var last = 0;
    var match;
    SGR.lastIndex = 0;
    function put(part) {
      part = part.replace(ESCAPES, "");
      if (!part) return;
      if (style.fg === null && style.bg === null && !style.bold) {
        node.appendChild(document.createTextNode(part));
        return;
      }
      var span = document.createElement("span");
      var cls = [];
      if (style.fg !== null) cls.push("fg" + style.fg);
      if (style.bg !== null) cls.push("bg" + style.bg);
      if (style.bold) cls.push("b");
      span.className = cls.join(" ");
      span.textContent = part;
      node.appendChild(span);
    }
    while ((match = SGR.exec(text)) !== null) {
      put(text.slice(last, match.index));
      style = applySgr(style, match[1]);
      last = SGR.lastIndex;
    }
    put(text.slice(last));
    return node;
  }

  // -- bytes to lines -----------------------------------------------------------------------------
  function concat(a, b) {
    if (a.length === 0) return b;
    var out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  function decodeLine(bytes) {
    return decoder.decode(bytes);
  }

  // The complete lines of `bytes` (which start at `start`): at most `keep` of the last ones, as
  // [offset, text] pairs, and the bytes after the last newline.
  function splitLines(bytes, start, keep) {
    var ends = [];
    for (var i = bytes.length - 1; i >= 0 && ends.length <= keep; i--) {
      if (bytes[i] === 10) ends.push(i);
    }
    var rest = ends.length ? bytes.subarray(ends[0] + 1) : bytes;
    var out = [];
    // ends are newest first; the line before ends[k] starts after ends[k+1] (or at 0)
    var count = Math.min(ends.length, keep);
    var truncated = ends.length > keep;
    for (var k = count - 1; k >= 0; k--) {
      var from = k + 1 < ends.length ? ends[k + 1] + 1 : 0;
      out.push([start + from, decodeLine(bytes.subarray(from, ends[k]))]);
    }
    return { lines: out, rest: rest, truncated: truncated };
  }

  function following() {
    return followBox.checked;
  }

  function setFirst(value) {
    firstOffset = value;
    earlier.hidden = firstOffset <= 0;
  }

  function append(chunk) {
    var bytes = concat(carry, chunk);
    var start = offset - carry.length;
    offset += chunk.length;
    var keep = following() ? MAX_LINES : HARD_MAX;
    var split = splitLines(bytes, start, keep);
    carry = split.rest.length ? split.rest.slice() : new Uint8Array(0);
    if (carryNode) { carryNode.remove(); carryNode = null; }
    var fragment = document.createDocumentFragment();
    if (split.truncated) {
      lines.textContent = "";
      setFirst(split.lines.length ? split.lines[0][0] : offset - carry.length);
    }
    for (var i = 0; i < split.lines.length; i++) {
      var node = lineNode(split.lines[i][1]);
      node.setAttribute("data-o", split.lines[i][0]);
      fragment.appendChild(node);
    }
    lines.appendChild(fragment);
    if (carry.length) {
      carryNode = lineNode(decodeLine(carry.subarray(0, MAX_LINE_CHARS)));
      carryNode.setAttribute("data-o", offset - carry.length);
      lines.appendChild(carryNode);
    }
    trim(keep);
    scrollSoon();
  }

  function trim(keep) {
    var extra = lines.childElementCount - keep - (carryNode ? 1 : 0);
    while (extra-- > 0) lines.firstElementChild.remove();
    var first = lines.firstElementChild;
    if (first) setFirst(Number(first.getAttribute("data-o")));
  }

  function scrollSoon() {
    if (pendingScroll || !following()) return;
    pendingScroll = true;
    window.requestAnimationFrame(function () {
      pendingScroll = false;
      if (following()) box.scrollTop = box.scrollHeight;
    });
  }

  function showEarlier() {
    if (firstOffset <= 0) return;
    var from = Math.max(0, firstOffset - EARLIER_BYTES);
    var upTo = firstOffset;
    earlier.disabled = true;
    fetch(bytesUrl + "?offset=" + from + "&limit=" + (upTo - from), { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.arrayBuffer();
      })
      .then(function (buffer) {
        var bytes = new Uint8Array(buffer);
        var begin = 0;
        if (from > 0) { // the first line is cut: it starts before `from`
          var nl = bytes.indexOf(10);
          if (nl < 0) return;
          begin = nl + 1;
        }
        var ends = [];
        var fragment = document.createDocumentFragment();
        var pos = begin;
        for (var i = begin; i < bytes.length; i++) {
          if (bytes[i] === 10) {
            var node = lineNode(decodeLine(bytes.subarray(pos, i)));
            node.setAttribute("data-o", from + pos);
            fragment.appendChild(node);
            pos = i + 1;
          }
        }
        var height = box.scrollHeight;
        lines.insertBefore(fragment, lines.firstChild);
        box.scrollTop += box.scrollHeight - height; // the reader stays on the same line
        setFirst(from + begin);
      })
      .catch(function (error) { stateText.textContent = "could not load earlier lines: " + error.message; })
      .then(function () { earlier.disabled = false; });
  }

  earlier.addEventListener("click", function () {
    followBox.checked = false;
    showEarlier();
  });
  box.addEventListener("scroll", function () {
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    if (!atBottom && following()) followBox.checked = false;
    else if (atBottom && !following()) followBox.checked = true;
  });
  followBox.addEventListener("change", scrollSoon);

  function base64Bytes(text) {
    if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text);
    var raw = atob(text);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  // Chunks are rendered together every FLUSH_MS: while a long log catches up, the page draws
  // its tail once per batch instead of once per event.
  var FLUSH_MS = 60;
  var queue = [];
  var queued = 0;
  var flushing = false;

  function flush() {
    flushing = false;
    if (!queue.length) return;
    var bytes = queue.length === 1 ? queue[0] : new Uint8Array(queued);
    if (queue.length > 1) {
      var at = 0;
      for (var i = 0; i < queue.length; i++) { bytes.set(queue[i], at); at += queue[i].length; }
    }
    queue = [];
    queued = 0;
    append(bytes);
    if (endInfo) finish(endInfo);
  }

  var endInfo = null;

  function finish(info) {
    ended = true;
    if (carry.length) { // the last line had no newline: it is complete now
      carryNode = null;
      carry = new Uint8Array(0);
    }
    stateText.textContent = "ended: " + info.status +
      (info.exit_code === null ? "" : ", exit code " + info.exit_code);
    box.setAttribute("data-ended", "true");
    refreshStatus();
  }

  function connect() {
    source = new EventSource(streamUrl + "?offset=" + (offset + queued));
    source.addEventListener("open", function () {
      box.setAttribute("data-connections", Number(box.getAttribute("data-connections") || 0) + 1);
      stateText.textContent = ended ? stateText.textContent : "following";
    });
    source.addEventListener("log", function (event) {
      var chunk = base64Bytes(event.data);
      var after = Number(event.lastEventId);
      var begin = after - chunk.length;
      var reached = offset + queued;
      if (after <= reached) return; // seen already
      if (begin < reached) chunk = chunk.subarray(reached - begin); // a part seen already
      else if (begin > reached) { // a gap: start again from what was received
        source.close();
        return connect();
      }
      queue.push(chunk);
      queued += chunk.length;
      if (!flushing) {
        flushing = true;
        window.setTimeout(flush, FLUSH_MS);
      }
    });
    source.addEventListener("end", function (event) {
      source.close();
      var info = JSON.parse(event.data);
      if (flushing || queue.length) endInfo = info; // said once the last bytes are shown
      else finish(info);
    });
    source.addEventListener("error", function (event) {
      if (ended || endInfo) return;
      if (event.data) { // the server's own error event: say it, and try again later
        try { stateText.textContent = "log error: " + JSON.parse(event.data).message; } catch (e) { /* shown below */ }
        source.close();
        window.setTimeout(connect, 5000);
        return;
      }
      if (source.readyState === EventSource.CLOSED) {
        stateText.textContent = "disconnected; retrying…";
        window.setTimeout(connect, 3000);
      } else {
        stateText.textContent = "reconnecting…"; // the browser resumes with Last-Event-ID
      }
    });
  }

  // -- the run's status ---------------------------------------------------------------------------
  var statusBox = document.getElementById("run-status");
  var statusUrl = statusBox.getAttribute("data-status-url");

  function refreshStatus() {
    return fetch(statusUrl, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (run) {
        if (!run) return null;
        var badge = statusBox.querySelector(".status");
        badge.className = "status tone-" + (TONES[run.status] || "off");
        badge.lastChild.textContent = run.status;
        document.getElementById("run-reason").textContent = run.reason || "";
        document.getElementById("run-exit").textContent = run.exit_code === null ? "-" : run.exit_code;
        document.getElementById("run-cost").textContent = run.cost === null ? "-" : "$" + run.cost.toFixed(2);
        if (!run.active) {
          var stop = document.getElementById("stop-box");
          if (stop) stop.remove();
        }
        return run;
      })
      .catch(function () { return null; });
  }

  var TONES = {
    submitted: "wait", pending: "wait", provisioning: "wait", running: "run",
    terminating: "wait", done: "ok", failed: "bad", terminated: "off",
  };

  function pollStatus() {
    refreshStatus().then(function (run) {
      if (!run || run.active || !ended) window.setTimeout(pollStatus, 2000);
    });
  }

  // The log's tail first, then the stream from its end. A tail that starts mid-line is shown
  // from the next line start; the bytes before it stay for "Show earlier lines".
  function start() {
    var headers = null;
    fetch(bytesUrl + "?tail=" + TAIL_BYTES, { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        headers = r.headers;
        return r.arrayBuffer();
      })
      .then(function (buffer) {
        var bytes = new Uint8Array(buffer);
        var begin = Number(headers.get("X-Log-Start") || 0);
        var skip = 0;
        if (begin > 0) {
          var nl = bytes.indexOf(10);
          skip = nl < 0 ? bytes.length : nl + 1;
        }
        offset = begin + skip;
        setFirst(offset);
        if (skip < bytes.length) append(bytes.subarray(skip));
      })
      .catch(function (error) {
        stateText.textContent = "could not read the log's tail (" + error.message + "): streaming it";
        offset = 0;
        lines.textContent = "";
        carry = new Uint8Array(0);
        carryNode = null;
        setFirst(0);
      })
      .then(connect);
  }

  start();
  window.setTimeout(pollStatus, 2000);
})();
