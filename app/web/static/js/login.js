import {$, api, showError} from "./staff.js";
import {t, toggleLanguage, translate} from "./i18n.js";

translate();
$("lang").addEventListener("click", toggleLanguage);
$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").hidden = true;
  try {
    const result = await api("POST", "/auth/login", {
      json: {username: $("username").value, password: $("password").value},
    });
    sessionStorage.setItem("diemcau.token", result.access_token);
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/console";
  } catch (error) {
    showError($("error"), error.status === 401 ? new Error(t("login.failed")) : error);
  }
});
