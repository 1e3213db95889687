// Sign in: the token goes to the server once, which answers with an HttpOnly session cookie
// (the page never keeps the token) and a CSRF token for the requests that change something.

const form = document.getElementById("login");
const message = document.getElementById("message");
const back = () => decodeURIComponent(location.hash.slice(1)) || "#/";

async function signOut() {
  await fetch("/api/v1/console/session", { method: "DELETE", credentials: "same-origin" });
  message.textContent = "Signed out.";
  history.replaceState(null, "", "/console/login.html");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/api/v1/console/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (response.ok) {
    const target = back();
    location.assign("/" + (target.startsWith("#") && target !== "#logout" ? target : "#/"));
    return;
  }
  let text = "The token was not accepted.";
  try {
    text = (await response.json()).error.message;
  } catch {
    // keep the plain message
  }
  message.textContent = text;
});

if (location.hash === "#logout") {
  signOut();
}
