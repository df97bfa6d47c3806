/*
 * groupcast.js: a dependency-free client for the groupcast WebSocket protocol.
 *
 *   const client = new GroupcastClient("wss://example.com/ws", {
 *     token: async () => (await fetch("/my-token")).text(),   // or a token string
 *   });
 *   client.subscribe("news", (data, message) => console.log(message.offset, data));
 *
 * It reconnects with jittered exponential backoff and resubscribes every group with
 * `since` = the last offset it received, so nothing published while it was away is
 * missed (within the group's retained history). 1012 (server restarting) and 4008
 * (too slow) mean "reconnect and resume"; 4001 fetches a fresh token first; 4003 and
 * 1009 are errors in the caller's hands and are not retried.
 */
(function (global) {
  "use strict";

  const RESUME = new Set([1000, 1001, 1005, 1006, 1011, 1012, 1013, 4008]);

  class GroupcastClient {
    constructor(url, options = {}) {
      this.url = url;
      this.token = options.token;
      this.onStatus = options.onStatus || (() => {});
      this.onError = options.onError || (() => {});
      this.minDelay = options.minDelay || 250;
      this.maxDelay = options.maxDelay || 10000;
      this.groups = new Map(); // group -> {handler, offset, subscribed}
      this.attempt = 0;
      this.closed = false;
      this.socket = null;
      this._connect();
    }

    subscribe(group, handler) {
      const entry = this.groups.get(group) || { offset: null, subscribed: false };
      entry.handler = handler;
      this.groups.set(group, entry);
      this._sendSubscribe(group, entry);
    }

    unsubscribe(group) {
      this.groups.delete(group);
      this._send({ type: "unsubscribe", group });
    }

    /** The offset of the last message received in `group` (what a resume starts after). */
    offset(group) {
      const entry = this.groups.get(group);
      return entry ? entry.offset : null;
    }

    close() {
      this.closed = true;
      if (this.socket) this.socket.close(1000);
    }

    async _connect() {
      if (this.closed) return;
      this.onStatus("connecting");
      let token;
      try {
        token = typeof this.token === "function" ? await this.token() : this.token;
      } catch (error) {
        this.onError({ code: "token_unavailable", message: String(error) });
        return this._retry();
      }
      const separator = this.url.includes("?") ? "&" : "?";
      const socket = new WebSocket(this.url + separator + "token=" + encodeURIComponent(token));
      this.socket = socket;
      socket.onopen = () => {
        this.attempt = 0;
        this.onStatus("open");
        for (const [group, entry] of this.groups) {
          entry.subscribed = false;
          this._sendSubscribe(group, entry);
        }
      };
      socket.onmessage = (event) => this._receive(JSON.parse(event.data));
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.onStatus("closed", event.code, event.reason);
        if (this.closed) return;
        if (event.code === 4003 || event.code === 1009) {
          this.onError({ code: "closed_" + event.code, message: event.reason });
          return;
        }
        this._retry(event.code === 4001 ? 0 : undefined);
      };
    }

    _retry(delay) {
      if (this.closed) return;
      const backoff = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt++);
      const wait = delay !== undefined ? delay : backoff / 2 + Math.random() * (backoff / 2);
      setTimeout(() => this._connect(), wait);
    }

    _sendSubscribe(group, entry) {
      const frame = { type: "subscribe", group };
      if (entry.offset !== null) frame.since = entry.offset;
      this._send(frame);
    }

    _send(frame) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(frame));
      }
    }

    _receive(frame) {
      const entry = frame.group !== undefined ? this.groups.get(frame.group) : undefined;
      if (frame.type === "message" && entry) {
        entry.offset = frame.offset;
        entry.handler(frame.data, frame);
      } else if (frame.type === "subscribed" && entry) {
        entry.subscribed = true;
        if (entry.offset === null) entry.offset = frame.offset;
        this.onStatus("subscribed", frame.group, frame.offset);
      } else if (frame.type === "error") {
        this.onError(frame);
      }
    }
  }

  global.GroupcastClient = GroupcastClient;
  if (typeof module !== "undefined") module.exports = { GroupcastClient, RESUME };
})(typeof window !== "undefined" ? window : globalThis);
