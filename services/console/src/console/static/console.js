// Distretto console: charts from the page's data, live updates over server-sent events,
// confirmation of consequential actions. No build step: plain script, vendored libraries.
(function () {
  "use strict";
  var lang = document.body.dataset.lang || "it";
  var locale = lang === "it" ? "it-IT" : "en-GB";
  var palette = ["#1f5f8b", "#c2571a", "#2e7d4f", "#8a3ea6", "#a8326e", "#5b6b00", "#00707a", "#6b4f1d"];
  var charts = {};

  function json(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function format(value, how) {
    if (value === null || value === undefined) return "–";
    if (how === "money") {
      return new Intl.NumberFormat(locale, { style: "currency", currency: "EUR", notation: "compact", maximumFractionDigits: 1 }).format(value);
    }
    if (how === "area") return new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(value) + " m²";
    if (how === "datetime") return new Intl.DateTimeFormat(locale, { dateStyle: "short", timeStyle: "short" }).format(new Date(value));
    return new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(value);
  }

  function drawCharts(figures, labels) {
    if (!window.Chart || !figures) return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var key = canvas.dataset.key;
      var data = figures[key] || {};
      var names = Object.keys(data);
      var shown = names.map(function (n) { return (labels && labels[n]) || n; });
      var values = names.map(function (n) { return data[n]; });
      var chart = charts[key];
      if (chart) {
        chart.data.labels = shown;
        chart.data.datasets[0].data = values;
        chart.update();
        return;
      }
      charts[key] = new window.Chart(canvas, {
        type: canvas.dataset.chart,
        data: { labels: shown, datasets: [{ label: canvas.getAttribute("aria-label") || key, data: values, backgroundColor: palette }] },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          plugins: { legend: { display: canvas.dataset.chart === "doughnut", position: "bottom" } },
          locale: locale
        }
      });
    });
  }

  function updateFigures(figures, labels) {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var key = el.dataset.figure;
      if (key in figures) el.textContent = format(figures[key], el.dataset.format);
    });
    document.querySelectorAll("table[data-table]").forEach(function (table) {
      var data = figures[table.dataset.table] || {};
      var body = table.tBodies[0];
      body.textContent = "";
      Object.keys(data).forEach(function (name) {
        var row = body.insertRow();
        row.insertCell().textContent = (labels && labels[name]) || name;
        var cell = row.insertCell();
        cell.className = "num";
        cell.textContent = format(data[name], "number");
      });
    });
    drawCharts(figures, labels);
  }

  function addActivity(item) {
    var feed = document.querySelector("[data-feed]");
    if (!feed) return;
    var empty = feed.querySelector("[data-empty]");
    if (empty) empty.remove();
    var li = document.createElement("li");
    var time = document.createElement("time");
    time.textContent = item.at;
    li.appendChild(time);
    li.appendChild(document.createTextNode(" " + item.text));
    li.className = "fresh";
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > 30) feed.removeChild(feed.lastChild);
  }

  function live() {
    var holder = document.querySelector("[data-live]");
    if (!holder || !window.EventSource) return;
    var labels = json("figure-labels") || {};
    var source = new EventSource(holder.dataset.live);
    source.addEventListener("figures", function (event) {
      var figures = JSON.parse(event.data);
      updateFigures(figures, labels);
      document.body.dataset.figuresUpdated = String(Date.now());
    });
    source.addEventListener("activity", function (event) { addActivity(JSON.parse(event.data)); });
  }

  function confirmations() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form && form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(json("figures-data"), json("figure-labels"));
    document.querySelectorAll("canvas[data-series]").forEach(function (canvas) {
      var series = JSON.parse(canvas.dataset.series);
      if (!window.Chart) return;
      new window.Chart(canvas, {
        type: canvas.dataset.type || "bar",
        data: series,
        options: { responsive: true, maintainAspectRatio: false, animation: false, locale: locale }
      });
    });
    live();
    confirmations();
  });
})();
