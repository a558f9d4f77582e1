// The Hookline customer portal: a page over the customer API (/v1/customer/...), signed in with a
// portal link's token (in the URL fragment, which no server sees) or an API key. The credential
// lives in sessionStorage for this tab only; every call sends it as a bearer token.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "hookline.portal.credential";
let nextCursor = null;

function credential() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// A portal link carries its token as `#token=...`: taken, then removed from the address bar and
// the history, so that it is not bookmarked or shared by accident.
function takeLinkToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
}

async function api(method, path, body, contentType) {
  const headers = { Authorization: `Bearer ${credential()}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    init.body = contentType ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    answer = null;
  }
  if (response.status === 401) {
    signOut(answer && answer.error);
  }
  if (!response.ok) {
    throw new Error((answer && answer.error) || `HTTP ${response.status}`);
  }
  return answer;
}

function say(id, text) {
  $(id).textContent = text || "";
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("portal").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  say("sign-in-error", why || "");
}

function time(text) {
  return text ? text.replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

async function loadCustomer() {
  const customer = await api("GET", "/v1/customer");
  $("who").textContent = customer.name ? `${customer.name} (${customer.id})` : customer.id;
  $("url").value = customer.webhook_url || "";
  const disabled = customer.disabled;
  const since = disabled ? new Date(disabled.at * 1000).toISOString() : "";
  $("endpoint-state").textContent = disabled ? `disabled since ${time(since)}: ${disabled.reason}` : "enabled";
  $("enable").hidden = !disabled;
  return customer;
}

async function loadEventTypes(customer) {
  const known = (await api("GET", "/v1/event-types")).event_types.map((t) => t.type);
  const subscribed = new Set(customer.events || []);
  // Operational events (hookline.*) are an operator's to give: shown only when given.
  const names = [...new Set(["*", ...known, ...subscribed])].filter(
    (name) => !name.startsWith("hookline.") || subscribed.has(name),
  );
  const box = $("event-types");
  box.replaceChildren(
    ...names.map((name) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = name;
      input.checked = subscribed.has(name);
      label.append(input, ` ${name === "*" ? "every event type (*)" : name}`);
      return label;
    }),
  );
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function deliveryRow(delivery) {
  const row = document.createElement("tr");
  row.dataset.eventId = delivery.event_id;
  const actions = document.createElement("td");
  const details = document.createElement("button");
  details.type = "button";
  details.textContent = "Details";
  details.className = "details-button";
  details.addEventListener("click", () => toggleDetails(row, delivery.event_id));
  const resend = document.createElement("button");
  resend.type = "button";
  resend.textContent = "Resend";
  resend.className = "resend-button";
  resend.addEventListener("click", () => resendDelivery(delivery.event_id));
  actions.append(details, " ", resend);
  row.append(
    cell(time(delivery.first_attempt_at)),
    cell(delivery.event_id, "event-id"),
    cell(delivery.event_type),
    cell(delivery.status, `status status-${delivery.status}`),
    cell(delivery.attempts),
    cell(delivery.last_error || ""),
    actions,
  );
  return row;
}

async function toggleDetails(row, eventId) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("details")) {
    next.remove();
    return;
  }
  const detailsRow = document.createElement("tr");
  detailsRow.className = "details";
  const td = document.createElement("td");
  td.colSpan = 7;
  detailsRow.append(td);
  row.after(detailsRow);
  try {
    const shown = await api("GET", `/v1/customer/deliveries/${encodeURIComponent(eventId)}`);
    const lines = shown.attempts.map((a) => {
      const what = [time(a.at), a.outcome, a.status ? `HTTP ${a.status}` : "", a.error || "", a.reason || ""];
      return what.filter(Boolean).join(" · ") + (a.response ? `\n    answer: ${a.response}` : "");
    });
    const attempts = document.createElement("pre");
    attempts.className = "attempts";
    attempts.textContent = lines.join("\n");
    const payload = document.createElement("pre");
    payload.className = "payload";
    payload.textContent = shown.payload_available
      ? JSON.stringify(shown.payload, null, 2)
      : "(the payload is no longer retained)";
    td.append(attempts, payload);
  } catch (error) {
    td.textContent = error.message;
  }
}

async function loadDeliveries(append) {
  const params = new URLSearchParams({ limit: "25" });
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  if ($("filter-type").value.trim()) params.set("type", $("filter-type").value.trim());
  if (append && nextCursor) params.set("cursor", nextCursor);
  say("deliveries-error", "");
  try {
    const page = await api("GET", `/v1/customer/deliveries?${params}`);
    const rows = page.deliveries.map(deliveryRow);
    if (append) $("delivery-rows").append(...rows);
    else $("delivery-rows").replaceChildren(...rows);
    nextCursor = page.next_cursor;
    $("more").hidden = !nextCursor;
  } catch (error) {
    say("deliveries-error", error.message);
  }
}

async function resendDelivery(eventId) {
  try {
    await api("POST", `/v1/customer/deliveries/${encodeURIComponent(eventId)}/resend`);
    say("deliveries-status", `Resent ${eventId}.`);
  } catch (error) {
    say("deliveries-error", error.message);
  }
}

async function loadChart() {
  const stats = await api("GET", "/v1/customer/deliveries/stats");
  const hours = stats.hours;
  const data = [hours.map((h) => h.start), hours.map((h) => h.delivered), hours.map((h) => h.failed)];
  const box = $("chart");
  box.replaceChildren();
  if (typeof uPlot === "undefined") {
    box.textContent = hours.map((h) => `${h.delivered}/${h.failed}`).join(" ");
    return;
  }
  new uPlot(
    {
      width: Math.min(box.clientWidth || 900, 1000),
      height: 180,
      series: [
        {},
        { label: "delivered", stroke: "#1e6b34", fill: "rgba(30,107,52,.12)" },
        { label: "failed attempts", stroke: "#b3261e", fill: "rgba(179,38,30,.12)" },
      ],
    },
    data,
    box,
  );
}

async function show() {
  $("sign-in").hidden = true;
  $("portal").hidden = false;
  $("sign-out").hidden = false;
  const customer = await loadCustomer();
  await Promise.all([loadEventTypes(customer), loadDeliveries(false), loadChart().catch(() => {})]);
  document.body.dataset.ready = "true";
}

function wire() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("api-key").value.trim());
    $("api-key").value = "";
    try {
      await show();
    } catch (error) {
      signOut(error.message);
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("url-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    say("url-error", "");
    say("url-ok", "");
    try {
      await api("PUT", "/v1/customer/webhook", { url: $("url").value.trim() });
      say("url-ok", "Saved.");
      await loadCustomer();
    } catch (error) {
      say("url-error", error.message);
    }
  });
  $("enable").addEventListener("click", async () => {
    try {
      await api("POST", "/v1/customer/webhook/enable");
      await loadCustomer();
    } catch (error) {
      say("url-error", error.message);
    }
  });
  $("test-event").addEventListener("click", async () => {
    try {
      const sent = await api("POST", "/v1/customer/test-event");
      say("test-result", `Sent ${sent.event_id}.`);
    } catch (error) {
      say("test-result", error.message);
    }
  });
  $("events-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    say("events-error", "");
    say("events-ok", "");
    const events = [...document.querySelectorAll("#event-types input:checked")].map((input) => input.value);
    try {
      await api("PUT", "/v1/customer/subscriptions", { events });
      say("events-ok", "Saved.");
    } catch (error) {
      say("events-error", error.message);
    }
  });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    say("key-error", "");
    say("key-ok", "");
    try {
      await api("PUT", "/v1/customer/public-key", { public_key: $("public-key").value });
      say("key-ok", "Uploaded: payloads are now encrypted for this key.");
    } catch (error) {
      say("key-error", error.message);
    }
  });
  $("rotate").addEventListener("click", async () => {
    try {
      const rotated = await api("POST", "/v1/customer/signing-secret/rotate");
      say("new-secret", `New signing secret (shown once): ${rotated.signing_secret}`);
    } catch (error) {
      say("new-secret", error.message);
    }
  });
  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDeliveries(false);
  });
  $("refresh").addEventListener("click", () => {
    loadDeliveries(false);
    loadChart().catch(() => {});
  });
  $("more").addEventListener("click", () => loadDeliveries(true));
  $("recover").addEventListener("click", async () => {
    const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    try {
      const recovered = await api("POST", "/v1/customer/recover", { since });
      say("deliveries-status", `Resent ${recovered.resent} failed deliver${recovered.resent === 1 ? "y" : "ies"}.`);
    } catch (error) {
      say("deliveries-error", error.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  takeLinkToken();
  if (!credential()) {
    signOut();
    return;
  }
  try {
    await show();
  } catch (error) {
    signOut(error.message);
  }
});
