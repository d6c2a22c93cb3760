/* fusion-jobs schedule form: the next fires of the expression and zone being typed (no dependencies). */
(function () {
  "use strict";
  function setup() {
    var expression = document.getElementById("id_expression");
    var zone = document.getElementById("id_timezone");
    var target = document.querySelector(".fj-cron-preview");
    if (!expression || !zone || !target) return;
    var url = window.location.pathname.replace(/(add|\d+\/change)\/$/, "preview/");
    var timer = null, asked = 0;
    function refresh() {
      var mine = ++asked;
      var query = "?expression=" + encodeURIComponent(expression.value) + "&timezone=" + encodeURIComponent(zone.value);
      fetch(url + query, { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (mine !== asked) return;  // an older answer arriving late
          if (data.error) { target.textContent = data.error; target.className = "fj-cron-preview errornote"; return; }
          target.className = "fj-cron-preview";
          target.innerHTML = "<br>Next fires:" + data.html;  // built by the server with format_html (escaped)
        })
        .catch(function () { target.textContent = ""; });
    }
    function later() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
    expression.addEventListener("input", later);
    zone.addEventListener("input", later);
    if (expression.value) refresh();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
