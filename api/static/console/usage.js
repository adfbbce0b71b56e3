// Draws the usage page's charts from the JSON the page carries (#usage-data); Chart.js is vendored.
(function () {
  "use strict";
  const COLORS = ["#1f4e79", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d"];

  function bars(id, labels, datasets, stacked) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { stacked: stacked }, y: { stacked: stacked, beginAtZero: true } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }

  function draw() {
    const data = JSON.parse(document.getElementById("usage-data").textContent);
    const byDay = data.day;
    const days = byDay.total.map(function (row) { return row.group; });
    const perTenant = byDay.tenants.map(function (t, i) {
      const counts = Object.fromEntries(t.data.map(function (r) { return [r.group, r.requests]; }));
      return { label: t.tenant, data: days.map(function (d) { return counts[d] || 0; }),
               backgroundColor: COLORS[i % COLORS.length] };
    });
    bars("by-day", days, perTenant, true);
    ["model", "provider"].forEach(function (group) {
      const rows = data[group].total;
      bars("by-" + group, rows.map(function (r) { return r.group; }), [
        { label: "succeeded", data: rows.map(function (r) { return r.succeeded; }), backgroundColor: COLORS[2] },
        { label: "failed", data: rows.map(function (r) { return r.failed; }), backgroundColor: COLORS[4] },
        { label: "cache hits", data: rows.map(function (r) { return r.cache_hits; }), backgroundColor: COLORS[1] },
      ], false);
    });
    bars("tokens", days, [
      { label: "input tokens", data: byDay.total.map(function (r) { return r.input_tokens; }), backgroundColor: COLORS[0] },
      { label: "output tokens", data: byDay.total.map(function (r) { return r.output_tokens; }), backgroundColor: COLORS[1] },
    ], true);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
