/* The sandbox's WeChat JS-SDK (`wx`) and its wx-open-subscribe open tag, loaded instead of
   jweixin-1.6.0.js where the sandbox plays WeChat, and installed only when no real `wx` is
   here. wx.config sends the config to the stand-in (/sandbox/wechat/jssdk/config), which checks
   the signature over this page's address with the jsapi_tickets it handed out as WeChat does;
   then each open tag's button (its <script type="text/wxtag-template">) is drawn in the tag's
   shadow root, and a tap grants the tag's templates to the signed-in resident's openid at the
   stand-in (/sandbox/wechat/jssdk/subscribe: one more notice each, as "allow" does in WeChat)
   and fires the tag's "success" event with WeChat's detail, or "error". */
(function () {
  "use strict";
  if (typeof window.wx !== "undefined") return; // the real JS-SDK is here
  var BASE = "/sandbox/wechat/jssdk";
  var readyFns = [], errorFns = [], config = null, state = "new";

  function page() { return window.location.href.split("#")[0]; }

  function post(path, body) {
    return fetch(BASE + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (reply) {
      return reply.json().then(function (data) { data.httpStatus = reply.status; return data; });
    });
  }

  function fire(el, name, detail) {
    el.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function draw(el) {
    if (el.shadowRoot) return;
    var source = null;
    el.querySelectorAll('script[type="text/wxtag-template"]').forEach(function (s) {
      if (!s.hasAttribute("slot")) source = s;
    });
    if (!source) return;
    var holder = document.createElement("template");
    holder.innerHTML = source.textContent;
    var root = el.attachShadow({ mode: "open" });
    root.appendChild(holder.content.cloneNode(true));
    root.addEventListener("click", function () {
      var templates = (el.getAttribute("template") || "").split(",").filter(Boolean);
      post("/subscribe", { config: config, url: page(), templates: templates })
        .then(function (reply) {
          if (reply.errMsg === "subscribe:ok") fire(el, "success", reply);
          else fire(el, "error", { errCode: reply.errCode || -1, errMsg: reply.errMsg });
        })
        .catch(function () { fire(el, "error", { errCode: -1, errMsg: "subscribe:fail" }); });
    });
  }

  window.wx = {
    config: function (c) {
      config = c || {};
      post("/config", { config: config, url: page() }).then(function (reply) {
        if (reply.errMsg !== "config:ok") throw reply;
        state = "ready";
        (config.openTagList || []).forEach(function (name) {
          document.querySelectorAll(name).forEach(draw);
        });
        readyFns.forEach(function (fn) { fn(); });
      }).catch(function (reply) {
        state = "error";
        var res = { errMsg: (reply && reply.errMsg) || "config:fail" };
        errorFns.forEach(function (fn) { fn(res); });
      });
    },
    ready: function (fn) { if (state === "ready") fn(); else readyFns.push(fn); },
    error: function (fn) { errorFns.push(fn); }
  };
})();
