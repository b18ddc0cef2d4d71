/* The JSAPI pay page inside WeChat: open WeChat's pay sheet with the parameters our server made
   (WeixinJSBridge.invoke('getBrandWCPayRequest', …)), then go back to the account page whatever
   the result. The page never credits anything: the account page shows the payment once WeChat
   Pay's signed notification has reached our server. */
(function () {
  "use strict";
  var box = document.getElementById("wechat-pay");
  var params = JSON.parse(document.getElementById("pay-params").textContent);
  var back = box.getAttribute("data-return-url");
  var busy = false;

  function pay() {
    if (busy || typeof window.WeixinJSBridge === "undefined") return;
    busy = true;
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
      box.setAttribute("data-result", (res && res.err_msg) || "");
      window.location.replace(back);
    });
  }

  document.getElementById("pay-open").addEventListener("click", pay);
  if (typeof window.WeixinJSBridge === "undefined") {
    document.addEventListener("WeixinJSBridgeReady", pay, false);
  } else {
    pay();
  }
})();
