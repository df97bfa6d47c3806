/*
 * groupcast.js: a dependency-free client for the groupcast WebSocket protocol (README,
 * "WebSocket protocol" and "JavaScript client"). Plain browser JavaScript, no build step.
 *
 *   const client = new GroupcastClient("wss://example.com/ws", {
 *     // called before each connection and to refresh: a token string, {"token": ...}
 *     // (e.g. the JSON your backend relays from POST /api/v1/tokens), or a fetch Response
 *     token: () => fetch("/my-app/groupcast-token"),
 *   });
 *   client.subscribe("room.1", (data, message) => console.log(message.offset, data), { presence: true });
 *   client.onJoin("room.1", (member) => console.log(member.sub, "joined", member.info));
 *   const offset = await client.publish("room.1", { text: "hi" });  // needs the token's publish claim
 *
 * Connections: it reconnects with jittered exponential backoff on every path (a refused or
 * expired token, a failing token callback, a server restart) and resubscribes every group
 * with `since` = the last offset it received, so nothing published meanwhile is missed
 * (within the group's retained history). 4001 fetches a fresh token first; 4003 and 1009
 * are the caller's mistakes and 4009 means the server threw this user out: none of those
 * is retried. Tokens are refreshed on the connection when the server says `expiring`.
 *
 * Where WebSockets cannot open (some proxies and networks block them), after two attempts
 * that never opened it falls back to Server-Sent Events on the same server (`/sse`, or
 * options.sseUrl): messages keep coming, every group resuming where it was; publishing
 * and presence need the WebSocket. client.transport says which is in use.
 */
(function (global) {
  "use strict";

  // Closes after which it reconnects and resumes (as it does after any close but 4009 and FATAL).
  const RESUME = new Set([1000, 1001, 1005, 1006, 1011, 1012, 1013, 4008]);
  const BAD_TOKEN = 4001;
  const DISCONNECTED = 4009;
  // Closes a retry cannot cure: the same frames would be refused again.
  const FATAL = { 4003: "forbidden", 1009: "too_large" };
  const GROUP = /^[A-Za-z0-9_.-]{1,100}$/;
  // What the server accepts is a JWT: three base64url parts. Anything else (an HTML error
  // page, "undefined", a JSON body) would only be refused with 4001 after a round trip.
  const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
  // Error frames that tell something without answering a request (the replay goes on).
  const NOTICES = new Set(["history_trimmed"]);
  // A connection that lived this long was a good one: the next failure backs off from
  // scratch. Counting from "open" instead would never back off, since the server accepts
  // a bad token's WebSocket before closing it with 4001.
  const STABLE_MS = 5000;
  // WebSocket attempts that never opened before falling back to Server-Sent Events.
  const WS_FAILURES_BEFORE_SSE = 2;

  class GroupcastClient {
    constructor(url, options = {}) {
      this.url = url;
      this.token = options.token;
      this.onStatus = options.onStatus || (() => {});
      // Errors are visible by default: a silent client is one nobody can debug.
      this.onError = options.onError || ((error) => console.error("groupcast:", error.code, error.message));
      this.onDisconnected = options.onDisconnected || null;
      this.onUnsubscribed = options.onUnsubscribed || (() => {});
      this.minDelay = options.minDelay || 250;
      this.maxDelay = options.maxDelay || 10000;
      // The server closes a connection with 1009 for a larger frame (GROUPCAST_MAX_FRAME_BYTES);
      // a publish that big is refused here instead, leaving the connection alone.
      this.maxFrameBytes = options.maxFrameBytes || 16384;
      this.groups = new Map(); // group -> {handler, presence, joinLeave, offset, state, members, memberCount}
      this.listeners = new Map(); // group -> {join: Set, leave: Set}; outlive subscriptions
      // The server answers a connection's frames in order, so the oldest unanswered
      // request of a group is what an error frame naming that group is about.
      this.requests = new Map(); // group -> [{kind: "subscribe" | "publish", resolve, reject}]
      this.outbox = []; // publishes waiting for a connection the server has accepted
      this.attempt = 0;
      this.closed = false;
      this.stopped = null;
      this.socket = null;
      this.ready = false; // the server answered a ping on this socket: its token was accepted
      this.openedAt = 0;
      this.retryTimer = null;
      this.refreshing = null;
      // Server-Sent Events, where WebSockets cannot open: same groups, receive only
      this.sseUrl = options.sseUrl || sseUrlOf(url);
      this.sseAllowed = options.sse !== false && typeof EventSource !== "undefined";
      this.wsFailures = 0;
      this.source = null;
      this.transport = "websocket";
      this._connect();
    }

    /**
     * Receive `group`'s messages: handler(data, message). options.since resumes after that
     * offset; options.presence lists this client among the members (presence(), onJoin,
     * onLeave); options.joinLeave = false keeps the listing but asks for no join/leave
     * frames (large groups).
     */
    subscribe(group, handler, options = {}) {
      if (!GROUP.test(group)) throw new TypeError("groupcast: group names are 1-100 characters of A-Z a-z 0-9 _ . -");
      let entry = this.groups.get(group);
      if (!entry) {
        entry = { offset: options.since || null, state: "idle", members: null, memberCount: 0 };
        this.groups.set(group, entry);
      }
      entry.handler = handler;
      entry.presence = Boolean(options.presence);
      entry.joinLeave = options.joinLeave !== false;
      if (entry.state === "idle") this._sendSubscribe(group, entry);
      if (this.transport === "sse") this._reopenSse(); // a stream's groups are fixed: open one with this group too
    }

    unsubscribe(group) {
      const entry = this.groups.get(group);
      this.groups.delete(group);
      if (entry && entry.state !== "idle") this._send({ type: "unsubscribe", group });
      if (this.transport === "sse") this._reopenSse();
    }

    /**
     * Publish `data` (any JSON value) to `group` over the WebSocket: a Promise of its
     * offset once stored. Rejected with an Error whose `code` is the server's (`forbidden`:
     * the token's publish claim does not allow the group; `unavailable`: retry) or
     * `disconnected` (the connection closed before the answer: the message may or may not
     * be stored), `bad_group`, `too_large`, or why the client stopped (`closed`,
     * `disconnected` after a 4009). Sent once the server has accepted the token.
     */
    publish(group, data) {
      return new Promise((resolve, reject) => {
        if (!GROUP.test(group)) return reject(failure("bad_group", "group names are 1-100 characters of A-Z a-z 0-9 _ . -", group));
        if (data === undefined) return reject(failure("bad_frame", "data is required (any JSON value)", group));
        if (this.closed) return reject(failure(this.stopped.code, this.stopped.message, group));
        if (this.source) return reject(failure("no_websocket", "publishing needs the WebSocket, which cannot open here (Server-Sent Events receive only)", group));
        const frame = JSON.stringify({ type: "publish", group, data });
        if (new TextEncoder().encode(frame).length > this.maxFrameBytes) {
          return reject(failure("too_large", `the frame is over ${this.maxFrameBytes} bytes`, group));
        }
        const request = { kind: "publish", group, frame, resolve, reject };
        if (this.ready) this._sendPublish(request);
        else this.outbox.push(request);
      });
    }

    /** The members of a presence group as last heard: [{sub, info}], this client's sub included. */
    presence(group) {
      const entry = this.groups.get(group);
      if (!entry || !entry.members) return [];
      return Array.from(entry.members, ([sub, info]) => ({ sub, info }));
    }

    /** How many members the group has (the listing is capped, the count is not). */
    memberCount(group) {
      const entry = this.groups.get(group);
      return entry && entry.members ? entry.memberCount : 0;
    }

    /** fn({sub, info}) when a member joins `group`; returns a function that stops it. */
    onJoin(group, fn) {
      return this._listen(group, "join", fn);
    }

    /** fn({sub, info}) when a member leaves `group`; returns a function that stops it. */
    onLeave(group, fn) {
      return this._listen(group, "leave", fn);
    }

    /** The offset of the last message received in `group` (what a resume starts after). */
    offset(group) {
      const entry = this.groups.get(group);
      return entry ? entry.offset : null;
    }

    close() {
      this._stop(failure("closed", "the client is closed"));
      if (this.socket) this.socket.close(1000);
      this._closeSse();
    }

    // Connecting

    async _connect() {
      this.retryTimer = null;
      if (this.closed) return;
      call(this.onStatus, "connecting");
      let token;
      try {
        token = await this._fetchToken();
      } catch (error) {
        if (this.closed) return;
        call(this.onError, { code: "token_unavailable", message: String(error && error.message ? error.message : error) });
        return this._retry();
      }
      if (this.closed) return; // close() was called while the token was on its way
      if (this.sseAllowed && this.wsFailures >= WS_FAILURES_BEFORE_SSE) return this._openSse(token);
      this.transport = "websocket";
      let socket;
      try {
        const separator = this.url.includes("?") ? "&" : "?";
        socket = new WebSocket(this.url + separator + "token=" + encodeURIComponent(token));
      } catch (error) {
        // A malformed URL: no retry will make it well-formed.
        this._stop(failure("bad_url", String(error)));
        call(this.onError, { code: "bad_url", message: String(error) });
        return;
      }
      this.socket = socket;
      this.ready = false;
      socket.onopen = () => {
        this.openedAt = Date.now();
        this.wsFailures = 0;
        call(this.onStatus, "open");
        // Subscribes are safe to lose to a refused connection (they are sent again on the
        // next); publishes wait for the pong that shows the token was accepted.
        this._send({ type: "ping" });
        for (const [group, entry] of this.groups) {
          entry.state = "idle";
          this._sendSubscribe(group, entry);
        }
      };
      socket.onmessage = (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (error) {
          call(this.onError, { code: "bad_json", message: "the server sent a frame that is not JSON" });
          return;
        }
        this._receive(frame);
      };
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this._lost();
        if (!this.openedAt) this.wsFailures += 1; // it never opened: blocked, or the server is away
        if (this.openedAt && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
        this.openedAt = 0;
        call(this.onStatus, "closed", event.code, event.reason);
        if (this.closed) return;
        if (event.code === DISCONNECTED) {
          const reason = event.reason || "disconnected by the server";
          this._stop(failure("disconnected", reason));
          if (this.onDisconnected) call(this.onDisconnected, { code: event.code, reason });
          else call(this.onError, { code: "disconnected", message: reason });
          return;
        }
        if (FATAL[event.code] || (event.code === BAD_TOKEN && typeof this.token !== "function")) {
          // (a fixed token string that was refused will be refused again)
          const code = FATAL[event.code] || "bad_token";
          this._stop(failure(code, event.reason));
          call(this.onError, { code: "closed_" + event.code, message: event.reason });
          return;
        }
        this._retry(); // 4001 included: the next attempt fetches a new token
      };
    }

    async _fetchToken() {
      let value = typeof this.token === "function" ? await this.token() : this.token;
      if (typeof Response !== "undefined" && value instanceof Response) {
        if (!value.ok) throw new Error(`the token endpoint answered ${value.status} ${value.statusText}`);
        value = await value.text();
      }
      const token = tokenOf(value);
      if (!token) {
        throw new Error("the token callback must give a token string or {\"token\": \"...\"}, not " + describe(value));
      }
      return token;
    }

    _retry() {
      if (this.closed) return;
      const wait = jittered(this.minDelay, this.maxDelay, this.attempt++);
      call(this.onStatus, "retrying", wait);
      this.retryTimer = setTimeout(() => this._connect(), wait);
    }

    /** The connection is gone: what was waiting on it is answered, the rest re-sent on the next. */
    _lost() {
      this.socket = null;
      this.ready = false;
      this._stopRefreshing();
      const pending = this.requests;
      this.requests = new Map();
      for (const queue of pending.values()) {
        for (const request of queue) {
          if (request.kind === "publish") {
            request.reject(failure("disconnected", "the connection closed before the server answered; the message may or may not be stored", request.group));
          }
        }
      }
      for (const entry of this.groups.values()) entry.state = "idle";
    }

    /** No more connections: close(), 4009, or a close no retry can cure. */
    _stop(error) {
      this.closed = true;
      if (!this.stopped) this.stopped = error; // the first reason: what later publishes are rejected with
      clearTimeout(this.retryTimer);
      this._stopRefreshing();
      const outbox = this.outbox;
      this.outbox = [];
      for (const request of outbox) request.reject(failure(error.code, error.message, request.group));
      for (const queue of this.requests.values()) {
        for (const request of queue) if (request.kind === "publish") request.reject(failure(error.code, error.message, request.group));
      }
      this.requests = new Map();
    }

    // Server-Sent Events: one stream for every group, its cursor (every group's offset)
    // resuming all of them; the browser reconnects it by itself with Last-Event-ID.

    _openSse(token) {
      const groups = Array.from(this.groups.keys());
      this.transport = "sse";
      if (!groups.length) return; // opened by the first subscribe
      const offsets = {};
      for (const [group, entry] of this.groups) if (entry.offset !== null) offsets[group] = entry.offset;
      let url = this.sseUrl + (this.sseUrl.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
      for (const group of groups) url += "&group=" + encodeURIComponent(group);
      if (Object.keys(offsets).length) url += "&since=" + cursorOf(offsets);
      const source = new EventSource(url);
      this.source = source;
      this.sseToken = token;
      call(this.onStatus, "connecting", "sse");
      source.addEventListener("subscribed", (event) => {
        this.openedAt = Date.now();
        call(this.onStatus, "open", "sse");
        const data = JSON.parse(event.data);
        for (const [group, offset] of Object.entries(data.groups)) {
          const entry = this.groups.get(group);
          if (entry) this._subscribed(group, entry, { type: "subscribed", group, offset });
        }
      });
      source.addEventListener("message", (event) => {
        this._receive({ type: "message", ...JSON.parse(event.data) });
      });
      source.addEventListener("error", (event) => {
        if (this.source !== source) return;
        if (event.data) return this._error(JSON.parse(event.data), undefined); // an error event of ours
        if (source.readyState === EventSource.CLOSED) {
          // the browser gave up (the server refused the stream: a token gone stale)
          this._closeSse();
          call(this.onStatus, "closed", "sse");
          this._retry();
        } // else: the browser reconnects by itself, with Last-Event-ID
      });
      source.addEventListener("close", (event) => {
        if (this.source !== source) return;
        const { code, reason } = JSON.parse(event.data);
        this._closeSse();
        if (this.openedAt && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
        this.openedAt = 0;
        call(this.onStatus, "closed", code, reason);
        if (code === DISCONNECTED) {
          this._stop(failure("disconnected", reason));
          if (this.onDisconnected) call(this.onDisconnected, { code, reason });
          else call(this.onError, { code: "disconnected", message: reason });
          return;
        }
        this._retry(); // a drain (1012), a slow client (4008), an expired token (4001): resume
      });
    }

    _closeSse() {
      if (this.source) this.source.close();
      this.source = null;
      for (const entry of this.groups.values()) entry.state = "idle";
    }

    _reopenSse() {
      if (this.closed || this.transport !== "sse") return;
      this._closeSse();
      clearTimeout(this.retryTimer);
      this._connect();
    }

    // Token refresh: the server says `expiring` ~30 s before the token's exp; a new token
    // sent as `refresh` keeps the connection (and its subscriptions and presence) open.

    _refresh() {
      if (this.refreshing || typeof this.token !== "function") return; // a fixed string cannot be renewed
      this.refreshing = { socket: this.socket, attempt: 0, timer: null, sent: false };
      this._refreshAttempt(this.refreshing);
    }

    async _refreshAttempt(state) {
      state.timer = null;
      let token;
      try {
        token = await this._fetchToken();
      } catch (error) {
        if (this.refreshing !== state) return;
        call(this.onError, { code: "token_unavailable", message: String(error && error.message ? error.message : error) });
        return this._refreshLater(state);
      }
      if (this.refreshing !== state || this.socket !== state.socket) return;
      state.sent = true;
      this._send({ type: "refresh", token });
    }

    /** Try again, backing off; if it never works the server closes with 4001 at exp and
     * the reconnect fetches a token from scratch. */
    _refreshLater(state) {
      state.sent = false;
      state.timer = setTimeout(() => this._refreshAttempt(state), jittered(this.minDelay, this.maxDelay, state.attempt++));
    }

    _stopRefreshing() {
      if (this.refreshing) clearTimeout(this.refreshing.timer);
      this.refreshing = null;
    }

    // Sending

    _sendSubscribe(group, entry) {
      if (!this._open()) return; // sent on open
      const frame = { type: "subscribe", group };
      if (entry.offset !== null) frame.since = entry.offset;
      if (entry.presence) {
        frame.presence = true;
        if (!entry.joinLeave) frame.join_leave = false;
      }
      entry.state = "pending";
      this._request(group, { kind: "subscribe" });
      this._send(frame);
    }

    _sendPublish(request) {
      this._request(request.group, request);
      this.socket.send(request.frame);
    }

    _request(group, request) {
      const queue = this.requests.get(group);
      if (queue) queue.push(request);
      else this.requests.set(group, [request]);
    }

    /** The oldest unanswered request of `group` (of `kind`, if given), taken off its queue. */
    _answered(group, kind) {
      const queue = this.requests.get(group);
      if (!queue) return null;
      const index = kind ? queue.findIndex((request) => request.kind === kind) : 0;
      if (index < 0) return null;
      const [request] = queue.splice(index, 1);
      if (!queue.length) this.requests.delete(group);
      return request;
    }

    _open() {
      return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
    }

    _send(frame) {
      if (this._open()) this.socket.send(JSON.stringify(frame));
    }

    // Receiving

    _receive(frame) {
      const group = frame.group;
      const entry = group !== undefined ? this.groups.get(group) : undefined;
      switch (frame.type) {
        case "message":
          if (entry) {
            entry.offset = frame.offset;
            call(entry.handler, frame.data, frame);
          }
          break;
        case "subscribed":
          this._answered(group, "subscribe");
          if (entry) this._subscribed(group, entry, frame);
          break;
        case "published": {
          const request = this._answered(group, "publish");
          if (request) request.resolve(frame.offset);
          break;
        }
        case "join":
          if (entry && entry.members && !entry.members.has(frame.sub)) {
            entry.members.set(frame.sub, frame.info);
            entry.memberCount += 1;
            this._emit(group, "join", { sub: frame.sub, info: frame.info });
          }
          break;
        case "leave":
          if (entry && entry.members) {
            const info = entry.members.get(frame.sub);
            // (a member past the capped listing is counted but was never listed)
            if (entry.members.delete(frame.sub) || entry.memberCount > entry.members.size) entry.memberCount -= 1;
            this._emit(group, "leave", { sub: frame.sub, info: info === undefined ? null : info });
          }
          break;
        case "unsubscribed":
          // The server took us out (reason "token": the refreshed token lacks the group;
          // "server": the API did it): forget it, or the next reconnect would ask again.
          if (entry) {
            this.groups.delete(group);
            call(this.onUnsubscribed, group, frame.reason);
          }
          break;
        case "expiring":
          this._refresh();
          break;
        case "refreshed":
          this._stopRefreshing();
          call(this.onStatus, "refreshed", frame.exp);
          break;
        case "pong":
          if (!this.ready) this._accepted();
          break;
        case "error":
          this._error(frame, entry);
          break;
      }
    }

    /** The server answered our first ping: the token was accepted, publishes can go. */
    _accepted() {
      this.ready = true;
      const outbox = this.outbox;
      this.outbox = [];
      for (const request of outbox) this._sendPublish(request);
    }

    _subscribed(group, entry, frame) {
      entry.state = "subscribed";
      entry.retries = 0;
      if (entry.offset === null) entry.offset = frame.offset;
      if (frame.members) {
        const before = entry.members;
        const complete = (members, count) => members !== null && members.size >= count;
        const beforeComplete = complete(before, entry.memberCount);
        entry.members = new Map(frame.members.map((member) => [member.sub, member.info]));
        entry.memberCount = frame.member_count !== undefined ? frame.member_count : entry.members.size;
        // Back after a reconnect: who came and went meanwhile is told as joins and leaves,
        // so an app that only follows the callbacks stays right. (Only when both listings
        // are complete: a capped one would look like departures.)
        if (before && beforeComplete && complete(entry.members, entry.memberCount)) {
          for (const [sub, info] of entry.members) if (!before.has(sub)) this._emit(group, "join", { sub, info });
          for (const [sub, info] of before) if (!entry.members.has(sub)) this._emit(group, "leave", { sub, info });
        }
      }
      call(this.onStatus, "subscribed", group, frame.offset);
    }

    _error(frame, entry) {
      const group = frame.group;
      if (group !== undefined && !NOTICES.has(frame.code)) {
        const request = this._answered(group);
        if (request && request.kind === "publish") {
          request.reject(failure(frame.code, frame.message, group));
          return; // the caller hears it through its promise
        }
        if (request && entry && entry.state === "pending") {
          entry.state = frame.code === "already_subscribed" ? "subscribed" : "idle";
          // Redis was away: the subscription did not happen; ask again, backing off.
          if (frame.code === "unavailable") this._resubscribeLater(group, entry);
        }
      } else if (group === undefined && this.refreshing && this.refreshing.sent &&
                 (frame.code === "bad_token" || frame.code === "forbidden")) {
        this._refreshLater(this.refreshing); // the refresh was refused
      }
      call(this.onError, frame);
    }

    _resubscribeLater(group, entry) {
      const socket = this.socket;
      const wait = jittered(this.minDelay, this.maxDelay, entry.retries = (entry.retries || 0) + 1);
      setTimeout(() => {
        if (this.socket === socket && this.groups.get(group) === entry && entry.state === "idle") {
          this._sendSubscribe(group, entry);
        }
      }, wait);
    }

    _listen(group, kind, fn) {
      let listeners = this.listeners.get(group);
      if (!listeners) this.listeners.set(group, (listeners = { join: new Set(), leave: new Set() }));
      listeners[kind].add(fn);
      return () => listeners[kind].delete(fn);
    }

    _emit(group, kind, member) {
      const listeners = this.listeners.get(group);
      if (listeners) for (const fn of Array.from(listeners[kind])) call(fn, member);
    }
  }

  /** The /sse URL beside a /ws one: same host and port, http(s) for ws(s). */
  function sseUrlOf(url) {
    const parsed = new URL(url, typeof location !== "undefined" ? location.href : undefined);
    parsed.protocol = parsed.protocol === "wss:" ? "https:" : "http:";
    parsed.pathname = parsed.pathname.replace(/\/ws\/?$/, "/sse");
    parsed.search = "";
    return parsed.toString();
  }

  /** A stream cursor, as the server makes them: every group's offset (sorted JSON, base64url). */
  function cursorOf(offsets) {
    const sorted = {};
    for (const group of Object.keys(offsets).sort()) sorted[group] = offsets[group];
    const bytes = new TextEncoder().encode(JSON.stringify(sorted));
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /** The token in what a token callback gave: "eyJ...", {"token": "eyJ..."}, or that JSON as text. */
  function tokenOf(value) {
    if (value !== null && typeof value === "object") return typeof value.token === "string" ? tokenOf(value.token) : null;
    if (typeof value !== "string") return null;
    const text = value.trim();
    if (text.startsWith("{") || text.startsWith('"')) {
      try {
        const parsed = JSON.parse(text);
        return typeof parsed === "string" || (parsed !== null && typeof parsed === "object") ? tokenOf(parsed) : null;
      } catch (error) {
        return null;
      }
    }
    return JWT.test(text) ? text : null;
  }

  /** What the callback gave, without echoing it: it may be a page that is no one's business. */
  function describe(value) {
    if (typeof value === "string") return `a string of ${value.length} characters that is not one`;
    if (value !== null && typeof value === "object") return "an object without a \"token\" string";
    return String(value);
  }

  /** Equal jitter: between half and all of min(max, min * 2^attempt) milliseconds, so
   * clients dropped together do not come back together. */
  function jittered(min, max, attempt) {
    const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function failure(code, message, group) {
    const error = new Error(message || code);
    error.code = code;
    if (group !== undefined) error.group = group;
    return error;
  }

  /** Call the app's callback; if it throws, report it as uncaught (the page sees it) but
   * go on with the frame: one bad handler must not stall the client's state. */
  function call(fn, ...args) {
    try {
      fn(...args);
    } catch (error) {
      setTimeout(() => {
        throw error;
      });
    }
  }

  global.GroupcastClient = GroupcastClient;
  if (typeof module !== "undefined") module.exports = { GroupcastClient, RESUME };
})(typeof window !== "undefined" ? window : globalThis);
