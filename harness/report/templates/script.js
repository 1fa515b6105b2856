(function () {
  "use strict";
  var box = document.getElementById("filter"), failedOnly = document.getElementById("failed-only");
  var controls = document.getElementById("controls"), count = document.getElementById("shown");
  controls.hidden = false;
  var groups = Array.prototype.slice.call(document.querySelectorAll("[data-search]"));
  function apply() {
    var words = box.value.toLowerCase().split(/\s+/).filter(Boolean), onlyFailed = failedOnly.checked, shown = 0;
    groups.forEach(function (el) {
      var text = el.getAttribute("data-search"), failed = el.getAttribute("data-failed") === "1";
      var ok = (!onlyFailed || failed) && words.every(function (w) { return text.indexOf(w) >= 0; });
      el.hidden = !ok;
      if (ok && el.classList.contains("scenario")) { shown += 1; }
    });
    document.querySelectorAll(".passing").forEach(function (el) { el.hidden = onlyFailed; });
    count.textContent = shown + " scenario" + (shown === 1 ? "" : "s") + " shown";
  }
  box.addEventListener("input", apply);
  failedOnly.addEventListener("change", apply);
  apply();
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var text = b.parentNode.querySelector("pre").textContent;
      function done() { b.textContent = "copied"; }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () { select(b); });
      } else { select(b); }
    });
  });
  function select(b) {
    var range = document.createRange(); range.selectNodeContents(b.parentNode.querySelector("pre"));
    var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
  }
})();
