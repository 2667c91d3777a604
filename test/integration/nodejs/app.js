'use strict';
// A tiny HTTP app instrumented by the real SkyWalking Node.js agent (skywalking-backend-js),
// for test/integration/test_nodejs_agent.py. Plain `http` module; every request is one
// entry span, so one trace segment.
//
// Environment (the agent's own variables are read by the agent; the start() options here
// only give defaults):
//   SW_AGENT_COLLECTOR_BACKEND_SERVICES  collector address (skyrelay or a fake OAP)
//   SW_AGENT_NAME, SW_AGENT_INSTANCE     service and instance (node-app, node-app-1)
//   APP_PORT                             HTTP port on 127.0.0.1 (0 = any; printed)
//   SW_TEST_HEARTBEAT_MS                 shortens the agent's heartbeat: keepAlive and
//                                        reportInstanceProperties run on a fixed 20 s
//                                        setInterval in the agent, not configurable; the
//                                        test makes it shorter so it does not wait 20 s.
// Prints "listening <port>" when ready. SIGTERM/SIGINT: flush the agent, then exit 0.

const heartbeatMs = Number(process.env.SW_TEST_HEARTBEAT_MS || 0);
const realSetInterval = global.setInterval;
if (heartbeatMs > 0) {
  global.setInterval = function (fn, ms, ...args) {
    return realSetInterval(fn, ms === 20000 ? heartbeatMs : ms, ...args);
  };
}

const agent = require('skywalking-backend-js').default;
agent.start({
  serviceName: process.env.SW_AGENT_NAME || 'node-app',
  serviceInstance: process.env.SW_AGENT_INSTANCE || 'node-app-1',
  collectorAddress: process.env.SW_AGENT_COLLECTOR_BACKEND_SERVICES || '127.0.0.1:11800',
});
global.setInterval = realSetInterval; // the agent creates its heartbeat timer in start()

// required after agent.start(), so that the agent's http plugin is installed first
const http = require('http');

let served = 0;
const server = http.createServer((req, res) => {
  served++;
  const body = JSON.stringify({ path: req.url, served });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
});

server.listen(Number(process.env.APP_PORT || 0), '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  const done = () => process.exit(0);
  setTimeout(done, 3000).unref(); // bounded: do not wait on an unreachable collector
  const flushed = agent.flush();
  if (flushed) flushed.then(done, done);
  else done();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
