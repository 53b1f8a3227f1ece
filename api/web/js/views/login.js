// Log in with a scoped token: POST /api/v1/session sets the HttpOnly cookie; the token
// itself is never kept by the page (not in the URL, not in storage).

import * as api from "../api.js";
import { fill, h } from "../dom.js";
import { t } from "../i18n.js";
import { showError } from "../ui.js";

export async function renderLogin(main, _params, { onLogin, setCrumbs }) {
  setCrumbs([{ label: t("login") }]);
  const input = h("input#token", { type: "password", name: "token", autocomplete: "off", required: true, maxlength: 200, spellcheck: "false" });
  const button = h("button.primary", { type: "submit" }, t("login"));
  const form = h(
    "form.login.panel",
    {
      method: "post",
      onsubmit: async (ev) => {
        ev.preventDefault();
        button.disabled = true;
        try {
          const who = await api.post("/session", { token: input.value.trim() });
          input.value = "";
          await onLogin(who);
        } catch (err) {
          showError(err, t("login"));
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", {}, t("title")),
    h("p.muted", {}, t("login_hint")),
    h("label", { for: "token" }, t("token")),
    input,
    button,
  );
  fill(main, form);
  input.focus();
}
