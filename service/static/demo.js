// The demo page: a token from the http role (POST /demo/token, with the API key typed in;
// the JWT secret never leaves the server), then groupcast.js: messages, who is present,
// join/leave as they happen, publishing over the WebSocket.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const page = document.body.dataset;
  const wsUrl = page.wsUrl || (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  let client = null;
  let subscribed = null; // the group the client is subscribed to
  let claims = null; // what the current token allows (read from it: its payload is not secret)

  $("api-key").value = sessionStorage.getItem("groupcast.apiKey") || "";
  // A name per tab by default, so two tabs are two members.
  $("name").value = sessionStorage.getItem("groupcast.name") || "guest-" + Math.floor(1000 + Math.random() * 9000);

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

  function entry(className, ...parts) {
    const item = document.createElement("li");
    item.className = className;
    item.append(...parts);
    $("messages").prepend(item);
    return item;
  }

  function show(group, offset, data) {
    const meta = document.createElement("code");
    meta.textContent = group + " @ " + offset;
    const body = document.createElement("span");
    body.textContent = " " + JSON.stringify(data);
    entry("message", meta, body).dataset.offset = offset;
  }

  function nameOf(member) {
    return member.info && typeof member.info.name === "string" ? member.info.name : member.sub;
  }

  function note(kind, member) {
    const item = entry("event " + kind, nameOf(member) + (kind === "join" ? " joined" : " left"));
    item.dataset.sub = member.sub;
  }

  function showMembers() {
    const members = subscribed ? client.presence(subscribed) : [];
    const count = subscribed ? client.memberCount(subscribed) : 0;
    $("members").replaceChildren(...members.map((member) => {
      const item = document.createElement("li");
      item.className = "member";
      item.dataset.sub = member.sub;
      item.textContent = nameOf(member);
      return item;
    }));
    $("member-count").textContent = count === 0 ? "nobody" : count === 1 ? "1 member" : count + " members";
  }

  function claimsOf(token) {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  function allows(patterns, group) {
    return (patterns || []).some((p) => (p.endsWith("*") ? group.startsWith(p.slice(0, -1)) : p === group));
  }

  $("subscribe-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const group = $("group").value.trim();
    const name = $("name").value.trim();
    sessionStorage.setItem("groupcast.name", name);
    if (client) client.close();
    client = null;
    subscribed = group;
    claims = null;
    // A replaced client still reports its own close: only the current one speaks (while
    // the constructor runs, both are still null).
    let mine = null;
    const current = (fn) => (...args) => {
      if (client === mine) fn(...args);
    };
    mine = new GroupcastClient(wsUrl, {
      // Called before each connection and for each refresh; the reply is {"token": ..., ...}.
      token: async () => {
        const reply = await api("/demo/token", { name, group });
        if (client === mine) claims = claimsOf(reply.token);
        return reply;
      },
      onStatus: current((state, detail, offset) => {
        $("transport").textContent = mine.transport === "sse" ? "Server-Sent Events (WebSocket blocked)" : "WebSocket";
        if (state === "subscribed") status(`subscribed to ${detail} at ${offset} as ${name}`);
        else if (state === "retrying") status(`reconnecting in ${(detail / 1000).toFixed(1)} s`);
        else if (state === "refreshed") $("token-status").textContent = "token refreshed, valid until " + new Date(detail * 1000).toLocaleTimeString();
        else status(state);
        if (state === "subscribed" || state === "closed") showMembers();
      }),
      onError: current((error) => status("error: " + error.message)),
      onDisconnected: current((info) => {
        status("disconnected by the server (" + info.reason + "); not reconnecting");
        subscribed = null;
        showMembers();
      }),
      onUnsubscribed: current((group, reason) => {
        status(`unsubscribed from ${group} (${reason})`);
        subscribed = null;
        showMembers();
      }),
    });
    client = mine;
    client.subscribe(group, (data, message) => show(message.group, message.offset, data), { presence: true });
    const changed = (kind) => current((member) => {
      note(kind, member);
      showMembers();
    });
    client.onJoin(group, changed("join"));
    client.onLeave(group, changed("leave"));
  });

  $("publish-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const group = $("group").value.trim();
    let data = $("data").value;
    try { data = JSON.parse(data); } catch (ignored) { /* publish as a string */ }
    try {
      // Over the WebSocket when the page's token may publish to the group; otherwise
      // through the HTTP API with the API key.
      if (client && group === subscribed && claims && allows(claims.publish, group)) {
        const offset = await client.publish(group, data);
        $("published").textContent = "published at " + offset + " over the WebSocket";
      } else {
        const reply = await api("/api/v1/publish", { group, data });
        $("published").textContent = "published at " + reply.offset + " over HTTP";
      }
    } catch (error) {
      $("published").textContent = "publish failed: " + error.message;
    }
  });
})();
