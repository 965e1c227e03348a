/* civicchat web chat widget: <script src="https://010.example.org/chat/ACCOUNT/widget.js" async></script> */
(function () {
  "use strict";
  var account = __ACCOUNT__;
  var script = document.currentScript;
  var origin = script ? new URL(script.src).origin : "";
  var lang = (document.documentElement.lang || navigator.language || "ca").slice(0, 2) === "es" ? "es" : "ca";
  var label = lang === "es" ? "Chat del 010" : "Xat del 010";
  var open = false;
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.setAttribute("aria-expanded", "false");
  button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483000;background:#b5121b;" +
    "color:#fff;border:0;border-radius:24px;padding:12px 18px;font:16px system-ui,sans-serif;" +
    "box-shadow:0 2px 8px rgba(0,0,0,.3);cursor:pointer";
  var frame = document.createElement("iframe");
  frame.title = label;
  // The chat is on the service's origin: the city's page must let it ask for the position.
  frame.allow = "geolocation";
  frame.src = origin + "/chat/" + encodeURIComponent(account) + "?lang=" + lang;
  frame.style.cssText = "position:fixed;right:20px;bottom:76px;z-index:2147483000;width:360px;" +
    "max-width:calc(100vw - 40px);height:520px;max-height:calc(100vh - 100px);border:0;" +
    "border-radius:10px;box-shadow:0 4px 16px rgba(0,0,0,.3);display:none;background:#fff";
  button.addEventListener("click", function () {
    open = !open;
    frame.style.display = open ? "block" : "none";
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
  function mount() { document.body.appendChild(frame); document.body.appendChild(button); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
}());
