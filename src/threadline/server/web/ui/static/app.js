// Threadline UI: progressive enhancement only. Every page works without this file.
// Safety: data is never put into the DOM as markup by this script. Fragments come from the
// server's autoescaping templates and are parsed with DOMParser (an inert document: no script
// runs, no resource loads) before their nodes are moved in; everything else uses textContent.
"use strict";

(function () {
  const POLL_MS = 2000;

  async function fetchDoc(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.status === 204) return { status: 204, doc: null, version: response.headers.get("X-Live-Version") };
    const text = await response.text();
    const doc = new DOMParser().parseFromString(text, "text/html");
    return { status: response.status, doc: doc, version: response.headers.get("X-Live-Version") };
  }

  function adopt(node) {
    return document.adoptNode(node);
  }

  function withParam(url, name, value) {
    const u = new URL(url, window.location.href);
    u.searchParams.set(name, value);
    return u.pathname + u.search;
  }

  function swap(id, doc) {
    const current = document.getElementById(id);
    const next = doc.getElementById(id);
    if (current && next) current.replaceWith(adopt(next));
  }

  // --- project picker ------------------------------------------------------------------------
  document.querySelectorAll("select[data-nav]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.value && select.value.charAt(0) === "/") window.location.assign(select.value);
    });
  });

  // --- tables: click a row, move with the keyboard --------------------------------------------
  function rowLinks(table) {
    return Array.prototype.slice.call(table.querySelectorAll("tbody tr .row-link"));
  }

  document.addEventListener("click", function (event) {
    const row = event.target.closest("table[data-rows] tbody tr[data-href]");
    if (!row || event.target.closest("a, button, input, select, summary")) return;
    if (window.getSelection && String(window.getSelection()).length > 0) return;
    const link = row.querySelector(".row-link");
    if (link) link.click();
  });

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target.closest && target.closest("input, select, textarea")) return;
    const table = target.closest ? target.closest("table[data-rows]") : null;
    const keys = ["ArrowDown", "ArrowUp", "j", "k", "Home", "End"];
    if (keys.indexOf(event.key) < 0) return;
    let links;
    let index;
    if (table) {
      links = rowLinks(table);
      index = links.indexOf(target.closest("tr") ? target.closest("tr").querySelector(".row-link") : target);
    } else if (event.key === "j" || event.key === "ArrowDown") {
      const first = document.querySelector("table[data-rows]");
      if (!first || event.key === "ArrowDown") return;
      links = rowLinks(first);
      index = -1;
    } else {
      return;
    }
    if (!links.length) return;
    let next = index;
    if (event.key === "ArrowDown" || event.key === "j") next = Math.min(links.length - 1, index + 1);
    if (event.key === "ArrowUp" || event.key === "k") next = Math.max(0, index - 1);
    if (event.key === "Home") next = 0;
    if (event.key === "End") next = links.length - 1;
    if (next !== index && links[next]) {
      event.preventDefault();
      links[next].focus();
    }
  });

  // --- filter forms: clean URLs, custom time range --------------------------------------------
  document.querySelectorAll("form[data-filters]").forEach(function (form) {
    const range = form.querySelector("select[data-range]");
    const custom = form.querySelectorAll(".custom-time");
    function showCustom() {
      custom.forEach(function (label) { label.hidden = !range || range.value !== "custom"; });
    }
    if (range) {
      showCustom();
      range.addEventListener("change", function () {
        showCustom();
        if (range.value !== "custom") form.requestSubmit();
      });
    }
    form.addEventListener("submit", function () {
      form.querySelectorAll("input, select").forEach(function (field) {
        if (!field.name || field.value === "" || field.closest("[hidden]")) field.disabled = true;
      });
      if (range && range.value === "custom") range.disabled = true;
      window.setTimeout(function () {
        form.querySelectorAll("input, select").forEach(function (field) { field.disabled = false; });
      }, 0);
    });
  });

  // --- lazy turn details ----------------------------------------------------------------------
  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!details.matches || !details.matches("details[data-fragment]") || !details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const target = details.querySelector("[data-fragment-target]");
    fetchDoc(details.dataset.fragment).then(function (result) {
      if (!result.doc || !target) return;
      target.replaceChildren.apply(target, Array.prototype.map.call(result.doc.body.childNodes, adopt));
    }).catch(function () {
      delete details.dataset.loaded;
      if (target) target.textContent = "Could not load the calls of this turn.";
    });
  }, true);

  // --- live updates ---------------------------------------------------------------------------
  function liveStatus(state) {
    const badge = document.querySelector("[data-live-status]");
    if (!badge) return;
    badge.classList.toggle("on", state === "on");
    badge.classList.toggle("paused", state === "paused");
  }

  function poll(element, buildUrl, apply) {
    let busy = false;
    async function tick() {
      if (!document.hidden && !busy && element.isConnected) {
        busy = true;
        try {
          const result = await fetchDoc(buildUrl());
          if (result.version) element.dataset.liveVersion = result.version;
          if (result.status === 200 && result.doc) apply(result.doc);
          liveStatus(result.status < 400 ? "on" : "paused");
        } catch (e) {
          liveStatus("paused");
        } finally {
          busy = false;
        }
      }
      window.setTimeout(tick, POLL_MS);
    }
    liveStatus("on");
    window.setTimeout(tick, POLL_MS);
  }

  const sessionsTable = document.querySelector("table[data-live-url]");
  if (sessionsTable) {
    poll(sessionsTable, function () {
      return withParam(sessionsTable.dataset.liveUrl, "v", sessionsTable.dataset.liveVersion || "");
    }, function (doc) {
      swap("overview", doc);
      const body = document.getElementById("session-rows");
      const next = doc.getElementById("session-rows");
      if (!body || !next) return;
      const known = new Set(Array.prototype.map.call(body.rows, function (r) { return r.dataset.key; }));
      const focused = document.activeElement && document.activeElement.closest("tr") ?
        document.activeElement.closest("tr").dataset.key : null;
      const rows = Array.prototype.map.call(next.rows, adopt);
      rows.forEach(function (row) { if (!known.has(row.dataset.key)) row.classList.add("fresh"); });
      body.replaceChildren.apply(body, rows);
      const empty = document.querySelector(".empty-row");
      if (empty && rows.length) empty.remove();
      if (focused !== null) {
        rows.forEach(function (row) {
          if (row.dataset.key === focused) { const link = row.querySelector(".row-link"); if (link) link.focus(); }
        });
      }
    });
  }

  // Strip bars link to their turn once it is on the page (else to its trace).
  function retargetStrip() {
    document.querySelectorAll("#strip a[data-turn]").forEach(function (a) {
      if (document.getElementById("turn-" + a.dataset.turn)) a.setAttribute("href", "#turn-" + a.dataset.turn);
    });
  }

  function mergeTurns(list, incoming) {
    const byKey = new Map();
    Array.prototype.forEach.call(list.children, function (li) { byKey.set(li.dataset.key, li); });
    Array.prototype.forEach.call(incoming, function (li) {
      const existing = byKey.get(li.dataset.key);
      if (existing) {
        const open = existing.querySelector("details[open]");
        if (existing.dataset.rev !== li.dataset.rev && !open) existing.replaceWith(adopt(li));
      } else {
        const node = adopt(li);
        node.classList.add("fresh");
        list.appendChild(node);
      }
    });
    retargetStrip();
  }

  function startConversationLive(list) {
    poll(list, function () {
      const url = withParam(list.dataset.liveUrl, "v", list.dataset.liveVersion || "");
      return withParam(url, "from", String(list.children.length));
    }, function (doc) {
      swap("session-header", doc);
      swap("strip", doc);
      retargetStrip();
      const incoming = doc.getElementById("turns");
      if (incoming) mergeTurns(list, Array.prototype.slice.call(incoming.children));
    });
  }

  const turnList = document.querySelector("ol#turns[data-live-url]");
  if (turnList) startConversationLive(turnList);

  // --- more turns of a long session ------------------------------------------------------------
  document.addEventListener("click", function (event) {
    const more = event.target.closest("a[data-more]");
    if (!more) return;
    event.preventDefault();
    more.setAttribute("aria-busy", "true");
    fetchDoc(more.href).then(function (result) {
      const list = document.getElementById("turns");
      const incoming = result.doc && result.doc.getElementById("turns");
      if (!list || !incoming) { window.location.assign(more.href); return; }
      mergeTurns(list, Array.prototype.slice.call(incoming.children));
      list.querySelectorAll(".fresh").forEach(function (li) { li.classList.remove("fresh"); });
      swap("more-turns", result.doc);
      if (incoming.dataset.liveUrl && !list.dataset.liveUrl) {
        list.dataset.liveUrl = incoming.dataset.liveUrl;
        list.dataset.liveVersion = incoming.dataset.liveVersion || "";
        startConversationLive(list);
      }
    }).catch(function () { window.location.assign(more.href); });
  });

  // --- search hits: mark the words in the matching turns (DOM text nodes only) -----------------
  function highlight(root, words) {
    const pattern = new RegExp("(" + words.map(function (w) {
      return w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }).join("|") + ")", "gi");
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function (node) {
      const parts = node.nodeValue.split(pattern);
      if (parts.length < 2) return;
      const fragment = document.createDocumentFragment();
      parts.forEach(function (part, i) {
        if (i % 2 === 1) {
          const mark = document.createElement("mark");
          mark.textContent = part;
          fragment.appendChild(mark);
        } else if (part) {
          fragment.appendChild(document.createTextNode(part));
        }
      });
      node.parentNode.replaceChild(fragment, node);
    });
  }

  const searched = document.querySelector("#turns[data-highlight]");
  if (searched) {
    const words = searched.dataset.highlight.split(/\s+/).filter(Boolean);
    if (words.length) {
      searched.querySelectorAll(".turn.match .bubble .text").forEach(function (el) { highlight(el, words); });
      const first = searched.querySelector(".turn.match");
      if (first && !window.location.hash) first.scrollIntoView({ block: "start" });
    }
  }

  // Breakdown and trend links go to their turn when it is on the page, else to its trace.
  document.addEventListener("click", function (event) {
    const link = event.target.closest ? event.target.closest("a[data-turn-link]") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    const id = (link.getAttribute("href") || "").slice(1);
    if (id && !document.getElementById(id)) {
      event.preventDefault();
      window.location.assign(link.dataset.turnLink);
    }
  });

  // --- annotate by hand: POST JSON to the REST API, then reload to show the new badges ----------
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

  // Opening "Annotate" clones the page's one form template (no markup from data: attributes only).
  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!details.matches || !details.matches("details[data-annotate-kind]") || !details.open) return;
    if (details.querySelector("form[data-annotate]")) return;
    const template = document.getElementById("annotate-form");
    if (!template || !template.content.firstElementChild) return;
    const form = template.content.firstElementChild.cloneNode(true);
    form.dataset.targetKind = details.dataset.annotateKind;
    form.dataset.targetId = details.dataset.annotateId;
    form.setAttribute("aria-label", "Annotate " + (details.dataset.annotateWhat || ""));
    details.appendChild(form);
    const first = form.querySelector("input");
    if (first) first.focus();
  }, true);

  document.addEventListener("submit", function (event) {
    const form = event.target.closest ? event.target.closest("form[data-annotate]") : null;
    if (!form) return;
    event.preventDefault();
    const status = form.querySelector("[data-annotate-status]");
    function say(text, bad) {
      if (status) { status.textContent = text; status.classList.toggle("err", !!bad); }
    }
    function field(name) {
      const input = form.elements.namedItem(name);
      return input && typeof input.value === "string" ? input.value.trim() : "";
    }
    const body = { target_kind: form.dataset.targetKind, target_id: form.dataset.targetId, name: field("name"),
      annotator_kind: "HUMAN", identifier: "ui" };
    if (field("label")) body.label = field("label");
    const score = field("score");
    // A number goes as a number; anything else goes as typed so the API explains what is wrong.
    if (score) body.score = NUMBER.test(score) && isFinite(Number(score)) ? Number(score) : score;
    if (field("explanation")) body.explanation = field("explanation");
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    say("Saving…", false);
    fetch(form.dataset.api, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", Accept: "application/json" },
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.ok) {
          say("Saved.", false);
          window.location.reload();
          return;
        }
        const error = data && data.error ? data.error : null;
        say(error && error.message ? String(error.message) : "The server answered " + response.status + ".", true);
        if (button) button.disabled = false;
      });
    }).catch(function () {
      say("Could not reach the server.", true);
      if (button) button.disabled = false;
    });
  });

  // --- trace view: select a span without a reload ---------------------------------------------
  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-select-span]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    const url = new URL(link.getAttribute("href"), window.location.href);
    fetchDoc(url.pathname + url.search).then(function (result) {
      if (!result.doc) return;
      swap("span-detail", result.doc);
      const selected = url.searchParams.get("span");
      document.querySelectorAll("table.spans tbody tr").forEach(function (row) {
        const on = row.dataset.key === selected;
        row.classList.toggle("selected", on);
        if (on) row.setAttribute("aria-selected", "true"); else row.removeAttribute("aria-selected");
      });
      window.history.replaceState(null, "", url.pathname + url.search);
    }).catch(function () { window.location.assign(url.href); });
  });
})();
