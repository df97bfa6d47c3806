// The demo page: uses the public HTTP API with the API key typed in, and groupcast.js.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const page = document.body.dataset;
  const wsUrl = page.wsUrl || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  let client = null;

  $("api-key").value = sessionStorage.getItem("groupcast.apiKey") || "";

  async function api(path, body) {
    const key = $("api-key").value.trim();
    sessionStorage.setItem("groupcast.apiKey", key);
    const response = await fetch(path, {
      method: "POST",
      headers: { "Authorization": "Bearer " + key, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error ? reply.error.message : response.statusText);
    return reply;
  }

  function status(text) {
    $("status").textContent = text;
  }

  function show(group, offset, data) {
    const item = document.createElement("li");
    item.className = "message";
    item.dataset.offset = offset;
    const meta = document.createElement("code");
    meta.textContent = group + " @ " + offset;
    const body = document.createElement("span");
    body.textContent = " " + JSON.stringify(data);
    item.append(meta, body);
    $("messages").prepend(item);
  }

  $("subscribe-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const group = $("group").value.trim();
    if (client) client.close();
    client = new GroupcastClient(wsUrl, {
      token: async () => (await api("/api/v1/tokens", { sub: "demo", groups: [group], ttl: 3600 })).token,
      onStatus: (state, detail, offset) =>
        status(state === "subscribed" ? `subscribed to ${detail} at ${offset}` : state),
      onError: (error) => status("error: " + error.message),
    });
    client.subscribe(group, (data, message) => show(message.group, message.offset, data));
  });

  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let data = $("data").value;
    try { data = JSON.parse(data); } catch (ignored) { /* publish as a string */ }
    try {
      const reply = await api("/api/v1/publish", { group: $("group").value.trim(), data });
      $("published").textContent = "published at " + reply.offset;
    } catch (error) {
      $("published").textContent = "publish failed: " + error.message;
    }
  });
})();
