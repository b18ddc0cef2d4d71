/* The sandbox's WeixinJSBridge: included only when the sandbox plays WeChat Pay, and installed
   only when WeChat's real bridge is absent (a desktop or test browser). Like the real one it
   appears after the page has loaded and fires "WeixinJSBridgeReady" on document.
   getBrandWCPayRequest opens the sandbox's pay sheet (/sandbox/wechat/jsapi, which checks the
   paySign with the merchant public key as WeChat does) over the page, and calls back with
   {err_msg: "get_brand_wcpay_request:ok" | ":cancel" | ":fail"} when the sheet closes. */
(function () {
  "use strict";
  var SHEET = "/sandbox/wechat/jsapi";
  var PREFIX = "get_brand_wcpay_request:";

  function invoke(name, params, callback) {
    callback = callback || function () {};
    if (name !== "getBrandWCPayRequest") {
      callback({ err_msg: name + ":fail sandbox bridge plays getBrandWCPayRequest only" });
      return;
    }
    var frame = document.createElement("iframe");
    frame.id = "sandbox-wechat-sheet";
    frame.title = "微信支付（沙箱）";
    frame.src = SHEET + "?" + new URLSearchParams(params || {}).toString();
    frame.style.cssText = "position:fixed;top:0;left:0;width:100%;height:100%;border:0;" +
      "z-index:1000;background:#fff";

    function closed(event) {
      var data = event.data || {};
      if (event.source !== frame.contentWindow || event.origin !== window.location.origin ||
          data.type !== "sandbox-wechat-pay") return;
      window.removeEventListener("message", closed);
      frame.remove();
      var result = ["ok", "cancel", "fail"].indexOf(data.result) >= 0 ? data.result : "fail";
      callback({ err_msg: PREFIX + result });
    }

    window.addEventListener("message", closed);
    document.body.appendChild(frame);
  }

  function install() {
    if (typeof window.WeixinJSBridge !== "undefined") return; // the real bridge is here
    window.WeixinJSBridge = { invoke: invoke, on: function () {}, call: function () {} };
    document.dispatchEvent(new Event("WeixinJSBridgeReady"));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { setTimeout(install, 0); });
  } else {
    setTimeout(install, 0);
  }
})();
