// One live connection to /api/v1/ws that comes back by itself: it reconnects with backoff and
// resumes from the last event seen (`last_seq`), so a ward's page rides out a dropped network.
// Requests get a promise settled by their `ack` or `error`; a request cut by a drop is rejected
// with {code: "disconnected"} and the caller decides whether to send it again.

const STOP_CODES = new Set([4401, 4403, 4404, 4406, 4409, 4410]);

export class Live {
  constructor(hello, handlers) {
    this.hello = hello; // a function returning the hello (without last_seq)
    this.handlers = handlers; // {welcome, event, message, state, stopped}
    this.pending = new Map();
    this.counter = 0;
    this.lastSeq = null;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
  }

  start() {
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
    this.ws = ws;
    this.handlers.state?.(this.attempt === 0 ? "connecting" : "reconnecting");
    ws.onopen = () => {
      const hello = this.hello();
      if (this.lastSeq !== null) hello.last_seq = this.lastSeq;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(ws, event.code);
  }

  receive(message) {
    if (message.type === "ping") {
      this.ws.send(JSON.stringify({type: "pong", nonce: message.nonce}));
      return;
    }
    if (message.type === "welcome") {
      this.attempt = 0;
      this.lastSeq = message.seq;
      this.handlers.state?.("online");
      this.handlers.welcome?.(message);
      return;
    }
    if (message.type === "event") {
      this.lastSeq = Math.max(this.lastSeq ?? 0, message.seq);
      this.handlers.event?.(message);
      return;
    }
    if ((message.type === "ack" || message.type === "error") && this.pending.has(message.id)) {
      const {resolve, reject} = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.type === "ack") resolve(message.result ?? {});
      else reject(message);
      return;
    }
    this.handlers.message?.(message);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    for (const {reject} of this.pending.values()) reject({code: "disconnected"});
    this.pending.clear();
    if (STOP_CODES.has(code)) {
      this.stopped = true;
      this.handlers.stopped?.(code);
      return;
    }
    this.attempt += 1;
    this.handlers.state?.("reconnecting");
    const delay = Math.min(10000, 300 * 2 ** Math.min(this.attempt, 5)) * (0.8 + Math.random() * 0.4);
    setTimeout(() => this.connect(), delay);
  }

  get online() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  request(message) {
    if (!this.online) return Promise.reject({code: "disconnected"});
    const id = `r${++this.counter}`;
    this.ws.send(JSON.stringify({...message, id}));
    return new Promise((resolve, reject) => this.pending.set(id, {resolve, reject}));
  }

  // Drop the socket as a lost network would (tests, and the "reconnect" button).
  drop() {
    this.ws?.close();
  }
}
