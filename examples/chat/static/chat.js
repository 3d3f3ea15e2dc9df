// The chat's client: one websocket to /ws; sends what is typed, shows what
// the server broadcasts.
(function () {
  "use strict";
  var status = document.getElementById("status");
  var online = document.getElementById("online");
  var messages = document.getElementById("messages");
  var form = document.getElementById("form");
  var text = document.getElementById("text");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(scheme + location.host + "/ws");
  window.chatSocket = ws;  // for the browser's console (and the tests)

  function setStatus(name) {
    status.textContent = name;
    status.className = name;
  }

  ws.onopen = function () { setStatus("open"); };
  ws.onclose = function () { setStatus("closed"); };
  ws.onmessage = function (event) {
    var data = JSON.parse(event.data);
    if (data.type === "message") {
      var li = document.createElement("li");
      li.textContent = data.text;
      messages.appendChild(li);
    } else if (data.type === "presence") {
      online.textContent = String(data.online);
    }
  };

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (text.value.trim() && ws.readyState === WebSocket.OPEN) {
      ws.send(text.value);
      text.value = "";
    }
    text.focus();
  });
})();
