// PanDA mesh monitor: live states over server-sent events, and confirmations for actions.
// A stream is closed while its tab is hidden and resumed, from the last event it saw, when the
// tab is shown again, so a tab left open in the background costs the server nothing.
"use strict";

function stateName(state) {
  return (state || "").replace(/^STATE_/, "").toLowerCase();
}

function setBadge(badge, state) {
  if (!badge) return;
  const name = stateName(state);
  badge.textContent = name;
  badge.className = "state state-" + name;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function timeText(value) {
  return value ? value.slice(0, 19).replace("T", " ") : "";
}

// One resumable stream: `path` and its query; `onEvent` gets each event's JSON. `cursor`: the
// last event the page was rendered with (a job's or a task's history), to follow from there;
// without one the stream starts at the newest event, and a tab shown again after it saw none
// reloads (what it missed while hidden is only on the server).
function liveStream(path, params, onEvent, cursor) {
  let source = null;
  let lastCursor = cursor || null;
  let opened = false;
  function open() {
    if (opened && lastCursor === null) {
      window.location.reload();
      return;
    }
    opened = true;
    const query = new URLSearchParams(params);
    if (lastCursor !== null) {
      query.set("after_cursor", lastCursor);
    } else {
      query.set("from_now", "true");
    }
    source = new EventSource(path + "?" + query.toString());
    document.body.dataset.live = "on";
    source.onmessage = function (message) {
      if (message.lastEventId) lastCursor = message.lastEventId;
      onEvent(JSON.parse(message.data));
    };
    source.addEventListener("error", function () {
      // EventSource reconnects by itself (with Last-Event-ID); nothing to do but let it.
    });
  }
  function close() {
    if (source) source.close();
    source = null;
    document.body.dataset.live = "paused";
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) close(); else if (!source) open();
  });
  if (document.hidden) close(); else open();
}

function jobIds(text) {
  return (text || "").split(",").filter(function (id) { return id.length > 0; });
}

function watchJobList(table) {
  const ids = jobIds(table.dataset.liveJobs);
  if (ids.length === 0) return;
  const params = ids.map(function (id) { return ["job_ids", id]; });
  liveStream("/v1/jobs:watch", params, function (document_) {
    const event = document_.event;
    const row = table.querySelector('tr[data-job="' + event.jobId + '"]');
    if (row) setBadge(row.querySelector("[data-state]"), event.state);
  });
}

function watchJob(holder) {
  const id = holder.dataset.liveJob;
  liveStream("/v1/jobs:watch", [["job_ids", id]], function (document_) {
    const event = document_.event;
    setBadge(holder.querySelector("[data-state]"), event.state);
    const history = document.querySelector('[data-history-job="' + id + '"] tbody');
    if (history) {
      const row = document.createElement("tr");
      row.append(cell(timeText(event.time)), cell(event.attempt), cell(stateName(event.previousState)),
                 cell(stateName(event.state)), cell(event.errorCode ? String(event.errorCode) : ""), cell(event.reason));
      history.append(row);
    }
  }, holder.dataset.cursor);
}

function watchTask(holder) {
  const id = holder.dataset.liveTask;
  liveStream("/v1/tasks:watch", [["task_id", id]], function (document_) {
    const event = document_.event;
    setBadge(holder.querySelector("[data-state]"), event.state);
    const history = document.querySelector('[data-history-task="' + id + '"] tbody');
    if (history) {
      const row = document.createElement("tr");
      row.append(cell(timeText(event.time)), cell(stateName(event.previousState)), cell(stateName(event.state)),
                 cell(event.reason));
      history.append(row);
    }
  }, holder.dataset.cursor);
}

function watchTaskList(table) {
  const ids = jobIds(table.dataset.liveTasks);
  if (ids.length === 0) return;
  const wanted = new Set(ids);
  // WatchTasks follows one task or all of them: all, keeping what this page shows.
  liveStream("/v1/tasks:watch", [], function (document_) {
    const event = document_.event;
    if (!wanted.has(String(event.taskId))) return;
    const row = table.querySelector('tr[data-task="' + event.taskId + '"]');
    if (row) setBadge(row.querySelector("[data-state]"), event.state);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live-jobs]").forEach(watchJobList);
  document.querySelectorAll("[data-live-tasks]").forEach(watchTaskList);
  document.querySelectorAll("[data-live-job]").forEach(watchJob);
  document.querySelectorAll("[data-live-task]").forEach(watchTask);
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
