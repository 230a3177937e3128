// Fill empty time-zone fields with the browser's zone, so days and hours are the viewer's.
(function () {
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  document.querySelectorAll("input.tz").forEach(function (el) { if (!el.value) el.value = zone; });
})();
