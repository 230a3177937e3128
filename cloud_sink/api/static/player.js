// The contact's clip: a waveform drawn from the audio itself, the events as markers placed at
// their offsets into the clip, a click on a marker (or an event) seeks there.
(function () {
  var audio = document.getElementById("audio");
  var timeline = document.getElementById("timeline");
  if (!audio || !timeline) return;
  var markers = Array.prototype.slice.call(timeline.querySelectorAll(".marker"));

  function place(duration) {
    if (!(duration > 0) || !isFinite(duration)) return;
    timeline.dataset.duration = String(duration);
    markers.forEach(function (m) {
      var at = parseFloat(m.dataset.offset);
      var share = Math.min(Math.max(at / duration, 0), 1);
      m.style.left = (share * 100).toFixed(4) + "%";
      m.dataset.share = share.toFixed(6);
    });
  }
  function seek(at) { audio.currentTime = at; audio.play().catch(function () {}); }
  markers.forEach(function (m) {
    m.addEventListener("click", function () { seek(parseFloat(m.dataset.offset)); });
  });
  document.querySelectorAll("button.seek").forEach(function (b) {
    b.addEventListener("click", function () { seek(parseFloat(b.dataset.offset)); });
  });
  var stated = parseFloat(document.getElementById("player").dataset.duration);
  place(stated);
  audio.addEventListener("loadedmetadata", function () { place(audio.duration); });
  if (audio.readyState >= 1) place(audio.duration);

  var canvas = document.getElementById("wave");
  var Ctx = window.AudioContext || window.webkitAudioContext;
  if (!canvas || !Ctx) return;
  fetch(audio.currentSrc || audio.src, { credentials: "same-origin" })
    .then(function (r) { return r.arrayBuffer(); })
    .then(function (bytes) { return new Ctx().decodeAudioData(bytes); })
    .then(function (buffer) {
      var data = buffer.getChannelData(0);
      var g = canvas.getContext("2d");
      var w = canvas.width, h = canvas.height, step = Math.max(1, Math.floor(data.length / w));
      g.fillStyle = "#5c7fb8";
      for (var x = 0; x < w; x++) {
        var lo = 0, hi = 0;
        for (var i = x * step; i < Math.min((x + 1) * step, data.length); i++) {
          if (data[i] < lo) lo = data[i];
          if (data[i] > hi) hi = data[i];
        }
        g.fillRect(x, (1 - hi) * h / 2, 1, Math.max(1, (hi - lo) * h / 2));
      }
      canvas.dataset.drawn = "1";
    })
    .catch(function () { canvas.dataset.drawn = "0"; });
})();
