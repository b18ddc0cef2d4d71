// htmx only on a page that uses it (an hx- attribute: the account page while a payment or a
// restore is awaited); the other resident pages run no script at all. htmx is added after the
// page's load event: htmx 2 starts itself at once when the document is complete, but would wait
// for a DOMContentLoaded already past if it came in between.
(function () {
  var me = document.currentScript;
  function usesHtmx() {
    var all = document.getElementsByTagName("*");
    for (var i = 0; i < all.length; i++) {
      for (var j = 0; j < all[i].attributes.length; j++) {
        if (/^(data-)?hx-/.test(all[i].attributes[j].name)) { return true; }
      }
    }
    return false;
  }
  function addHtmx() {
    var script = document.createElement("script");
    script.src = me.getAttribute("data-htmx");
    document.head.appendChild(script);
  }
  if (!me || !usesHtmx()) { return; }
  if (document.readyState === "complete") { addHtmx(); } else { window.addEventListener("load", addHtmx); }
})();
