// The admin page for API tokens: list, create (the secret is shown once) and revoke. Offered
// only to a token whose role may manage tokens; the API refuses the rest anyway.

import * as api from "./api.js";
import { t, formatTime } from "./i18n.js";
import { el, clear } from "./dom.js";

export class TokensPage {
  constructor(context) {
    this.context = context;
    document.getElementById("token-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const label = document.getElementById("token-label").value.trim();
      const body = { role: document.getElementById("token-role").value };
      if (label) body.label = label;
      try {
        const created = await api.post("/tokens", body);
        document.getElementById("token-secret").textContent = t("tokens.secret", { secret: created.token });
        document.getElementById("token-error").textContent = "";
        this.show();
      } catch (error) {
        document.getElementById("token-error").textContent = error.message;
      }
    });
  }

  async show() {
    const rows = document.getElementById("token-rows");
    try {
      const { tokens } = await api.get("/tokens");
      clear(rows);
      for (const token of tokens) {
        const revoke = el("button", { type: "button", class: "secondary small" }, t("tokens.revoke"));
        revoke.disabled = Boolean(token.revoked_at) || token.id === this.context.whoami.token_id;
        revoke.addEventListener("click", async () => {
          try {
            await api.del(`/tokens/${token.id}`);
            this.show();
          } catch (error) {
            document.getElementById("token-error").textContent = error.message;
          }
        });
        rows.append(el("tr", { class: token.revoked_at ? "revoked" : "" },
          el("td", { class: "mono" }, token.id.slice(0, 8)),
          el("td", {}, token.role),
          el("td", {}, token.label ?? ""),
          el("td", {}, formatTime(token.created_at)),
          el("td", {}, token.revoked_at ? t("tokens.revoked") : formatTime(token.last_used_at)),
          el("td", {}, revoke)));
      }
    } catch (error) {
      document.getElementById("token-error").textContent = error.message;
    }
  }
}
