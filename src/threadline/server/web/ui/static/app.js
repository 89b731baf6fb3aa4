// Threadline UI: progressive enhancement only. Every page works without this file.
// Safety: data is never put into the DOM as markup by this script. Fragments come from the
// server's autoescaping templates and are parsed with DOMParser (an inert document: no script
// runs, no resource loads) before their nodes are moved in; everything else uses textContent.
"use strict";

// A login's CSRF token (auth on: the page's <meta name="csrf-token">), sent as the x-csrf-token
// header on every request that changes something; without a login there is none to send.
function csrfHeaders(headers) {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) headers["x-csrf-token"] = meta.content;
  return headers;
}

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

  // --- the column chooser stays open after a toggle (its links end in #columns) ----------------
  const chooser = document.querySelector("details[data-column-chooser]");
  if (chooser && window.location.hash === "#" + chooser.id) chooser.open = true;

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
      // next.rows is a live HTMLCollection and adopting a row moves it out of `next`: copy the
      // rows first, or every other row is skipped (and the tail becomes "undefined").
      const rows = Array.prototype.slice.call(next.rows).map(adopt);
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
  // The names come from the project's annotation configs (GET …/annotation-configs): a configured
  // name offers its labels (categorical) or a score in its range (continuous). A name that has no
  // config yet is only possible through "New annotation name…", which creates its config first, so
  // a typo never silently makes a new column.
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
  const annotationConfigs = {};  // URL → promise of the configs

  function loadConfigs(url) {
    if (!annotationConfigs[url]) {
      annotationConfigs[url] = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : { data: [] }; })
        .then(function (body) { return Array.isArray(body && body.data) ? body.data : []; })
        .catch(function () { return []; });
    }
    return annotationConfigs[url];
  }

  function option(value, text) {
    const item = document.createElement("option");
    item.value = value;
    item.textContent = text;
    return item;
  }

  function annotateRange(config) {
    const low = config.min_score, high = config.max_score;
    if (low === null && high === null) return "any number";
    return (low === null ? "…" : String(low)) + " – " + (high === null ? "…" : String(high));
  }

  // Show the fields that fit the chosen name: labels, a score, or the new-name fieldset.
  function annotateChoose(form) {
    const select = form.querySelector("[data-annotate-name]");
    const chosen = select.options[select.selectedIndex];
    const isNew = !!(chosen && chosen.dataset.newName);
    const config = isNew || !chosen ? null : (form.annotateConfigs || {})[chosen.value];
    const labels = form.querySelector("[data-annotate-label]");
    const kind = isNew ? form.elements.namedItem("new_kind").value : (config ? config.kind : "");
    form.querySelector("[data-annotate-new]").hidden = !isNew;
    form.querySelector("[data-annotate-label-field]").hidden = isNew || kind !== "categorical";
    form.querySelector("[data-annotate-label-text-field]").hidden = !(isNew ? kind !== "continuous" : kind === "freeform");
    form.querySelector("[data-annotate-score-field]").hidden = kind === "categorical" && !isNew;
    while (labels.firstChild) labels.removeChild(labels.firstChild);
    labels.appendChild(option("", "(choose a label)"));
    if (config && config.kind === "categorical") {
      config.labels.forEach(function (spec) {
        labels.appendChild(option(spec.label, spec.label + (spec.polarity !== "neutral" ? " (" + spec.polarity + ")" : "")));
      });
    }
    const score = form.querySelector("[data-annotate-score]");
    score.placeholder = config && config.kind === "continuous" ? annotateRange(config) : "e.g. 0.5";
  }

  function fillNames(form, configs) {
    const select = form.querySelector("[data-annotate-name]");
    form.annotateConfigs = {};
    while (select.firstChild) select.removeChild(select.firstChild);
    select.appendChild(option("", configs.length ? "(choose a name)" : "(no annotation names yet)"));
    configs.forEach(function (config) {
      form.annotateConfigs[config.name] = config;
      const item = option(config.name, config.name);
      if (config.description) item.title = config.description;
      select.appendChild(item);
    });
    if (form.dataset.configure !== "no") {  // a new name creates its config: admins only
      const fresh = option("", "New annotation name…");
      fresh.dataset.newName = "1";
      select.appendChild(fresh);
    }
    annotateChoose(form);
  }

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
    loadConfigs(form.dataset.configs).then(function (configs) {
      fillNames(form, configs);
      const first = form.querySelector("[data-annotate-name]");
      if (first) first.focus();
    });
  }, true);

  document.addEventListener("change", function (event) {
    const form = event.target.closest ? event.target.closest("form[data-annotate]") : null;
    if (form && (event.target.matches("[data-annotate-name]") || event.target.name === "new_kind")) annotateChoose(form);
  });

  function splitLabels(text) {
    return text.split(",").map(function (part) { return part.trim(); }).filter(function (part) { return part; });
  }

  // The config a new name gets: its good and bad labels, scored 1/0 by the direction.
  function newConfig(form, field) {
    const kind = field("new_kind"), direction = field("new_direction") || "higher_is_better";
    const high = direction === "higher_is_better" ? 1 : 0;
    const labels = kind !== "categorical" ? [] :
      splitLabels(field("new_good")).map(function (label) { return { label: label, polarity: "good", score: high }; })
        .concat(splitLabels(field("new_bad")).map(function (label) { return { label: label, polarity: "bad", score: 1 - high }; }));
    return { kind: kind, labels: labels, direction: direction };
  }

  function sendJson(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin", body: JSON.stringify(body),
      headers: csrfHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.ok) return data;
        const error = data && data.error ? data.error : null;
        throw new Error(error && error.message ? String(error.message) : "The server answered " + response.status + ".");
      }, function () { throw new Error("The server answered " + response.status + "."); });
    }, function () { throw new Error("Could not reach the server."); });
  }

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
    const select = form.querySelector("[data-annotate-name]");
    const chosen = select.options[select.selectedIndex];
    const isNew = !!(chosen && chosen.dataset.newName);
    const name = isNew ? field("new_name") : field("name");
    if (!name) { say(isNew ? "Type the new annotation name." : "Choose an annotation name.", true); return; }
    const config = isNew ? null : (form.annotateConfigs || {})[name];
    const body = { target_kind: form.dataset.targetKind, target_id: form.dataset.targetId, name: name,
      annotator_kind: "HUMAN", identifier: "ui" };
    const label = form.querySelector("[data-annotate-label-field]").hidden ? field("label_text") : field("label");
    if (label) body.label = label;
    const score = form.querySelector("[data-annotate-score-field]").hidden ? "" : field("score");
    // A number goes as a number; anything else goes as typed so the API explains what is wrong.
    if (score) body.score = NUMBER.test(score) && isFinite(Number(score)) ? Number(score) : score;
    if (config && label && !score) {  // a categorical label brings its score, so the mean means something
      config.labels.forEach(function (spec) { if (spec.label === label && spec.score !== null) body.score = spec.score; });
    }
    if (field("explanation")) body.explanation = field("explanation");
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    say("Saving…", false);
    const ready = isNew ? sendJson("PUT", form.dataset.configs + "/" + encodeURIComponent(name), newConfig(form, field))
      : Promise.resolve(null);
    ready.then(function () {
      if (isNew) delete annotationConfigs[form.dataset.configs];
      return sendJson("POST", form.dataset.api, body);
    }).then(function () {
      say("Saved.", false);
      window.location.reload();
    }).catch(function (error) {
      say(error && error.message ? error.message : "Could not save.", true);
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

// ==== conversation: keys (j/k/b/?), copy a message, session state ==================================
// A separate section (its own scope; the code above is not touched): it reads the page's markup
// and uses textContent only. Requests go to the same origin as JSON (never form-encoded).
(function () {
  const list = document.getElementById("turns");
  const status = document.querySelector("[data-keys-status]");
  const help = document.getElementById("keys-help");
  const helpButton = document.querySelector("[data-key-action=help]");
  let currentId = "";
  let sayTimer = 0;

  function say(text) {
    if (!status) return;
    status.textContent = text;
    window.clearTimeout(sayTimer);
    sayTimer = window.setTimeout(function () { status.textContent = ""; }, 4000);
  }

  // --- keys: j / k between turns, b to the first broken turn, ? for help ------------------------
  function turns() {
    return list ? Array.prototype.slice.call(list.querySelectorAll(":scope > li.turn")) : [];
  }

  function current() {
    const li = currentId ? document.getElementById(currentId) : null;
    return li && list && list.contains(li) ? li : null;
  }

  function firstVisible(items) {
    const top = 60;  // below the sticky top bar
    for (let i = 0; i < items.length; i++) {
      if (items[i].getBoundingClientRect().bottom > top) return i;
    }
    return items.length - 1;
  }

  function select(li, scroll) {
    const old = current();
    if (old && old !== li) { old.classList.remove("current"); old.removeAttribute("aria-current"); }
    document.querySelectorAll("#turns > li.turn.current").forEach(function (other) {
      if (other !== li) { other.classList.remove("current"); other.removeAttribute("aria-current"); }
    });
    currentId = li.id;
    li.classList.add("current");
    li.setAttribute("aria-current", "true");
    if (!li.hasAttribute("tabindex")) li.setAttribute("tabindex", "-1");
    li.focus({ preventScroll: true });
    if (scroll) li.scrollIntoView({ block: "start" });
  }

  function move(step) {
    const items = turns();
    if (!items.length) return;
    const here = current();
    let index = here ? items.indexOf(here) : -1;
    if (index < 0) {
      select(items[firstVisible(items)], true);
      return;
    }
    index += step;
    if (index >= items.length) {
      const more = document.querySelector("a[data-more]");
      if (more) { more.focus(); say("Last loaded turn: press Enter to load more turns."); } else say("This is the last turn.");
      return;
    }
    if (index < 0) {
      const paged = /[?&](at|turn_cursor)=/.test(window.location.search) && items[0].id !== "turn-1";
      say(paged ? "First turn on this page: earlier turns are on the first page." : "This is the first turn.");
      return;
    }
    select(items[index], true);
  }

  function brokenTurn() {
    const onPage = list ? list.querySelector(":scope > li.turn.broken") : null;
    if (onPage) { select(onPage, true); return; }
    const marker = document.querySelector("[data-breakdown]");
    const number = marker ? parseInt(marker.dataset.breakdown, 10) : 0;
    if (number > 0) {
      const url = new URL(window.location.href);
      url.searchParams.set("at", String(number - 1));
      url.searchParams.delete("turn_cursor");
      url.hash = "turn-" + number;
      say("Opening turn #" + number + "…");
      window.location.assign(url.pathname + url.search + url.hash);
      return;
    }
    const link = marker ? marker.querySelector("a[data-turn-link]") : null;
    if (link) { window.location.assign(link.dataset.turnLink); return; }
    say("No turn of this session is broken.");
  }

  function toggleHelp(open) {
    if (!help) return;
    const show = open === undefined ? help.hidden : open;
    help.hidden = !show;
    if (helpButton) helpButton.setAttribute("aria-expanded", show ? "true" : "false");
    if (show) help.scrollIntoView({ block: "nearest" });
  }

  if (list) {
    const bar = document.querySelector("[data-keys]");
    if (bar) bar.hidden = false;
    // Opened at a turn (#turn-N: a link, a search hit, "b" from another page): that turn is current.
    const target = window.location.hash.match(/^#turn-\d+$/) ? document.getElementById(window.location.hash.slice(1)) : null;
    if (target && list.contains(target)) select(target, false);

    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
      const el = event.target;
      if (el && el.closest && el.closest("input, textarea, select, [contenteditable]")) return;
      if (el && el.isContentEditable) return;
      if (event.key === "j") { event.preventDefault(); move(1); }
      else if (event.key === "k") { event.preventDefault(); move(-1); }
      else if (event.key === "b") { event.preventDefault(); brokenTurn(); }
      else if (event.key === "?") { event.preventDefault(); toggleHelp(); }
      else if (event.key === "Escape" && help && !help.hidden) { event.preventDefault(); toggleHelp(false); if (helpButton) helpButton.focus(); }
    });

    document.addEventListener("click", function (event) {
      const button = event.target.closest ? event.target.closest("button[data-key-action]") : null;
      if (!button) return;
      const action = button.dataset.keyAction;
      if (action === "next") move(1);
      else if (action === "prev") move(-1);
      else if (action === "broken") brokenTurn();
      else if (action === "help") toggleHelp();
      else if (action === "help-close") { toggleHelp(false); if (helpButton) helpButton.focus(); }
    });
  }

  // --- copy a message's original text (not its rendered markdown) -------------------------------
  function copyFallback(text) {
    return new Promise(function (resolve, reject) {
      const area = document.createElement("textarea");
      area.className = "copy-buffer";
      area.setAttribute("readonly", "");
      area.setAttribute("aria-hidden", "true");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (ok) resolve(); else reject(new Error("the browser refused to copy"));
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return copyFallback(text); });
    }
    return copyFallback(text);
  }

  if (list) document.documentElement.classList.add("can-copy");

  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("button.copy-msg[data-copy]") : null;
    if (!button) return;
    const text = button.dataset.copy;
    function done(label, bad) {
      button.textContent = label;
      button.classList.toggle("copied", !bad);
      button.classList.toggle("err", !!bad);
      say(bad ? "Could not copy the message." : "Copied the message.");
      window.clearTimeout(Number(button.dataset.timer || 0));
      button.dataset.timer = String(window.setTimeout(function () {
        button.textContent = "Copy";
        button.classList.remove("copied", "err");
      }, 2000));
    }
    copyText(text).then(function () { done("Copied", false); }, function () { done("Copy failed", true); });
  });

  // --- session state: close the session, set the project's idle timeout ------------------------
  const state = document.getElementById("session-state");
  if (!state) return;
  const controls = state.querySelector("[data-state-controls]");
  const stateStatus = state.querySelector("[data-state-status]");
  if (controls) controls.hidden = false;
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

  function report(text, bad) {
    if (!stateStatus) return;
    stateStatus.textContent = text;
    stateStatus.classList.toggle("err", !!bad);
  }

  // fetch() JSON on the same origin; resolves to the body, rejects with the API's error message.
  function api(method, url, body) {
    const init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") csrfHeaders(init.headers);
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (response.ok) return data;
        const error = data && data.error ? data.error : null;
        throw new Error(error && error.message ? String(error.message) : "The server answered " + response.status + ".");
      });
    }, function () { throw new Error("Could not reach the server."); });
  }

  function utc(iso) {
    return String(iso || "").replace("T", " ").replace(/\.\d+/, "").replace("Z", "") + " UTC";
  }

  // The same wording as the server's `duration` filter (web/ui/render.py), for seconds.
  function duration(seconds) {
    if (!(seconds > 0)) return "never";
    if (seconds < 10) return seconds.toFixed(2) + " s";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    let minutes = Math.floor(seconds / 60);
    const sec = Math.floor(seconds) % 60;
    if (minutes < 60) return minutes + "m " + String(sec).padStart(2, "0") + "s";
    let hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) return hours + "h " + String(minutes).padStart(2, "0") + "m";
    const days = Math.floor(hours / 24);
    hours = hours % 24;
    return days + "d " + hours + "h";
  }

  function text(selector, value) {
    const el = state.querySelector(selector);
    if (el) el.textContent = value;
  }

  const closeButton = state.querySelector("[data-close-session]");
  if (closeButton) {
    closeButton.addEventListener("click", function () {
      closeButton.disabled = true;
      report("Closing…", false);
      const closeUrl = state.dataset.closeUrl;
      api("POST", closeUrl, {}).then(function () {
        return api("GET", closeUrl.replace(/\/close$/, "/state"));
      }).then(function (data) {
        const badge = state.querySelector("[data-session-state]");
        if (badge) { badge.textContent = data.closed ? "closed" : "open"; badge.classList.toggle("closed", !!data.closed); badge.classList.toggle("open", !data.closed); }
        text("[data-state-since]", data.closed_at ? "since " + utc(data.closed_at) : "");
        text("[data-closes-at]", "");
        report(data.closed ? "Session closed." : "The session is open again (a new turn arrived).", false);
        if (data.closed) closeButton.remove(); else closeButton.disabled = false;
      }).catch(function (error) {
        report(error.message, true);
        closeButton.disabled = false;
      });
    });
  }

  const form = state.querySelector("form[data-idle-form]");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const input = form.elements.namedItem("idle_timeout_seconds");
      const raw = input && typeof input.value === "string" ? input.value.trim() : "";
      // A number goes as a number, empty as null (the server default); anything else as typed so the API explains.
      const value = raw === "" ? null : (NUMBER.test(raw) && isFinite(Number(raw)) ? Number(raw) : raw);
      const button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      report("Saving…", false);
      const url = state.dataset.settingsUrl;
      // PUT replaces every setting: send the online evaluators back as they are.
      api("GET", url).then(function (current) {
        const evaluators = current && Array.isArray(current.online_evaluators) ? current.online_evaluators : [];
        return api("PUT", url, { idle_timeout_seconds: value, online_evaluators: evaluators });
      }).then(function (saved) {
        const effective = Number(saved.effective_idle_timeout_seconds);
        text("[data-idle-text]", duration(effective));
        text("[data-idle-source]", saved.idle_timeout_seconds === null ? "(server default)" : "(project setting)");
        const badge = state.querySelector("[data-session-state]");
        const open = badge && badge.classList.contains("open");
        const last = Date.parse(state.dataset.lastActivity || "");
        const closesAt = last + effective * 1000;
        text("[data-closes-at]", !open || !(effective > 0) || !isFinite(last) ? "" : closesAt <= Date.now() ?
          "idle for longer than that: closes at the server’s next check" :
          "closes by itself about " + utc(new Date(closesAt).toISOString()) + " if idle");
        report("Saved: idle timeout " + duration(effective) + ".", false);
        if (button) button.disabled = false;
      }).catch(function (error) {
        report(error.message, true);
        if (button) button.disabled = false;
      });
    });
  }
})();
