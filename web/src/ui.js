// What every page shares: the node and what the key may do, money in the page's language,
// the outcome boxes, and the panel that shows what will be signed before it is signed.

import { AmountError, formatAmount } from "./amount.js";
import { describeError, Node } from "./client.js";
import { h } from "./dom.js";
import { formatTime, lang, t } from "./i18n.js";
import { toHex } from "./keys.js";

export const node = new Node(location.origin);
export const app = { key: null, accounts: [], administrator: false, auditor: false, account: null };

// ---------------------------------------------------------------------------------
// Formatting

export function money(minor) {
  return `${formatAmount(BigInt(minor), node.info.exponent, lang())} ${node.info.currency}`;
}

/** A ratio as a percentage in the page's language: 0.8 → "80%" (en), "80 %" (fr). */
export function percent(ratio, digits = 1) {
  return new Intl.NumberFormat(lang() === "fr" ? "fr-FR" : "en-GB", { style: "percent", maximumFractionDigits: digits }).format(ratio);
}

export function amountMessage(e) {
  return e instanceof AmountError ? t(`amount.${e.kind}`, e.params) : String(e);
}

/** The outcome box of a failed call: the ledger's own message, or a lost connection. */
export function errorBox(err, retry) {
  const d = describeError(err);
  const lines =
    d.kind === "rejected"
      ? [h("strong", {}, t("error.rejected", { reason: d.reason })), " ", d.message]
      : d.kind === "network"
        ? [h("strong", {}, t("error.network"))]
        : [h("strong", {}, t("error.other")), " ", d.message];
  return h(
    "div",
    { class: "error", role: "alert", testid: "error" },
    h("p", {}, ...lines),
    d.kind === "network" && retry ? h("button", { type: "button", onclick: retry, testid: "retry" }, t("pay.retry")) : null,
  );
}

export function messageBox(text) {
  return h("div", { class: "error", role: "alert", testid: "error" }, h("p", {}, text));
}

// ---------------------------------------------------------------------------------
// Pieces of pages

export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

/**
 * A confirmation panel for a signed operation, then its outcome in `outcome`. `onRefused`,
 * if given, turns the ledger's refusal (`describeError`'s) into what to offer under it
 * (or null).
 */
export function confirmPanel({ title, lines, prepared, testid, onDone, onCancel, onRefused }) {
  const outcome = h("div", { "aria-live": "polite" });
  const send = async () => {
    confirmButton.disabled = true;
    try {
      const receipt = await node.signAndSubmit(prepared);
      panel.replaceWith(await onDone(receipt));
    } catch (e) {
      // On a lost connection the same envelope (same operation id) is offered again.
      const d = describeError(e);
      const offer = d.kind === "rejected" && onRefused ? onRefused(d) : null;
      outcome.replaceChildren(...[errorBox(e, () => send()), offer].filter(Boolean));
      confirmButton.disabled = false;
    }
  };
  const confirmButton = h("button", { type: "button", testid, onclick: send }, title.button);
  const panel = h(
    "section",
    { class: "panel", "aria-labelledby": "confirm-title", testid: "confirmation" },
    h("h2", { id: "confirm-title", tabindex: "-1" }, title.heading),
    h("dl", {}, lines.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)])),
    h("div", { class: "actions" }, confirmButton, h("button", { type: "button", class: "secondary", onclick: onCancel }, t("pay.cancel"))),
    outcome,
  );
  return panel;
}

/** A receipt: `text` says what was done (a payment's by default), under `title`. */
export function receiptBox(receipt, text, title = t("receipt.title")) {
  const mine = receipt.balancesAfter.find((b) => b.account === app.account);
  // A payer key's payment above its caps is held: nothing moved yet.
  if (receipt.pendingId !== undefined && text === undefined) {
    return h(
      "div",
      { class: "ok", role: "status", testid: "receipt" },
      h("h2", {}, t("receipt.heldTitle")),
      h("p", {}, t("receipt.held", { id: String(receipt.pendingId), sequence: receipt.sequence, time: formatTime(receipt.timestampMs) })),
      h("p", { class: "hint" }, `${t("receipt.hash")}: `, h("span", { class: "mono" }, toHex(receipt.entryHash))),
    );
  }
  return h(
    "div",
    { class: "ok", role: "status", testid: "receipt" },
    h("h2", {}, title),
    h("p", {}, text ?? t("receipt.text", { sequence: receipt.sequence, time: formatTime(receipt.timestampMs), balance: mine ? money(mine.balanceMinor) : "" })),
    receipt.duplicate ? h("p", {}, t("receipt.duplicate")) : null,
    h("p", { class: "hint" }, `${t("receipt.hash")}: `, h("span", { class: "mono" }, toHex(receipt.entryHash))),
  );
}
