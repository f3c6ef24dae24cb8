// A job's page, live: the job's Server-Sent Events move the progress bar, draw the loss curve and
// list the events; a checkpoint event refreshes the table and the quality plot. Where no event
// stream arrives (a proxy strips it), the page polls its state every 2 s instead.
(function () {
  const state = JSON.parse(document.getElementById("job-state").textContent);
  const jobId = state.job.id;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const LABELS = { queued: "queued", started: "started", step: "step", checkpoint: "checkpoint",
                   finished: "finished", error: "failed", cancelled: "cancelled" };

  // ---------------------------------------------------------------- plots
  function width(el) { return Math.max(280, el.clientWidth || 600); }
  const lossEl = document.getElementById("loss-plot");
  // with an event stream the page replays the job's events from the first, so the curve starts empty
  const steps = window.EventSource ? [] : state.steps.filter((s) => s.loss !== null);
  const loss = new uPlot({
    width: width(lossEl), height: 240,
    scales: { x: { time: false } },
    axes: [{ label: "step" }, { label: "loss" }],
    series: [{ label: "step" }, { label: "loss", stroke: "#2563eb", width: 2, points: { show: true, size: 5 } }],
  }, [steps.map((s) => s.step), steps.map((s) => s.loss)], lossEl);

  const qualityEl = document.getElementById("quality-plot");
  let quality = null;
  function qualityData(st) {
    const metric = st.metric;
    const rows = st.checkpoints.filter((c) => metric && metric in c.metrics);
    const dense = metric && st.dense.metrics && metric in st.dense.metrics ? st.dense.metrics[metric] : null;
    const xs = [0].concat(rows.map((c) => c.sparsity));
    const pruned = [dense].concat(rows.map((c) => c.metrics[metric]));
    const hasUnrec = rows.some((c) => metric in (c.unreconstructed_metrics || {}));
    const unrec = [dense].concat(rows.map((c) => (c.unreconstructed_metrics || {})[metric] ?? null));
    const densePoint = [dense].concat(rows.map(() => null));
    const data = [xs, pruned, densePoint];
    const series = [
      { label: "sparsity" },
      { label: hasUnrec ? "reconstructed" : "checkpoints", stroke: "#2563eb", width: 2, points: { show: true, size: 7 } },
      { label: "dense", stroke: "#111827", width: 0, points: { show: true, size: 11, fill: "#111827" } },
    ];
    if (hasUnrec) {
      data.push(unrec);
      series.push({ label: "not reconstructed", stroke: "#d97706", width: 2, dash: [6, 4],
                    points: { show: true, size: 7, fill: "#fff" } });
    }
    return { data, series, metric };
  }
  function drawQuality(st) {
    const q = qualityData(st);
    document.getElementById("metric-name").textContent = q.metric || "metric";
    if (quality) quality.destroy();
    quality = new uPlot({
      width: width(qualityEl), height: 280,
      scales: { x: { time: false } },
      axes: [{ label: "achieved sparsity" }, { label: q.metric || "metric" }],
      series: q.series,
    }, q.data, qualityEl);
  }
  drawQuality(state);

  // ---------------------------------------------------------------- progress and events
  const bar = document.getElementById("job-progress");
  const text = document.getElementById("progress-text");
  const statusEl = document.getElementById("job-status");
  const list = document.getElementById("events");
  function setStatus(status) {
    statusEl.textContent = status;
    statusEl.className = "status status-" + status + " big";
    if (FINISHED.includes(status)) {
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    }
  }
  function showProgress(p) {
    bar.max = p.total_steps; bar.value = p.step;
    let line = "step " + p.step + " of " + p.total_steps;
    if (p.sparsity !== undefined && p.sparsity !== null) line += " · sparsity " + Number(p.sparsity).toFixed(3);
    if (p.loss !== undefined && p.loss !== null) line += " · loss " + Number(p.loss).toFixed(3);
    text.textContent = line;
  }
  function summary(e) {
    const d = e.data || {};
    if (e.type === "step") return "step " + d.step + "/" + d.total_steps + ", sparsity " + Number(d.sparsity).toFixed(3);
    if (e.type === "checkpoint") return "target " + d.target_sparsity + " reached (" + d.checkpoint_id + ")";
    if (e.type === "error") return d.code + ": " + d.message;
    if (e.type === "finished") return d.checkpoint_count + " checkpoints in " + Number(d.seconds).toFixed(1) + " s";
    if (e.type === "started") return "on " + d.worker_id + (d.resumed_from_step ? ", resumed at step " + d.resumed_from_step : "");
    return "";
  }
  function addEvent(e) {
    const item = document.createElement("li");
    item.className = "event event-" + e.type;
    const time = new Date(e.created_at).toLocaleTimeString();
    item.innerHTML = '<span class="seq">#' + e.seq + '</span> <strong></strong> <span class="muted"></span> <time></time>';
    item.querySelector("strong").textContent = LABELS[e.type] || e.type;
    item.querySelector(".muted").textContent = summary(e);
    item.querySelector("time").textContent = time;
    list.prepend(item);
    while (list.children.length > 40) list.lastChild.remove();
  }
  showProgress(state.job.progress);
  let lastSeq = 0;

  function onEvent(e) {
    if (e.seq <= lastSeq) return;
    lastSeq = e.seq;
    addEvent(e);
    if (e.type === "step") {
      setStatus("running");
      showProgress(e.data);
      if (e.data.loss !== null) {
        const [xs, ys] = [loss.data[0].slice(), loss.data[1].slice()];
        xs.push(e.data.step); ys.push(e.data.loss);
        loss.setData([xs, ys]);
      }
    } else if (e.type === "checkpoint" || FINISHED.includes(e.type) || e.type === "finished" || e.type === "error") {
      refresh();
    } else if (e.type === "started") {
      setStatus("running");
    }
  }
  function refresh() {
    fetch("/ui/jobs/" + jobId + "/state", { credentials: "same-origin" })
      .then((r) => r.json())
      .then((st) => {
        setStatus(st.job.status);
        showProgress(st.job.progress);
        drawQuality(st);
        document.body.dispatchEvent(new Event("checkpoints-changed"));
        refreshLayers(st);
      });
  }
  function refreshLayers(st) {
    const select = document.getElementById("layer-checkpoint");
    const known = Array.from(select.options).map((o) => o.value);
    const fresh = st.checkpoints.filter((c) => !known.includes(c.id));
    fresh.forEach((c) => select.add(new Option("target " + c.target_sparsity, c.id)));
    if (fresh.length) {
      select.value = fresh[fresh.length - 1].id;
      htmx.ajax("GET", "/ui/checkpoints/" + select.value + "/layers", "#layers");
    }
  }

  // ---------------------------------------------------------------- live: SSE, else polling
  function poll() {
    fetch("/ui/jobs/" + jobId + "/state", { credentials: "same-origin" })
      .then((r) => r.json())
      .then((st) => {
        const fresh = st.steps.filter((s) => s.loss !== null);
        loss.setData([fresh.map((s) => s.step), fresh.map((s) => s.loss)]);
        setStatus(st.job.status); showProgress(st.job.progress); drawQuality(st);
        document.body.dispatchEvent(new Event("checkpoints-changed"));
        refreshLayers(st);
        if (!FINISHED.includes(st.job.status)) setTimeout(poll, 2000);
      });
  }
  if (!window.EventSource) { poll(); return; }
  const source = new EventSource("/ui/jobs/" + jobId + "/events");
  let failures = 0;
  const TYPES = Object.keys(LABELS);
  TYPES.forEach((type) => source.addEventListener(type, function (message) {
    failures = 0;
    onEvent(JSON.parse(message.data));
    if (FINISHED.includes(type) || type === "finished" || type === "error") source.close();
  }));
  source.addEventListener("error", function () {
    failures += 1;
    if (FINISHED.includes(statusEl.textContent)) { source.close(); return; }
    if (failures >= 3 || source.readyState === EventSource.CLOSED) {
      source.close();
      poll();
    }
  });
  window.addEventListener("resize", function () {
    loss.setSize({ width: width(lossEl), height: 240 });
    if (quality) quality.setSize({ width: width(qualityEl), height: 280 });
  });
})();
