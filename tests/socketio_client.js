// The seed's browser snippet, run by node with npm's socket.io-client: it prints every event
// it gets as a JSON line, drops its connection after DROP_AFTER events and reconnects with
// the last eventId it saw (auth is a function: socket.io reads it again on every connect),
// and leaves at the loop's end.  Usage: node socketio_client.js URL TASK TOKEN DROP_AFTER
const { io } = require("socket.io-client");
const [url, taskId, token, dropAfter] = process.argv.slice(2);
let lastEventId = null;
let seen = 0;
const socket = io(`${url}/cfn-loop`, {
  auth: (cb) => cb({ taskId, token, lastEventId }),
  transports: ["websocket"],
  reconnection: false,
});
const say = (event, data) => console.log(JSON.stringify({ event, data }));
socket.on("connect", () => say("connect", {}));
socket.on("connect_error", (err) => { say("connect_error", { message: err.message }); process.exit(3); });
for (const name of ["agent:update", "loop:progress"]) {
  socket.on(name, (data) => {
    say(name, data);
    lastEventId = data.eventId;
    seen += 1;
    if (data.type === "loop_end") { socket.disconnect(); process.exit(0); }
    if (seen === Number(dropAfter)) {
      socket.disconnect();
      setTimeout(() => { say("reconnect", { lastEventId }); socket.connect(); }, 300);
    }
  });
}
setTimeout(() => { say("timeout", {}); process.exit(4); }, 120000);
