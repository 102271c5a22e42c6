// The association's pages: the accounts overview, registering a firm, a firm's limits
// and status, the clearing run and the indicators. An administrator imports the key file
// `cercle keygen` made, as a firm does; `ListKeyAccounts` says the key is an
// administrator's (or an auditor's: the read-only pages). Every act is shown as it will
// be signed before it is signed, as on the pay page, and what is signed is the wallet's
// operation (`cercle admin register`, `set-limits`, `freeze`, `unfreeze`, `clearing`).

import jsQR from "jsqr";
import { parseAmount } from "./amount.js";
import { field, h } from "./dom.js";
import { formatTime, lang, t } from "./i18n.js";
import { fromHex, toHex } from "./keys.js";
import { amountMessage, app, confirmPanel, errorBox, heading, messageBox, money, node, percent } from "./ui.js";

const ACCOUNTS_PAGE = 100;
const HANDLE = /^[a-z0-9-]{3,32}$/;

/** The accounts overview's filters, kept while the app is open. */
const filters = { status: 0, sign: 0, negativeDaysMin: 0, creditUsePercentMin: 0, sector: "", commune: "", order: 0, descending: false, offset: 0n };

const day = (ms) => (ms === undefined ? "—" : new Date(Number(ms)).toISOString().slice(0, 10));

/** A signed act's outcome: the entry it made, and a button that shows the page again. */
function doneBox(receipt, text) {
  return h(
    "div",
    { class: "ok", role: "status", testid: "receipt" },
    h("h2", {}, t("admin.done")),
    h("p", {}, text ?? t("admin.signed", { sequence: receipt.sequence, time: formatTime(receipt.timestampMs) })),
    receipt.duplicate ? h("p", {}, t("receipt.duplicate")) : null,
    h("p", { class: "hint" }, `${t("receipt.hash")}: `, h("span", { class: "mono" }, toHex(receipt.entryHash))),
    h("button", { type: "button", testid: "admin-reload", onclick: () => window.dispatchEvent(new HashChangeEvent("hashchange")) }, t("admin.reload")),
  );
}

/**
 * Shows in `below` what will be signed for `kind` (the operation's lines, and its id),
 * then signs and submits it on confirmation; `after` turns the receipt into what to show.
 */
async function offer(below, heading2, lines, kind, after) {
  const prepared = await node.prepare(kind);
  const panel = confirmPanel({
    title: { heading: heading2, button: t("admin.sign") },
    lines: [...lines, [t("pay.opId"), toHex(prepared.operationId)]],
    prepared,
    testid: "admin-confirm",
    onDone: (receipt) => (after ? after(receipt) : doneBox(receipt)),
    onCancel: () => below.replaceChildren(),
  });
  below.replaceChildren(panel);
  panel.querySelector("h2").focus();
}

/** An amount typed in `input`, in minor units; `undefined` when empty and `optional`. */
function amountOf(input, optional) {
  if (optional && input.value.trim() === "") return undefined;
  return parseAmount(input.value, node.info.exponent, lang());
}

function select(testid, options, value) {
  return h(
    "select",
    { testid },
    options.map(([v, label]) => h("option", { value: String(v), selected: String(v) === String(value) }, label)),
  );
}

/** A wide table that scrolls sideways on a narrow screen, reachable by keyboard. */
function scroller(label, table) {
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": label }, table);
}

function statusText(status) {
  if (status === 3) return t("status.closed.short");
  return status === 2 ? t("status.frozen.short") : t("status.active");
}

// ---------------------------------------------------------------------------------
// The accounts overview

export async function accountsPage() {
  const body = h("tbody");
  const count = h("p", { "aria-live": "polite", testid: "accounts-count" });
  const paging = h("div", { class: "actions" });
  const status = select("accounts-status", [[0, t("accounts.any")], [1, t("status.active")], [2, t("status.frozen.short")], [3, t("status.closed.short")]], filters.status);
  const sign = select("accounts-sign", [[0, t("accounts.any")], [1, t("accounts.negative")], [2, t("accounts.positive")]], filters.sign);
  const negativeDays = h("input", { type: "number", min: 0, testid: "accounts-negative-days", value: filters.negativeDaysMin || "" });
  const creditUse = h("input", { type: "number", min: 0, max: 100, testid: "accounts-credit-use", value: filters.creditUsePercentMin || "" });
  const sector = h("input", { type: "text", testid: "accounts-sector", autocomplete: "off", value: filters.sector });
  const commune = h("input", { type: "text", testid: "accounts-commune", autocomplete: "off", value: filters.commune });
  const order = select(
    "accounts-sort",
    [[0, t("accounts.byHandle")], [1, t("accounts.byBalance")], [2, t("accounts.byCreditUse")], [3, t("accounts.byNegativeSince")], [4, t("accounts.byLastActivity")]],
    filters.order,
  );
  const descending = h("input", { type: "checkbox", testid: "accounts-desc", checked: filters.descending });
  const below = h("div", { "aria-live": "polite" });

  const load = async () => {
    below.replaceChildren();
    let page;
    try {
      page = await node.api.listAccounts({ ...filters, pageSize: ACCOUNTS_PAGE });
    } catch (e) {
      below.replaceChildren(errorBox(e, load));
      return;
    }
    body.replaceChildren(
      ...page.accounts.map((a) => {
        const use = a.balanceMinor < 0n && a.creditLimitMinor > 0n ? Number((-a.balanceMinor * 10000n) / a.creditLimitMinor) / 10000 : null;
        return h(
          "tr",
          { testid: "accounts-row", "data-account": a.account },
          h("th", { scope: "row", class: "nowrap" }, app.administrator ? h("a", { href: `#/manage/${a.account}`, testid: "account-manage" }, a.account) : a.account),
          h("td", {}, a.displayName),
          h("td", { class: `num ${a.balanceMinor < 0n ? "negative" : ""}` }, money(a.balanceMinor)),
          h("td", { class: "num" }, money(a.creditLimitMinor)),
          h("td", { class: "num" }, use === null ? "—" : percent(use)),
          h("td", { testid: "account-status" }, statusText(a.status)),
          h("td", {}, [a.sector, a.commune].filter(Boolean).join(" · ") || "—"),
          h("td", { class: "nowrap" }, day(a.negativeSinceMs)),
          h("td", { class: "nowrap" }, day(a.lastActivityMs)),
        );
      }),
    );
    if (page.accounts.length === 0) body.append(h("tr", {}, h("td", { colspan: 9 }, t("accounts.none"))));
    count.textContent = t("accounts.count", {
      first: page.accounts.length ? filters.offset + 1n : 0,
      last: filters.offset + BigInt(page.accounts.length),
      matching: page.matching,
      time: formatTime(page.asOfMs),
    });
    const move = (offset) => () => {
      filters.offset = offset;
      load();
    };
    const buttons = [
      filters.offset > 0n ? h("button", { type: "button", class: "secondary", testid: "accounts-prev", onclick: move(filters.offset > BigInt(ACCOUNTS_PAGE) ? filters.offset - BigInt(ACCOUNTS_PAGE) : 0n) }, t("accounts.prev")) : null,
      page.nextOffset !== undefined ? h("button", { type: "button", class: "secondary", testid: "accounts-next", onclick: move(page.nextOffset) }, t("accounts.next")) : null,
    ];
    paging.replaceChildren(...buttons.filter(Boolean));
  };

  const form = h(
    "form",
    {
      class: "filters",
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        Object.assign(filters, {
          status: Number(status.value),
          sign: Number(sign.value),
          negativeDaysMin: Number(negativeDays.value) || 0,
          creditUsePercentMin: Number(creditUse.value) || 0,
          sector: sector.value.trim(),
          commune: commune.value.trim(),
          order: Number(order.value),
          descending: descending.checked,
          offset: 0n,
        });
        load();
      },
    },
    field("accounts-status", t("accounts.status"), status),
    field("accounts-sign", t("accounts.sign"), sign),
    field("accounts-negative-days", t("accounts.negativeDays"), negativeDays),
    field("accounts-credit-use", t("accounts.creditUse"), creditUse),
    field("accounts-sector", t("accounts.sector"), sector),
    field("accounts-commune", t("accounts.commune"), commune),
    field("accounts-sort", t("accounts.sort"), order),
    h("div", { class: "check" }, descending, h("label", { for: "accounts-desc" }, t("accounts.desc"))),
    h("button", { type: "submit", testid: "accounts-filter" }, t("accounts.filter")),
  );
  descending.id = "accounts-desc";
  await load();
  const columns = ["accounts.handle", "accounts.name", "balance", "creditLimit", "accounts.creditUseCol", "status", "accounts.where", "accounts.negativeSince", "accounts.lastActivity"];
  return [
    heading(t("accounts.title")),
    app.administrator ? h("p", {}, h("a", { href: "#/register", class: "button", testid: "accounts-register" }, t("register.title"))) : null,
    form,
    count,
    below,
    scroller(t("accounts.title"), h("table", { class: "compact" }, h("thead", {}, h("tr", {}, columns.map((k, i) => h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : "" }, t(k))))), body)),
    paging,
  ];
}

// ---------------------------------------------------------------------------------
// Registering a firm

/** Reads a QR code from a photo or screenshot of it (the key page shows one). */
async function scanQr(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const image = context.getImageData(0, 0, bitmap.width, bitmap.height);
  return jsQR(image.data, image.width, image.height)?.data ?? null;
}

export async function registerPage() {
  const handle = h("input", { type: "text", testid: "register-handle", autocomplete: "off", pattern: "[a-z0-9-]{3,32}" });
  const name = h("input", { type: "text", testid: "register-name", autocomplete: "off", maxlength: 100 });
  const pubkey = h("input", { type: "text", testid: "register-pubkey", autocomplete: "off", spellcheck: "false", class: "wide mono" });
  const below = h("div", { "aria-live": "polite" });
  const scan = h("input", {
    type: "file",
    accept: "image/*",
    testid: "register-scan",
    onchange: async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      const text = await scanQr(file).catch(() => null);
      if (text && /^[0-9a-fA-F]{64}$/.test(text.trim())) {
        pubkey.value = text.trim().toLowerCase();
        below.replaceChildren(h("p", { class: "ok", role: "status" }, t("register.scanned")));
      } else {
        below.replaceChildren(messageBox(t("register.noQr")));
      }
    },
  });
  const creditLimit = h("input", { type: "text", testid: "register-credit-limit", inputmode: "decimal", autocomplete: "off", value: "0" });
  const maxBalance = h("input", { type: "text", testid: "register-max-balance", inputmode: "decimal", autocomplete: "off" });
  const sector = h("input", { type: "text", testid: "register-sector", autocomplete: "off" });
  const commune = h("input", { type: "text", testid: "register-commune", autocomplete: "off" });
  const { currency } = node.info;
  const form = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        const account = handle.value.trim();
        const key = pubkey.value.trim().toLowerCase();
        if (!HANDLE.test(account)) return below.replaceChildren(messageBox(t("register.badHandle", { handle: account })));
        if (!/^[0-9a-f]{64}$/.test(key)) return below.replaceChildren(messageBox(t("register.badKey")));
        let limit;
        let max;
        try {
          limit = amountOf(creditLimit, false);
          max = amountOf(maxBalance, true);
        } catch (e) {
          return below.replaceChildren(messageBox(amountMessage(e)));
        }
        const displayName = name.value.trim() || account;
        const profile = {};
        if (sector.value.trim()) profile.sector = sector.value.trim();
        if (commune.value.trim()) profile.commune = commune.value.trim();
        const hasProfile = Object.keys(profile).length > 0;
        await offer(
          below,
          t("register.confirmTitle"),
          [
            [t("invoices.operation"), t("register.op")],
            [t("register.handle"), account],
            [t("register.name"), displayName],
            [t("register.pubkey"), key],
            [t("creditLimit"), money(limit)],
            [t("maxBalance"), max === undefined ? t("noMax") : money(max)],
            hasProfile ? [t("register.profile"), [profile.sector, profile.commune].filter(Boolean).join(" · ")] : null,
          ].filter(Boolean),
          {
            case: "registerAccount",
            value: { account, displayName, publicKeys: [fromHex(key)], creditLimitMinor: limit, maxBalanceMinor: max, profile: hasProfile ? profile : undefined },
          },
          (receipt) => {
            form.reset();
            const box = doneBox(receipt, t("register.done", { account, sequence: receipt.sequence }));
            box.insertBefore(h("p", {}, h("a", { href: `#/manage/${account}`, testid: "register-manage" }, t("register.manage", { account }))), box.lastChild);
            return box;
          },
        );
      },
    },
    field("register-handle", t("register.handle"), handle, t("register.handleHint")),
    field("register-name", t("register.name"), name, t("register.nameHint")),
    field("register-pubkey", t("register.pubkey"), pubkey, t("register.pubkeyHint")),
    field("register-scan", t("register.scan"), scan, t("register.scanHint")),
    field("register-credit-limit", t("register.creditLimit", { currency }), creditLimit, t("pay.amountHint")),
    field("register-max-balance", t("register.maxBalance", { currency }), maxBalance, t("register.maxBalanceHint")),
    field("register-sector", t("register.sector"), sector, t("register.sectorHint")),
    field("register-commune", t("register.commune"), commune, t("register.communeHint")),
    h("button", { type: "submit", testid: "register-submit" }, t("register.review")),
  );
  return [heading(t("register.title")), h("p", {}, t("register.intro")), form, below];
}

// ---------------------------------------------------------------------------------
// One firm: limits, freeze and unfreeze

export async function managePage(account) {
  if (!account) return [heading(t("manage.title", { account: "?" })), messageBox(t("manage.none"))];
  const a = (await node.api.getAccount({ account })).account;
  const { currency } = node.info;
  const frozen = a.status === 2;
  const closed = a.status === 3;
  const below = h("div", { "aria-live": "polite" });
  const creditLimit = h("input", { type: "text", testid: "manage-credit-limit", inputmode: "decimal", autocomplete: "off" });
  const maxBalance = h("input", { type: "text", testid: "manage-max-balance", inputmode: "decimal", autocomplete: "off" });
  const noMax = h("input", { type: "checkbox", testid: "manage-max-none", id: "manage-max-none" });
  const limitsReason = h("input", { type: "text", testid: "manage-limits-reason", maxlength: 280, class: "wide" });
  const statusReason = h("input", { type: "text", testid: "manage-status-reason", maxlength: 280, class: "wide" });

  const limits = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        let limit;
        let max;
        try {
          limit = amountOf(creditLimit, true);
          max = noMax.checked ? undefined : amountOf(maxBalance, true);
        } catch (e) {
          return below.replaceChildren(messageBox(amountMessage(e)));
        }
        const maxChange = noMax.checked ? {} : max === undefined ? undefined : { maxBalanceMinor: max };
        if (limit === undefined && maxChange === undefined) return below.replaceChildren(messageBox(t("manage.nothing")));
        if (limitsReason.value.trim() === "") return below.replaceChildren(messageBox(t("manage.reasonNeeded")));
        const was = (v) => t("manage.was", { before: v });
        await offer(
          below,
          t("manage.confirmTitle"),
          [
            [t("invoices.operation"), t("manage.limitsOp", { account })],
            [t("creditLimit"), limit === undefined ? t("manage.kept") : `${money(limit)} ${was(money(a.creditLimitMinor))}`],
            [t("maxBalance"), maxChange === undefined ? t("manage.kept") : `${noMax.checked ? t("noMax") : money(max)} ${was(a.maxBalanceMinor === undefined ? t("noMax") : money(a.maxBalanceMinor))}`],
            [t("admin.reason"), limitsReason.value.trim()],
          ],
          { case: "setLimits", value: { account, creditLimitMinor: limit, maxBalance: maxChange, reason: limitsReason.value.trim() } },
        );
      },
    },
    h("h2", {}, t("manage.limits")),
    field("manage-credit-limit", t("manage.creditLimit", { currency }), creditLimit, t("manage.keepHint", { now: money(a.creditLimitMinor) })),
    field("manage-max-balance", t("manage.maxBalance", { currency }), maxBalance, t("manage.keepHint", { now: a.maxBalanceMinor === undefined ? t("noMax") : money(a.maxBalanceMinor) })),
    h("div", { class: "check" }, noMax, h("label", { for: "manage-max-none" }, t("manage.noMax"))),
    field("manage-limits-reason", t("manage.reason"), limitsReason),
    h("button", { type: "submit", testid: "manage-limits-submit" }, t("manage.limitsReview")),
  );

  const statusForm = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        const reason = statusReason.value.trim();
        if (!frozen && reason === "") return below.replaceChildren(messageBox(t("manage.reasonNeeded")));
        await offer(
          below,
          t("manage.confirmTitle"),
          [
            [t("invoices.operation"), t(frozen ? "manage.unfreezeOp" : "manage.freezeOp", { account })],
            [t("admin.reason"), reason || "—"],
          ],
          { case: frozen ? "unfreezeAccount" : "freezeAccount", value: { account, reason } },
        );
      },
    },
    h("h2", {}, t(frozen ? "manage.unfreeze" : "manage.freeze")),
    h("p", {}, t(frozen ? "manage.unfreezeIntro" : "manage.freezeIntro")),
    field("manage-status-reason", t(frozen ? "manage.reasonOptional" : "manage.reason"), statusReason),
    h("button", { type: "submit", testid: frozen ? "manage-unfreeze" : "manage-freeze" }, t(frozen ? "manage.unfreezeReview" : "manage.freezeReview")),
  );

  return [
    heading(t("manage.title", { account })),
    a.displayName && a.displayName !== account ? h("p", {}, a.displayName) : null,
    h(
      "dl",
      { class: "figures" },
      h("div", {}, h("dt", {}, t("balance")), h("dd", { testid: "balance", class: a.balanceMinor < 0n ? "negative" : "" }, money(a.balanceMinor))),
      h("div", {}, h("dt", {}, t("creditLimit")), h("dd", { testid: "credit-limit" }, money(a.creditLimitMinor))),
      h("div", {}, h("dt", {}, t("maxBalance")), h("dd", { testid: "max-balance" }, a.maxBalanceMinor === undefined ? t("noMax") : money(a.maxBalanceMinor))),
      h("div", {}, h("dt", {}, t("status")), h("dd", { testid: "status", class: frozen || closed ? "negative" : "" }, statusText(a.status))),
    ),
    h("p", { class: "hint" }, t("manage.keys", { count: a.publicKeys.length, since: a.registeredAtSequence })),
    closed ? h("p", { testid: "manage-closed" }, t("manage.closedIntro")) : h("div", { class: "columns" }, limits, statusForm),
    below,
    h("p", {}, h("a", { href: "#/accounts" }, t("manage.back"))),
  ];
}

// ---------------------------------------------------------------------------------
// Clearing

function clearingSummary(s, testid) {
  const cleared = s.setoffMinor + s.creditMinor;
  const share = (part) => (s.totalDebtMinor === 0n ? "—" : percent(Number((part * 10000n) / s.totalDebtMinor) / 10000, 2));
  const rows = [
    [t("clearing.obligations"), t("clearing.among", { obligations: s.obligations, firms: s.firms })],
    [t("clearing.totalDebt"), money(s.totalDebtMinor)],
    [t("clearing.nid"), money(s.netInternalDebtMinor)],
    [t("clearing.setoff"), `${money(s.setoffMinor)} (${share(s.setoffMinor)})`],
    s.withCredit ? [t("clearing.credit"), `${money(s.creditMinor)} (${share(s.creditMinor)}), ${t("clearing.payments", { payments: money(s.paymentsMinor) })}`] : null,
    [t("clearing.remaining"), money(s.totalDebtMinor - cleared)],
    [t("clearing.nidAfter"), money(s.netInternalDebtAfterMinor)],
  ].filter(Boolean);
  return h(
    "div",
    { testid },
    h("dl", { class: "pairs" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    s.firmsChanged.length === 0
      ? h("p", {}, t("clearing.nothing"))
      : scroller(
          t("clearing.perFirm"),
          h(
            "table",
            {},
            h("caption", {}, t("clearing.perFirm")),
            h("thead", {}, h("tr", {}, ["clearing.firm", "clearing.owes", "clearing.owesCleared", "clearing.owed", "clearing.owedCleared", "clearing.payment"].map((k, i) => h("th", { scope: "col", class: i ? "num" : "" }, t(k))))),
            h(
              "tbody",
              {},
              s.firmsChanged.map((f) =>
                h("tr", { testid: "clearing-firm" }, h("th", { scope: "row" }, f.account), ...[f.owesMinor, f.owesClearedMinor, f.owedMinor, f.owedClearedMinor, f.paymentMinor].map((v) => h("td", { class: "num" }, money(v)))),
              ),
            ),
          ),
        ),
  );
}

export async function clearingPage() {
  const withCredit = h("input", { type: "checkbox", testid: "clearing-with-credit", id: "clearing-with-credit" });
  const plan = h("div", { "aria-live": "polite" });
  const below = h("div", { "aria-live": "polite" });
  const reason = h("input", { type: "text", testid: "clearing-reason", maxlength: 280, class: "wide" });
  const run = h("section", { hidden: true, "aria-labelledby": "clearing-run-title" });

  const dryRun = async () => {
    below.replaceChildren();
    run.hidden = true;
    let summary;
    try {
      summary = await node.api.planClearing({ withCredit: withCredit.checked });
    } catch (e) {
      plan.replaceChildren(errorBox(e, dryRun));
      return;
    }
    plan.replaceChildren(h("h2", {}, t("clearing.planTitle")), h("p", { class: "hint" }, t("clearing.planHint")), clearingSummary(summary, "clearing-plan"));
    // Nothing to clear: nothing to sign.
    if (!app.administrator || summary.firmsChanged.length === 0) return;
    run.hidden = false;
    run.querySelector("button").onclick = () =>
      offer(
        below,
        t("clearing.confirmTitle"),
        [
          [t("invoices.operation"), t(summary.withCredit ? "clearing.opCredit" : "clearing.opSetoff")],
          [t("admin.reason"), reason.value.trim() || "—"],
          [t("clearing.expected"), t("clearing.expectedText", { cleared: money(summary.setoffMinor + summary.creditMinor), total: money(summary.totalDebtMinor), firms: summary.firmsChanged.length })],
        ],
        { case: "runClearing", value: { withCredit: summary.withCredit, reason: reason.value.trim() } },
        (receipt) => {
          const box = doneBox(receipt, t("clearing.done", { sequence: receipt.sequence }));
          if (receipt.clearing) box.insertBefore(clearingSummary(receipt.clearing, "clearing-result"), box.lastChild);
          plan.replaceChildren();
          run.hidden = true;
          return box;
        },
      );
  };

  run.append(
    h("h2", { id: "clearing-run-title" }, t("clearing.runTitle")),
    h("p", {}, t("clearing.runIntro")),
    field("clearing-reason", t("clearing.reason"), reason),
    h("button", { type: "button", testid: "clearing-run" }, t("clearing.runReview")),
  );
  return [
    heading(t("clearing.title")),
    h("p", {}, t("clearing.intro")),
    h("div", { class: "check" }, withCredit, h("label", { for: "clearing-with-credit" }, t("clearing.withCredit"))),
    h("button", { type: "button", testid: "clearing-dry-run", onclick: dryRun }, t("clearing.dryRun")),
    plan,
    run,
    below,
  ];
}

// ---------------------------------------------------------------------------------
// Indicators

/** The measures the page shows, in order, with how each is written. */
const MEASURES = [
  ["transfers", "count"],
  ["turnover_minor", "amount"],
  ["cleared_minor", "amount"],
  ["active_firms", "firms"],
  ["active_share", "percent"],
  ["velocity", "number"],
  ["gini_turnover", "number"],
  ["credit_use", "percent"],
  ["stuck_debtors", "count"],
  ["reciprocity", "percent"],
  ["local_share", "percent"],
  ["nid_minor", "amount"],
  ["clearable_minor", "amount"],
];
const CHARTED = ["turnover_minor", "active_share", "velocity", "credit_use"];

/** A period's name: its month, its year, or its first and last days. */
function periodName(p) {
  if (p.from.slice(0, 7) === p.to.slice(0, 7)) return p.from.slice(0, 7);
  if (p.from.slice(5) === "01-01" && p.to.slice(5) === "12-31" && p.from.slice(0, 4) === p.to.slice(0, 4)) return p.from.slice(0, 4);
  return `${p.from} – ${p.to}`;
}

/** A cell as text; `cells` is its row, for a cell that reads another (active of all firms). */
function cellText(value, how, cells) {
  if (value === null || value === undefined) return t("ind.noData");
  if (value === "suppressed") return t("ind.suppressed");
  const locale = lang() === "fr" ? "fr-FR" : "en-GB";
  switch (how) {
    case "amount":
      return money(BigInt(value));
    case "count":
      return BigInt(value).toLocaleString(locale);
    case "firms":
      return t("ind.ofFirms", { active: cellText(value, "count"), firms: cellText(cells?.firms, "count") });
    case "percent":
      return percent(value);
    default:
      return value.toLocaleString(locale, { maximumFractionDigits: 2 });
  }
}

/** A number to draw: amounts in major units, ratios as they are; null when not shown. */
function plotted(value, measure) {
  if (value === null || value === undefined || value === "suppressed") return null;
  return measure.endsWith("_minor") ? Number(value) / 10 ** node.info.exponent : Number(value);
}

/** One small bar chart of `measure` by period, with a text alternative. */
function seriesChart(periods, measure) {
  const how = MEASURES.find(([m]) => m === measure)[1];
  const values = periods.map((p) => plotted(p[measure], measure));
  const [width, height, left, bottom, top] = [320, 170, 8, 34, 22];
  const max = Math.max(0, ...values.filter((v) => v !== null));
  const slot = (width - 2 * left) / Math.max(periods.length, 1);
  const title = t(`ind.${measure}`);
  const described = periods.map((p) => `${periodName(p)}: ${cellText(p[measure], how, p)}`).join("; ");
  const label = `${title}. ${described}.`;
  const short = (p) => (periods.length > 6 ? p.from.slice(5, 7) : periods.length > 2 ? periodName(p).slice(0, 7) : periodName(p));
  return h(
    "svg",
    { class: "mini", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, testid: "indicators-chart" },
    h("title", {}, label),
    h("text", { x: left, y: 15, class: "chart-title", "aria-hidden": "true" }, title),
    h("line", { x1: left, x2: width - left, y1: height - bottom, y2: height - bottom, stroke: "#4a4a4a" }),
    periods.map((p, i) => {
      const v = values[i];
      const barHeight = v === null || max === 0 ? 0 : ((height - bottom - top) * v) / max;
      const x = left + i * slot + slot * 0.15;
      return [
        v === null ? h("text", { x: x + slot * 0.35, y: height - bottom - 4, "text-anchor": "middle", "aria-hidden": "true" }, "×") : h("rect", { x, y: height - bottom - barHeight, width: slot * 0.7, height: barHeight, fill: "#0b4f6c" }),
        h("text", { x: x + slot * 0.35, y: height - bottom + 16, "text-anchor": "middle", "aria-hidden": "true" }, short(p)),
      ];
    }),
    h("text", { x: width - left, y: 15, "text-anchor": "end", "aria-hidden": "true" }, max === 0 ? "" : cellText(periods[values.indexOf(max)][measure], how, periods[values.indexOf(max)])),
  );
}

/**
 * The report as two tables of a row per period (and per group), so that each fits the
 * page: the circuit's activity, then credit and debt. Only the first carries the row
 * test ids.
 */
function indicatorsTables(report) {
  const rows = [];
  for (const p of report.periods) {
    rows.push([periodName(p), p, true]);
    for (const g of p.groups ?? []) rows.push([`  ${g.group ?? t("ind.unknownGroup")}`, g, false]);
  }
  const table = (title, testid, measures, first) =>
    scroller(
      t(title),
      h(
        "table",
        { testid, class: "compact" },
        h("caption", {}, t(title)),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("ind.period")), measures.map(([m]) => h("th", { scope: "col", class: "num" }, t(`ind.${m}`))))),
        h(
          "tbody",
          {},
          rows.map(([label, cells, total]) =>
            h(
              "tr",
              { testid: first ? (total ? "indicators-period" : "indicators-group") : undefined },
              h("th", { scope: "row", class: total ? "nowrap" : "group nowrap" }, label),
              measures.map(([m, how]) => h("td", { class: "num" }, cells[m] === null ? "—" : cellText(cells[m], how, cells))),
            ),
          ),
        ),
      ),
    );
  const split = MEASURES.findIndex(([m]) => m === "credit_use");
  return [
    table("ind.activity", "indicators-table", MEASURES.slice(0, split), true),
    table("ind.debt", "indicators-debt", MEASURES.slice(split), false),
  ];
}

export async function indicatorsPage() {
  const today = new Date().toISOString().slice(0, 10);
  const from = h("input", { type: "date", testid: "indicators-from", value: `${today.slice(0, 4)}-01-01` });
  const to = h("input", { type: "date", testid: "indicators-to", value: today });
  const by = select("indicators-by", ["month", "quarter", "year", "all"].map((v) => [v, t(`ind.by.${v}`)]), "month");
  const groupBy = select("indicators-group-by", ["", "sector", "division", "commune", "territory"].map((v) => [v, t(`ind.group.${v || "none"}`)]), "");
  const isPublic = h("input", { type: "checkbox", testid: "indicators-public", id: "indicators-public" });
  const out = h("div", { "aria-live": "polite" });
  const compute = async () => {
    out.replaceChildren(h("p", {}, t("loading")));
    let answer;
    try {
      answer = await node.api.getIndicators({ from: from.value, to: to.value, by: by.value, groupBy: groupBy.value, public: isPublic.checked });
    } catch (e) {
      out.replaceChildren(errorBox(e, compute));
      return;
    }
    const report = JSON.parse(answer.reportJson, (key, value, context) =>
      // Amounts past 2^53 must not lose digits: read them from the source text.
      typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value) && context?.source ? context.source : value,
    );
    const download = h("a", { class: "button", testid: "indicators-json", download: `indicators-${report.from}-${report.to}.json`, href: URL.createObjectURL(new Blob([answer.reportJson], { type: "application/json" })) }, t("ind.download"));
    out.replaceChildren(
      h("p", { testid: "indicators-through" }, t("ind.through", { sequence: answer.throughSequence, from: report.from, to: report.to })),
      h("div", { class: "charts" }, CHARTED.map((m) => seriesChart(report.periods, m))),
      h("p", { class: "hint" }, t("ind.legend")),
      ...indicatorsTables(report),
      download,
    );
  };
  const form = h(
    "form",
    {
      class: "filters",
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        compute();
      },
    },
    field("indicators-from", t("ind.from"), from),
    field("indicators-to", t("ind.to"), to),
    field("indicators-by", t("ind.by"), by),
    field("indicators-group-by", t("ind.groupBy"), groupBy),
    h("div", { class: "check" }, isPublic, h("label", { for: "indicators-public" }, t("ind.public"))),
    h("button", { type: "submit", testid: "indicators-compute" }, t("ind.compute")),
  );
  return [heading(t("ind.title")), h("p", {}, t("ind.intro")), form, out];
}
