// A facade over a client socket that hands PGlite whole protocol messages.
//
// pglite-socket passes every TCP chunk straight to PGlite's execProtocolRaw.
// A message larger than one chunk (a Bind carrying a few thousand rows of
// unnest() arrays easily is) then reaches the WASM backend cut in two, which
// traps ("RuntimeError: unreachable") and leaves the engine unusable. This
// facade buffers the byte stream and emits 'data' only with complete
// messages, so the backend never sees a partial one.
//
// It also answers what PGlite does not understand before the startup packet:
//   * SSLRequest and GSSENCRequest get 'N' (no encryption), as a stock
//     PostgreSQL without TLS would, so clients in the default sslmode=prefer
//     (asyncpg, libpq) connect without ssl=False.
//   * CancelRequest: a cancel arrives on a second connection, which would
//     wait for the single connection slot and then be fed to the backend as
//     a bogus startup packet. The WASM backend cannot interrupt a running
//     statement anyway, so the connection is closed straight away.
//
// COPY ... FROM STDIN is refused: the WASM backend traps on the first
// CopyData message, which would end the engine for every later test. The
// Query is replaced by one that makes the backend itself raise
// feature_not_supported (SQLSTATE 0A000), so the client gets an ordinary
// error in order and the transaction state stays right. COPY TO STDOUT works.
//
// And it ends the session the way a real backend would when its client
// leaves. All clients share PGlite's single backend, so without this the
// next client would inherit an open (or failed) transaction, prepared
// statements, SET values, temporary tables, LISTENs and advisory locks.
//   * Terminate ('X') is not passed on; the socket is ended instead, which
//     is what clients such as asyncpg >= 0.30 wait for in close().
//   * When a client that held the backend disconnects, for whatever reason,
//     `resetSession` runs (see server.mjs) before the next client gets it.
//
// Finally, RESET brings back the WASM build's command-line settings, among
// them search_path = pg_catalog (unqualified names stop resolving to public)
// and client_min_messages = debug3 (a DEBUG notice for every statement).
// asyncpg's pool sends RESET ALL on every release, so a simple Query that
// RESETs gets `sessionDefaults` (the settings PGlite starts its session with)
// appended as further statements of the same Query: the client sees one more
// CommandComplete, as for any multi-statement string, and nothing else.

import { EventEmitter } from 'node:events';

const TERMINATE = 0x58; // 'X'
const QUERY = 0x51; // 'Q'
const COPY_FROM_STDIN = /\bcopy\b[\s\S]*\bfrom\s+stdin\b/i;
const RESETS_SETTINGS = /\breset\s+(all|search_path|client_min_messages)\b/i;
const REFUSE_COPY_SQL =
  "DO $refuse$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', " +
  "MESSAGE = 'COPY ... FROM STDIN is not supported by the PGlite TimescaleDB test engine', " +
  "HINT = 'Insert in bulk with INSERT ... SELECT * FROM unnest($1::int[], ...) instead.'; END $refuse$";
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
// PostgreSQL itself refuses startup packets above 10000 bytes; anything much
// larger before startup means the peer does not speak the protocol.
const MAX_STARTUP_BYTES = 10000;

export class FramedSocket extends EventEmitter {
  #socket;
  #buffered = Buffer.alloc(0);
  #inStartup = true;
  #pending = [];
  #attached = false;
  #log;
  #resetSession;
  #sessionDefaults;

  /**
   * @param {import('node:net').Socket} socket
   * @param {object} options
   * @param {(message: string) => void} options.log
   * @param {() => void} options.resetSession called synchronously when a client
   *   that held the backend goes away, before the next one gets it
   * @param {string} options.sessionDefaults SQL that restores the session
   *   settings PGlite starts with
   */
  constructor(socket, { log, resetSession, sessionDefaults }) {
    super();
    this.#socket = socket;
    this.#log = log;
    this.#resetSession = resetSession;
    this.#sessionDefaults = sessionDefaults;
    socket.on('data', (chunk) => this.#receive(chunk));
    socket.on('error', (err) => {
      // An EventEmitter throws on an 'error' nobody listens to: a client that
      // resets while it still waits for the connection slot must not take the
      // server down.
      if (this.listenerCount('error') > 0) this.emit('error', err);
      else this.#log(`client ${this.remoteAddress}:${this.remotePort} error while queued: ${err.message}`);
    });
    socket.on('close', () => {
      if (this.#attached) this.#resetSession();
      this.emit('close');
    });
  }

  get remoteAddress() {
    return this.#socket.remoteAddress;
  }

  get remotePort() {
    return this.#socket.remotePort;
  }

  get writable() {
    return this.#socket.writable;
  }

  write(data, callback) {
    return this.#socket.write(data, callback);
  }

  end() {
    this.#socket.end();
    return this;
  }

  destroy() {
    this.#socket.destroy();
    return this;
  }

  // The handler attaches its 'data' listener only once it holds the database
  // lock; messages framed before that wait here instead of being dropped.
  on(event, listener) {
    super.on(event, listener);
    if (event === 'data') this.#attached = true;
    if (event === 'data' && this.#pending.length > 0) {
      const pending = Buffer.concat(this.#pending);
      this.#pending = [];
      queueMicrotask(() => this.#deliver(pending));
    }
    return this;
  }

  #rewriteQuery(message) {
    // The text runs from after the 5-byte header to before the closing NUL.
    const sql = message.toString('utf8', 5, message.length - 1);
    if (COPY_FROM_STDIN.test(sql)) {
      this.#log('refused COPY FROM STDIN');
      return queryMessage(REFUSE_COPY_SQL);
    }
    if (RESETS_SETTINGS.test(sql)) {
      // A newline first, so that a trailing -- comment cannot swallow it.
      return queryMessage(`${sql}\n;${this.#sessionDefaults}`);
    }
    return message;
  }

  #deliver(messages) {
    if (this.listenerCount('data') > 0) this.emit('data', messages);
    else this.#pending.push(messages);
  }

  #receive(chunk) {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const complete = [];
    let offset = 0;
    while (true) {
      const rest = this.#buffered.length - offset;
      if (this.#inStartup) {
        if (rest < 4) break;
        const length = this.#buffered.readInt32BE(offset);
        if (length < 8 || length > MAX_STARTUP_BYTES) {
          this.#log(`client ${this.remoteAddress}:${this.remotePort} sent a bad startup length ${length}, closing`);
          this.#socket.destroy();
          return;
        }
        if (rest < length) break;
        const code = this.#buffered.readInt32BE(offset + 4);
        const message = this.#buffered.subarray(offset, offset + length);
        offset += length;
        if (length === 8 && (code === SSL_REQUEST || code === GSSENC_REQUEST)) {
          this.#socket.write('N');
          continue;
        }
        if (length === 16 && code === CANCEL_REQUEST) {
          this.#log('cancel request ignored: the WASM backend cannot interrupt a statement');
          this.#socket.end();
          return;
        }
        this.#inStartup = false;
        complete.push(message);
      } else {
        if (rest < 5) break;
        const type = this.#buffered[offset];
        const length = this.#buffered.readInt32BE(offset + 1);
        if (length < 4) {
          this.#log(`client ${this.remoteAddress}:${this.remotePort} sent a bad message length ${length}, closing`);
          this.#socket.destroy();
          return;
        }
        const total = 1 + length;
        if (rest < total) break;
        if (type === TERMINATE) {
          if (complete.length > 0) this.#deliver(Buffer.concat(complete));
          this.#socket.end();
          return;
        }
        let message = this.#buffered.subarray(offset, offset + total);
        if (type === QUERY) message = this.#rewriteQuery(message);
        complete.push(message);
        offset += total;
      }
    }
    // Copy the tail: a subarray would pin the whole (possibly large) buffer.
    this.#buffered = Buffer.from(this.#buffered.subarray(offset));
    if (complete.length > 0) this.#deliver(Buffer.concat(complete));
  }
}

function queryMessage(sql) {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const header = Buffer.alloc(5);
  header.write('Q', 0, 'latin1');
  header.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([header, body]);
}
