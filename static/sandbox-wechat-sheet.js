/* Inside the sandbox's pay sheet (an iframe opened by sandbox-weixin-bridge.js): a button with
   data-result tells the page under it how the sheet closed. */
(function () {
  "use strict";
  var buttons = document.querySelectorAll("[data-sheet-result]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (event) {
      window.parent.postMessage({ type: "sandbox-wechat-pay",
                                  result: event.currentTarget.getAttribute("data-sheet-result") },
                                window.location.origin);
    });
  }
})();
