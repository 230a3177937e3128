// Bars of contacts served per group, and lines of the support and dissatisfaction indices;
// groups whose period is not meaningful are hatched.
(function () {
  var node = document.getElementById("figures-data");
  var canvas = document.getElementById("chart");
  if (!node || !canvas) return;
  var doc = JSON.parse(node.textContent);
  var groups = doc.groups.length ? doc.groups : [doc.total];
  var g = canvas.getContext("2d");
  var w = canvas.width, h = canvas.height, pad = 30;
  var most = Math.max.apply(null, groups.map(function (r) { return r.metrics.contacts_served || 0; }).concat([1]));
  var slot = (w - 2 * pad) / groups.length;
  g.font = "11px sans-serif";
  groups.forEach(function (r, i) {
    var x = pad + i * slot, served = r.metrics.contacts_served || 0;
    var bh = (h - 2 * pad) * served / most;
    g.fillStyle = "#9db4dc";
    g.fillRect(x + slot * 0.15, h - pad - bh, slot * 0.7, bh);
    if (r.metrics.meaningful === false) {
      g.strokeStyle = "#c07a00";
      for (var k = -h; k < slot; k += 6) {
        g.beginPath(); g.moveTo(x + k, h - pad); g.lineTo(x + k + (h - 2 * pad), pad); g.stroke();
      }
    }
    g.fillStyle = "#333";
    g.fillText(String(r.key).slice(-10), x + 2, h - pad + 14);
  });
  function line(key, color) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    var started = false;
    groups.forEach(function (r, i) {
      var v = r.metrics[key];
      if (v === null || v === undefined) return;
      var x = pad + (i + 0.5) * slot, y = h - pad - (h - 2 * pad) * Math.max(0, Math.min(1, v));
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    });
    g.stroke(); g.lineWidth = 1;
  }
  line("support_index", "#1b7a1b");
  line("dissatisfaction_index", "#d00");
  g.fillStyle = "#1b7a1b"; g.fillText("support index", w - 220, 14);
  g.fillStyle = "#d00"; g.fillText("dissatisfaction index", w - 130, 14);
  g.fillStyle = "#5c7fb8"; g.fillText("contacts served (bars)", pad, 14);
})();
