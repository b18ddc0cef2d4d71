/* The subscribe button (订阅通知) on the resident's pages: ask our server for wx.config's
   signature over this page's address, configure WeChat's JS-SDK with the wx-open-subscribe open
   tag, and say what came of the tap. WeChat (or, in the sandbox, static/sandbox-wx-jssdk.js)
   renders the tag's button and fires "success" (e.detail.subscribeDetails: JSON of template id
   -> JSON {"status": "accept" | "reject" | "ban" | "filter"}) or "error" on it. */
(function () {
  "use strict";
  var box = document.getElementById("subscribe");
  var tag = document.getElementById("subscribe-btn");
  var state = document.getElementById("subscribe-state");
  if (!box || !tag || !state) return;

  function say(what) {
    box.setAttribute("data-state", what);
    state.textContent = box.getAttribute("data-" + what) || "";
  }

  function parse(value) {
    if (typeof value !== "string") return value || {};
    try { return JSON.parse(value); } catch (e) { return {}; }
  }

  function accepted(detail) {
    var details = parse((detail || {}).subscribeDetails);
    return Object.keys(details).some(function (id) {
      return parse(details[id]).status === "accept";
    });
  }

  tag.addEventListener("success", function (e) {
    say(accepted(e.detail) ? "done" : "rejected");
  });
  tag.addEventListener("error", function () { say("failed"); });

  if (typeof window.wx === "undefined") { say("failed"); return; }
  var url = window.location.href.split("#")[0];
  fetch(box.getAttribute("data-config-url") + "?url=" + encodeURIComponent(url), {
    credentials: "same-origin", headers: { Accept: "application/json" }
  }).then(function (reply) {
    if (!reply.ok) throw new Error("config " + reply.status);
    return reply.json();
  }).then(function (c) {
    window.wx.error(function () { say("failed"); });
    window.wx.config({
      debug: false, appId: c.appId, timestamp: c.timestamp, nonceStr: c.nonceStr,
      signature: c.signature, jsApiList: [], openTagList: ["wx-open-subscribe"]
    });
  }).catch(function () { say("failed"); });
})();
