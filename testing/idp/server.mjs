#!/usr/bin/env node
// tokenwarden's test IdP: oidc-provider laid out like a Keycloak realm, plus a
// control API for tests. See README.md.
//
//   node server.mjs [--config /path/to/config.json]
//
// Prints one line to stdout when ready:
//   {"ready":true,"port":P,"control_port":C,"issuer":"http://127.0.0.1:P/realms/<realm>"}
import './lib/quiet.mjs'; // must stay first: tames oidc-provider's console output

import * as fs from 'node:fs';
import * as http from 'node:http';

import { loadConfig } from './lib/config.mjs';
import { createControlHandler } from './lib/control.mjs';
import { createGatewayHandler } from './lib/gateway.mjs';
import { IdpState } from './lib/state.mjs';

const HOST = '127.0.0.1';

function usage(msg) {
  if (msg) process.stderr.write(`test-idp: ${msg}\n`);
  process.stderr.write('usage: node server.mjs [--config FILE] [--exit-on-stdin-close | --no-exit-on-stdin-close]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const out = { config: undefined, stdinWatch: undefined };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--config') {
      out.config = argv[i + 1];
      if (!out.config) usage('--config needs a file');
      i += 1;
    } else if (a.startsWith('--config=')) {
      out.config = a.slice('--config='.length);
    } else if (a === '--exit-on-stdin-close') {
      out.stdinWatch = true;
    } else if (a === '--no-exit-on-stdin-close') {
      out.stdinWatch = false;
    } else if (a === '-h' || a === '--help') {
      usage();
    } else {
      usage(`unknown argument ${a}`);
    }
  }
  return out;
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    const onError = (err) => { server.off('listening', onListening); reject(err); };
    const onListening = () => { server.off('error', onError); resolve(server.address().port); };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host: HOST });
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    if (!server.listening) { resolve(); return; }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let cfg;
  try {
    cfg = loadConfig(args.config);
  } catch (err) {
    process.stderr.write(`test-idp: ${err.message}${err.cause ? ` (${err.cause.message})` : ''}\n`);
    process.exit(2);
  }

  const state = new IdpState(cfg);
  const gateway = createGatewayHandler(state);
  const makeGatewayServer = () => {
    const s = http.createServer((req, res) => {
      if (!state.callback) { res.writeHead(503).end(); return; }
      gateway(req, res);
    });
    s.keepAliveTimeout = 5000;
    return s;
  };

  let gatewayServer = makeGatewayServer();
  let shuttingDown = false;
  let controlServer;

  const hooks = {
    async down() {
      await closeServer(gatewayServer);
    },
    async up() {
      if (gatewayServer.listening) return;
      gatewayServer = makeGatewayServer();
      await listen(gatewayServer, state.port);
    },
    async shutdown(why) {
      if (shuttingDown) return;
      shuttingDown = true;
      if (why) process.stderr.write(`test-idp: shutting down (${why})\n`);
      const timer = setTimeout(() => process.exit(0), 2000);
      timer.unref();
      await Promise.all([closeServer(gatewayServer), controlServer ? closeServer(controlServer) : undefined]);
      process.exit(0);
    },
  };

  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(sig, () => hooks.shutdown(sig));
  }

  // Exit when our parent goes away: it holds the write end of our stdin pipe.
  // Watched by default only when stdin is a pipe or socket (as when a test
  // harness spawns us), so `node server.mjs < /dev/null &` keeps running.
  let watchStdin = args.stdinWatch;
  if (watchStdin === undefined) {
    try {
      const st = fs.fstatSync(0);
      watchStdin = st.isFIFO() || st.isSocket();
    } catch {
      watchStdin = false;
    }
  }
  if (watchStdin) {
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => hooks.shutdown('stdin closed'));
    process.stdin.on('close', () => hooks.shutdown('stdin closed'));
    process.stdin.on('error', () => hooks.shutdown('stdin error'));
    process.stdin.resume();
  }

  const port = await listen(gatewayServer, cfg.port);
  state.setPort(port);
  state.rebuildProvider();

  controlServer = http.createServer(createControlHandler(state, hooks));
  const controlPort = await listen(controlServer, cfg.control_port);

  process.stdout.write(`${JSON.stringify({
    ready: true, port, control_port: controlPort, issuer: state.issuer,
  })}\n`);
}

main().catch((err) => {
  process.stderr.write(`test-idp: failed to start: ${err.stack ?? err}\n`);
  process.exit(1);
});
