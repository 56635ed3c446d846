// Drives @dcos/mesos-client (the DC/OS UI's operator client) against a mesos-nb master.
// Usage: node dcos_client.js <master url> <mode>
//   mode "gets":      every GET_* call; prints one JSON line {call: status|error}
//   mode "subscribe": SUBSCRIBE; prints one JSON line per event type as it arrives
// Node has no XMLHttpRequest; xhr2 provides one, but unlike a browser it fills `response` only
// when the request completes. A browser exposes the text received so far while LOADING, which
// is what the client's streaming reads; this subclass restores that browser behaviour.
const XHR2 = require("xhr2");
class BrowserXHR extends XHR2 {
  get response() {
    if (this.readyState === 3 && this._responseParts) return Buffer.concat(this._responseParts).toString("utf8");
    return this._done;
  }
  set response(value) { this._done = value; }
}
global.XMLHttpRequest = BrowserXHR;
const { request, stream } = require("@dcos/mesos-client");

const [, , base, mode] = process.argv;
const url = base.replace(/\/$/, "") + "/api/v1";
const GETS = ["GET_HEALTH", "GET_FLAGS", "GET_VERSION", "GET_METRICS", "GET_LOGGING_LEVEL", "GET_STATE",
  "GET_AGENTS", "GET_FRAMEWORKS", "GET_EXECUTORS", "GET_OPERATIONS", "GET_TASKS", "GET_ROLES", "GET_WEIGHTS",
  "GET_MASTER", "GET_MAINTENANCE_STATUS", "GET_MAINTENANCE_SCHEDULE", "GET_QUOTA"];

function one(type) {
  const body = { type };
  if (type === "GET_METRICS") body.get_metrics = {};
  return new Promise(resolve => {
    request(body, url).subscribe(
      text => {
        try {
          const parsed = JSON.parse(text);
          resolve(parsed.type === type && parsed[type.toLowerCase()] !== undefined ? "ok" : "bad: " + text.slice(0, 200));
        } catch (e) {
          resolve("unparsable: " + String(text).slice(0, 200));
        }
      },
      error => resolve("error: " + JSON.stringify(error && (error.code || error.message || error)))
    );
  });
}

async function gets() {
  const out = {};
  for (const t of GETS) out[t] = await one(t);
  console.log(JSON.stringify(out));
  process.exit(0);
}

function subscribe() {
  stream({ type: "SUBSCRIBE" }, url).subscribe(
    record => {
      const ev = JSON.parse(record);
      const line = { type: ev.type };
      if (ev.type === "TASK_ADDED") line.task = ev.task_added.task.task_id.value;
      if (ev.type === "TASK_UPDATED") {
        line.task = ev.task_updated.status.task_id.value;
        line.state = ev.task_updated.state;
      }
      console.log(JSON.stringify(line));
    },
    error => { console.log(JSON.stringify({ error: String(error && (error.code || error.message || error)) })); process.exit(1); },
    () => process.exit(0)
  );
}

if (mode === "gets") gets(); else subscribe();
