// The bill's "打印 / 下载 PDF" button: the browser's print dialog (which saves a PDF too).
document.addEventListener("click", function (event) {
  if (event.target.closest && event.target.closest("[data-print]")) { window.print(); }
});
