// Cercle in the browser: a firm's key, overview, payments, history, invoices, signed
// statement and the account's keys; and, for a key that is an administrator's or an
// auditor's, the association's pages (admin.js).
//
// Every operation is built here (protobuf-es, generated from proto/), shown to the user,
// signed here with the key kept in this browser, and sent to the node as an envelope;
// every read is signed too. The node serves this page but cannot sign for the firm.

import qrcode from "qrcode-generator";
import { addKeyOperation, isLastOwner, KeyFormError, ledgerDay, paidOn, parsePublicKey, payerCaps, removeKeyOperation, ROLES, shortKey } from "./accountkeys.js";
import { AmountError, decimalString, formatAmount, parseAmount } from "./amount.js";
import { levy } from "./fees.js";
import { describeEntries, KIND_KEYS } from "./history.js";
import { field, h } from "./dom.js";
import { formatTime, initialLang, lang, setLang, t } from "./i18n.js";
import { forgetKey, fromHex, generateKey, importKeyFile, KeyFileError, loadKey, toHex } from "./keys.js";
import { nodeKeyFor, ProofError, verifyConsistency, verifyTreeHead } from "./proof.js";
import { accountsPage, clearingPage, indicatorsPage, managePage, registerPage } from "./admin.js";
import { checkedStatement } from "./statement.js";
import { amountMessage, app, confirmPanel, errorBox, heading, messageBox, money, node, receiptBox } from "./ui.js";

const ENTRIES_MAX = 10_000;
const INVOICES_PAGE = 1000;
const ACCOUNT_KEY = "cercle.account";

const main = () => document.getElementById("main");

// ---------------------------------------------------------------------------------
// Loading

async function loadAccounts() {
  const answer = await node.api.listKeyAccounts({});
  app.accounts = answer.accounts;
  app.administrator = answer.administrator;
  app.auditor = answer.auditor;
  const saved = localStorage.getItem(ACCOUNT_KEY);
  app.account = app.accounts.find((a) => a.account === saved)?.account ?? app.accounts[0]?.account ?? null;
}

async function loadAccount() {
  return (await node.api.getAccount({ account: app.account })).account;
}

/** The account's entries, oldest first (at most ENTRIES_MAX). */
async function loadEntries() {
  const entries = [];
  let after = 0n;
  while (entries.length < ENTRIES_MAX) {
    const page = await node.api.listEntries({ account: app.account, afterSequence: after, pageSize: 1000 });
    entries.push(...page.entries);
    if (page.nextAfterSequence === undefined) break;
    after = page.nextAfterSequence;
  }
  return entries;
}

/** The account's history rows, oldest first, each with what it moved the balance by. */
function historyRows(entries) {
  return describeEntries(entries, app.account, { t, money });
}

// ---------------------------------------------------------------------------------
// Pages

async function keyPage() {
  const association = app.key && (app.administrator || app.auditor);
  const page = [heading(t("key.title")), h("p", {}, t(association ? "key.introAdmin" : "key.intro"))];
  if (!crypto.subtle || !window.CryptoKey) page.push(messageBox(t("key.noEd25519")));
  const status = h("div", { "aria-live": "polite" });
  if (!app.key) {
    const fileInput = h("input", {
      type: "file",
      accept: ".key,text/plain",
      testid: "key-import",
      onchange: async (ev) => {
        const file = ev.target.files[0];
        if (!file) return;
        try {
          app.key = await importKeyFile(await file.text());
          node.key = app.key;
          await route();
        } catch (e) {
          status.replaceChildren(
            messageBox(e instanceof KeyFileError ? t(`key.${e.kind}`, e.params) : t("key.noEd25519")),
          );
        }
      },
    });
    page.push(
      h("button", {
        type: "button",
        testid: "key-generate",
        onclick: async () => {
          try {
            app.key = await generateKey();
            node.key = app.key;
            await route();
          } catch {
            status.replaceChildren(messageBox(t("key.noEd25519")));
          }
        },
      }, t("key.generate")),
      field("key-file", t("key.import"), fileInput, t("key.importHint")),
      status,
    );
    return page;
  }
  const qr = qrcode(0, "M");
  qr.addData(app.key.publicHex);
  qr.make();
  const qrBox = h("div", { class: "qr", role: "img", "aria-label": t("key.qr") });
  qrBox.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 4, scalable: true });
  page.push(
    h("h2", {}, t(association ? "key.publicAdmin" : "key.public")),
    h("p", { class: "mono", testid: "pubkey" }, app.key.publicHex),
    qrBox,
    h("h2", {}, t(association ? "key.role" : "key.accounts")),
  );
  if (app.administrator) page.push(h("p", { class: "panel" }, t("key.admin")));
  if (app.auditor) page.push(h("p", { class: "panel" }, t("key.auditor")));
  // An administrator's or auditor's key acts for the association: no firm to wait for.
  if (app.accounts.length === 0 && !association) {
    page.push(
      h("p", { testid: "no-account" }, t("key.none")),
      h("button", { type: "button", testid: "key-check", onclick: () => route() }, t("key.check")),
    );
  } else if (app.accounts.length > 0) {
    const select = h(
      "select",
      {
        testid: "account",
        onchange: (ev) => {
          app.account = ev.target.value;
          localStorage.setItem(ACCOUNT_KEY, app.account);
          renderNav();
        },
      },
      app.accounts.map((a) =>
        h("option", { value: a.account, selected: a.account === app.account }, `${a.account}${a.displayName && a.displayName !== a.account ? ` (${a.displayName})` : ""}`),
      ),
    );
    page.push(field("account-select", t("key.account"), select));
  }
  page.push(
    h("button", {
      type: "button",
      class: "secondary",
      onclick: async () => {
        if (!confirm(t("key.forgetConfirm"))) return;
        await forgetKey();
        app.key = null;
        node.key = null;
        app.accounts = [];
        app.account = null;
        await route();
      },
    }, t("key.forget")),
  );
  return page;
}

function balanceChart(rows) {
  const points = rows.filter((r) => r.balanceAfterMinor !== undefined);
  if (points.length === 0) return h("p", {}, t("chart.empty"));
  const values = points.map((r) => Number(r.balanceAfterMinor));
  const min = Math.min(0, ...values);
  const max = Math.max(0, ...values);
  // Room on the left for the amounts, below for the dates.
  const [width, height, left, right, top, bottom] = [640, 220, 110, 10, 10, 24];
  const x = (i) => left + (points.length === 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (points.length - 1));
  const y = (v) => height - bottom - ((v - min) * (height - top - bottom)) / (max - min || 1);
  const label = t("chart.label", {
    first: formatTime(points[0].timestampMs),
    last: formatTime(points.at(-1).timestampMs),
    min: money(BigInt(Math.round(min))),
    max: money(BigInt(Math.round(max))),
  });
  // Each entry is a step: the balance holds until the next one.
  let path = `${x(0)},${y(values[0])}`;
  for (let i = 1; i < values.length; i++) path += ` ${x(i)},${y(values[i - 1])} ${x(i)},${y(values[i])}`;
  const day = (ms) => new Intl.DateTimeFormat(lang() === "fr" ? "fr-FR" : "en-GB", { dateStyle: "medium", timeZone: "UTC" }).format(new Date(Number(ms)));
  const yLabels = [...new Set([max, 0, min])].map((v) =>
    h("text", { x: left - 8, y: y(v) + 4, "text-anchor": "end", "aria-hidden": "true" }, formatAmount(BigInt(Math.round(v)), node.info.exponent, lang())),
  );
  return h(
    "svg",
    { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, testid: "balance-chart" },
    h("title", {}, label),
    yLabels,
    h("text", { x: left, y: height - 6, "aria-hidden": "true" }, day(points[0].timestampMs)),
    h("text", { x: width - right, y: height - 6, "text-anchor": "end", "aria-hidden": "true" }, day(points.at(-1).timestampMs)),
    h("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), stroke: "#4a4a4a", "stroke-dasharray": "4 4" }),
    h("polyline", { points: path, fill: "none", stroke: "#0b4f6c", "stroke-width": 3 }),
  );
}

/**
 * Checks the node's signed tree head against the last one this browser saw (a
 * consistency proof), then remembers the new one. Returns what to say.
 */
async function checkHistory() {
  const { ledgerId } = node.info;
  const slot = `cercle.treeHead.${toHex(ledgerId)}`;
  const head = await node.api.getTreeHead({});
  if (toHex(head.ledgerId) !== toHex(ledgerId)) throw new ProofError("signature", "the tree head is another ledger's");
  await verifyTreeHead(nodeKeyFor(node.info, head.treeSize), head);
  const saved = JSON.parse(localStorage.getItem(slot) ?? "null");
  if (saved) {
    const oldSize = BigInt(saved.treeSize);
    if (oldSize > head.treeSize) {
      throw new ProofError("rewritten", t("proof.shrunk", { size: head.treeSize, old: oldSize }));
    }
    const proof = await node.api.getConsistencyProof({ oldSize, newSize: head.treeSize });
    await verifyConsistency(oldSize, head.treeSize, fromHex(saved.rootHash), head.rootHash, proof.hashes);
  }
  localStorage.setItem(slot, JSON.stringify({ treeSize: String(head.treeSize), rootHash: toHex(head.rootHash), timestampMs: String(head.timestampMs) }));
  return saved
    ? t("proof.ok", { size: head.treeSize, old: saved.treeSize, time: formatTime(saved.timestampMs) })
    : t("proof.first", { size: head.treeSize, time: formatTime(head.timestampMs) });
}

function historyCheck() {
  const result = h("div", { "aria-live": "polite" });
  const run = async () => {
    try {
      result.replaceChildren(h("p", { class: "ok", role: "status", testid: "proof-result" }, await checkHistory()));
    } catch (e) {
      const text = e instanceof ProofError && e.kind === "rewritten" ? t("proof.rewritten", { detail: e.message }) : t("proof.failed", { detail: e.message });
      result.replaceChildren(h("p", { class: "error", role: "alert", testid: "proof-result" }, text));
    }
  };
  run();
  return [h("h2", {}, t("proof.title")), result, h("button", { type: "button", class: "secondary", testid: "proof-check", onclick: run }, t("proof.check"))];
}

/** The role of this browser's key on `account`: "owner", "payer", "invoicer" or "viewer". */
function myRole(account) {
  const mine = toHex(app.key.publicKey);
  return account.keys.find((k) => toHex(k.publicKey) === mine)?.role ?? "owner";
}

/**
 * The account's payments waiting for an owner's approval: each with what it pays, to whom,
 * until when; an owner key approves or declines each, shown before it is signed.
 */
function pendingSection(account) {
  const now = BigInt(Date.now());
  const live = account.pending.filter((p) => p.expiresMs >= now);
  if (live.length === 0) return null;
  const owner = myRole(account) === "owner";
  const below = h("div", { "aria-live": "polite" });
  const act = async (p, approve, reason) => {
    const kind = approve
      ? { case: "approvePending", value: { account: account.account, pendingId: p.pendingId, payee: p.payee, amountMinor: p.amountMinor } }
      : { case: "declinePending", value: { account: account.account, pendingId: p.pendingId, reason } };
    const prepared = await node.prepare(kind);
    // Its approval pays the levy in force now (a held payment paid none while it waited).
    const note = approve ? levyNote((await node.freshInfo()).fees, account.account, p.payee, p.amountMinor) : null;
    const panel = confirmPanel({
      title: approve
        ? { heading: t("pending.approveTitle"), button: t("pending.approveConfirm") }
        : { heading: t("pending.declineTitle"), button: t("pending.declineConfirm") },
      lines: [
        [t("pending.id"), String(p.pendingId)],
        [t("pay.toShort"), p.payee],
        [t("pay.amountShort"), money(p.amountMinor)],
        [t("pay.memoShort"), p.memo || "—"],
        ...(approve ? [] : [[t("reason"), reason]]),
        [t("pay.opId"), toHex(prepared.operationId)],
      ],
      prepared,
      testid: "pending-confirm",
      onDone: (receipt) => {
        const box = approve ? receiptBox(receipt) : receiptBox(receipt, t("pending.declined", { id: String(p.pendingId) }));
        const again = h("p", {}, h("a", { href: "#/overview", onclick: () => setTimeout(() => route()) }, t("pending.refresh")));
        return h("div", {}, box, again);
      },
      onCancel: () => below.replaceChildren(),
    });
    if (note) panel.insertBefore(levyParagraph(note, p.amountMinor, false), panel.querySelector(".actions"));
    below.replaceChildren(panel);
    panel.querySelector("h2").focus();
  };
  const rows = live.map((p) => {
    const reason = h("input", { type: "text", testid: "pending-reason", maxlength: 140, placeholder: t("pending.reasonPlaceholder"), "aria-label": t("pending.reasonLabel", { id: String(p.pendingId) }) });
    return h(
      "tr",
      { testid: "pending-row", "data-pending": String(p.pendingId) },
      h("td", { class: "num" }, String(p.pendingId)),
      h("td", {}, p.payee),
      h("td", { class: "num" }, money(p.amountMinor)),
      h("td", {}, p.memo),
      h("td", {}, formatTime(p.expiresMs)),
      owner
        ? h(
            "td",
            {},
            h("button", { type: "button", testid: "pending-approve", onclick: () => act(p, true) }, t("pending.approve")),
            " ",
            reason,
            " ",
            h(
              "button",
              {
                type: "button",
                class: "secondary",
                testid: "pending-decline",
                onclick: () => {
                  if (!reason.value.trim()) {
                    below.replaceChildren(messageBox(t("pending.reasonNeeded")));
                    reason.focus();
                    return;
                  }
                  act(p, false, reason.value.trim());
                },
              },
              t("pending.decline"),
            ),
          )
        : h("td", { class: "hint" }, t("pending.waiting")),
    );
  });
  return [
    h("h2", { testid: "pending-title" }, t("pending.title")),
    h("p", { class: "hint" }, t(owner ? "pending.introOwner" : "pending.intro")),
    h(
      "table",
      { testid: "pending" },
      h(
        "thead",
        {},
        h("tr", {}, [t("pending.id"), t("pay.toShort"), t("pay.amountShort"), t("pay.memoShort"), t("pending.expires"), ""].map((c) => h("th", { scope: "col" }, c))),
      ),
      h("tbody", {}, rows),
    ),
    below,
  ];
}

async function overviewPage() {
  const [account, entries] = await Promise.all([loadAccount(), loadEntries()]);
  const balance = account.balanceMinor;
  const floor = -account.creditLimitMinor;
  // What pending payments reserve is headroom already promised.
  const reserved = account.reservedMinor;
  const headroom = balance - floor - reserved;
  // AccountStatus: 2 frozen, 3 closed (proto/cercle/v1/ledger.proto).
  const status = account.status === 3 ? t("status.closed") : account.status === 2 ? t("status.frozen") : t("status.active");
  return [
    heading(t("overview.title", { account: account.account })),
    account.displayName && account.displayName !== account.account ? h("p", {}, account.displayName) : null,
    h(
      "dl",
      { class: "figures" },
      h("div", {}, h("dt", {}, t("balance")), h("dd", { testid: "balance", class: balance < 0n ? "negative" : "" }, money(balance))),
      h("div", {}, h("dt", {}, t("creditLimit")), h("dd", {}, h("span", { testid: "credit-limit" }, money(account.creditLimitMinor)), h("span", { class: "hint" }, t("floor", { floor: money(floor) })))),
      reserved !== 0n ? h("div", {}, h("dt", {}, t("reserved")), h("dd", { testid: "reserved" }, money(reserved))) : null,
      h("div", {}, h("dt", {}, t("headroom")), h("dd", { testid: "headroom" }, money(headroom > 0n ? headroom : 0n))),
      h("div", {}, h("dt", {}, t("maxBalance")), h("dd", { testid: "max-balance" }, account.maxBalanceMinor === undefined ? t("noMax") : money(account.maxBalanceMinor))),
      h("div", {}, h("dt", {}, t("status")), h("dd", { testid: "status" }, status)),
    ),
    pendingSection(account),
    h("h2", {}, t("chart.title")),
    balanceChart(historyRows(entries)),
    historyCheck(),
  ];
}

/**
 * The transfer levy in force on a payment of `amountMinor` from `payer` to `payee`, as the
 * ledger computes it (fees.js), and the sentence that says it before signing; null when
 * there is none. The levy is not in the signed body: the ledger charges the schedule in
 * force when it applies the payment, which the node's ledger info just gave.
 */
function levyNote(fees, payer, payee, amountMinor) {
  const l = levy(fees, payer, payee, amountMinor);
  if (l.totalMinor === 0n) return null;
  const who =
    fees.levyOn === "split"
      ? t("levy.split", { payer: money(l.payerMinor), payee: money(l.payeeMinor), payeeName: payee })
      : t(`levy.${fees.levyOn}`, { payee });
  const text = t("levy.line", { levy: money(l.totalMinor), account: fees.account, bp: fees.transferLevyBp, amount: money(amountMinor), who });
  return { levy: l, text };
}

/** The levy paragraph of a confirmation: the levy, and what leaves the account in all. */
function levyParagraph(note, amountMinor, held) {
  return h(
    "p",
    { testid: "pay-levy" },
    note.text,
    " ",
    t("levy.total", { total: money(amountMinor + note.levy.payerMinor) }),
    held ? [" ", t("levy.held")] : null,
  );
}

async function payPage() {
  const { exponent, currency } = node.info;
  const to = h("input", { type: "text", testid: "pay-to", autocomplete: "off", required: true, pattern: "[a-z0-9-]{3,32}" });
  const amount = h("input", { type: "text", testid: "pay-amount", inputmode: "decimal", autocomplete: "off", required: true });
  const memo = h("input", { type: "text", testid: "pay-memo", maxlength: 140 });
  const below = h("div", { "aria-live": "polite" });
  const review = async () => {
    let minor;
    try {
      minor = parseAmount(amount.value, exponent, lang());
    } catch (e) {
      below.replaceChildren(messageBox(amountMessage(e)));
      amount.focus();
      return;
    }
    const payee = to.value.trim();
    // The account and the fee schedule as they are now, not as the page found them: the
    // balance after, the limit check and the levy are what the ledger will apply.
    const [account, info] = await Promise.all([loadAccount(), node.freshInfo()]);
    const note = levyNote(info.fees, account.account, payee, minor);
    const prepared = await node.prepare({
      case: "transfer",
      value: { payer: account.account, payee, amountMinor: minor, memo: memo.value },
    });
    const before = account.balanceMinor;
    const after = before - minor - (note?.levy.payerMinor ?? 0n);
    // The core's check (`State::payment_balances`): the balance after, less what pending
    // payments reserve, may not go below the binding credit limit's floor.
    const floor = -account.creditLimitMinor;
    const reserved = account.reservedMinor;
    const over = after - reserved < floor;
    const limitText =
      reserved === 0n
        ? t("pay.after", { after: money(after), floor: money(floor) })
        : t("pay.afterReserved", { after: money(after), floor: money(floor), reserved: money(reserved), lowest: money(floor + reserved) });
    const panel = confirmPanel({
      title: { heading: t("pay.confirmTitle"), button: t("pay.confirm") },
      lines: [
        [t("pay.from"), account.account],
        [t("pay.toShort"), payee],
        [t("pay.amountShort"), money(minor)],
        [t("pay.memoShort"), memo.value || "—"],
        [t("pay.opId"), toHex(prepared.operationId)],
      ],
      prepared,
      testid: "pay-confirm",
      onDone: (receipt) => {
        // A new payment starts from an empty form: nothing is paid twice by mistake.
        form.reset();
        const box = receiptBox(receipt);
        const mine = receipt.balancesAfter.find((b) => b.account === account.account);
        // What the payment moved the balance by, the levy included, when the ledger's
        // balance confirms it (a duplicate's balance is the original's).
        if (note && note.levy.payerMinor > 0n && mine && !receipt.duplicate && mine.balanceMinor - before === after - before) {
          box.insertBefore(
            h("p", { testid: "receipt-levy" }, t("receipt.levy", { levy: money(note.levy.payerMinor), account: info.fees.account, moved: money(after - before) })),
            box.querySelector(".hint"),
          );
        }
        return box;
      },
      onCancel: () => {
        below.replaceChildren();
        amount.focus();
      },
    });
    const actions = panel.querySelector(".actions");
    if (note) panel.insertBefore(levyParagraph(note, minor, myRole(account) === "payer"), actions);
    panel.insertBefore(
      h("p", { testid: "limit-check", class: over ? "negative" : "" }, limitText, over ? [" ", h("strong", {}, t("pay.overLimit"))] : null),
      actions,
    );
    below.replaceChildren(panel);
    panel.querySelector("h2").focus();
  };
  const form = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await review();
        } catch (e) {
          below.replaceChildren(errorBox(e, review));
        }
      },
    },
    field("pay-to", t("pay.to"), to),
    field("pay-amount", t("pay.amount", { currency }), amount, t("pay.amountHint")),
    field("pay-memo", t("pay.memo"), memo),
    h("button", { type: "submit", testid: "pay-submit" }, t("pay.review")),
  );
  return [heading(t("pay.title")), form, below];
}

function csv(rows) {
  const { exponent } = node.info;
  const quote = (s) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const lines = ["sequence,timestamp_utc,kind,counterparty,amount,balance_after,memo"];
  for (const r of rows) {
    lines.push(
      [
        r.sequence,
        new Date(Number(r.timestampMs)).toISOString(),
        r.kind,
        r.counterparty,
        r.amountMinor === null ? "" : decimalString(r.amountMinor, exponent),
        r.balanceAfterMinor === undefined ? "" : decimalString(r.balanceAfterMinor, exponent),
        r.memo,
      ].map((v) => quote(String(v))).join(","),
    );
  }
  return `${lines.join("\r\n")}\r\n`;
}

async function historyPage() {
  const rows = historyRows(await loadEntries());
  const from = h("input", { type: "date", testid: "history-from" });
  const to = h("input", { type: "date", testid: "history-to" });
  const who = h("input", { type: "text", testid: "history-with", autocomplete: "off" });
  const count = h("p", { "aria-live": "polite", testid: "history-count" });
  const body = h("tbody");
  const download = h("a", { class: "button", testid: "history-csv", download: `${app.account}-history.csv`, href: "#" }, t("history.csv"));
  const selected = () => {
    const fromMs = from.value ? Date.parse(`${from.value}T00:00:00Z`) : -Infinity;
    const toMs = to.value ? Date.parse(`${to.value}T00:00:00Z`) + 86_400_000 : Infinity;
    const name = who.value.trim().toLowerCase();
    return rows.filter((r) => {
      const ms = Number(r.timestampMs);
      return ms >= fromMs && ms < toMs && (name === "" || r.counterparty.toLowerCase().includes(name));
    });
  };
  const render = () => {
    const shown = selected();
    body.replaceChildren(
      ...shown.map((r) =>
        h(
          "tr",
          { testid: "history-row" },
          h("td", { class: "num" }, String(r.sequence)),
          h("td", {}, formatTime(r.timestampMs)),
          h("td", {}, t(KIND_KEYS[r.kind] ?? r.kind)),
          h("td", {}, r.counterparty),
          h("td", { class: `num ${r.amountMinor < 0n ? "negative" : ""}` }, r.amountMinor === null ? "" : money(r.amountMinor)),
          h("td", { class: "num" }, r.balanceAfterMinor === undefined ? "" : money(r.balanceAfterMinor)),
          h("td", {}, r.memo),
        ),
      ),
    );
    if (shown.length === 0) body.append(h("tr", {}, h("td", { colspan: 7 }, t("history.none"))));
    count.textContent = t("history.count", { shown: shown.length, total: rows.length });
    URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(new Blob([csv(shown)], { type: "text/csv" }));
  };
  for (const input of [from, to, who]) input.addEventListener("input", render);
  render();
  return [
    heading(t("history.title", { account: app.account })),
    h("div", { class: "filters" }, field("history-from", t("history.from"), from), field("history-to", t("history.to"), to), field("history-with", t("history.with"), who), download),
    count,
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["history.seq", "history.when", "history.what", "history.withCol", "history.amount", "history.after", "history.memo"].map((k, i) => h("th", { scope: "col", class: i === 0 || i === 4 || i === 5 ? "num" : "" }, t(k))))),
      body,
    ),
  ];
}

const dayOf = (dateText) => Math.floor(Date.parse(`${dateText}T00:00:00Z`) / 86_400_000);

async function invoicesPage() {
  const { exponent, currency } = node.info;
  const me = app.account;
  const answer = await node.api.listInvoices({ account: me, pageSize: INVOICES_PAGE });
  const below = h("div", { "aria-live": "polite" });
  const again = () => route();

  /** Shows what will be signed for `kind`, then signs and submits it on confirmation. */
  const offer = async (description, kind) => {
    const prepared = await node.prepare(kind);
    const panel = confirmPanel({
      title: { heading: t("invoices.confirmTitle"), button: t("pay.confirm") },
      lines: [[t("pay.from"), me], [t("invoices.operation"), description], [t("pay.opId"), toHex(prepared.operationId)]],
      prepared,
      testid: "op-confirm",
      onDone: (receipt) => {
        const box = receiptBox(receipt, t("invoices.signed", { sequence: receipt.sequence }));
        box.append(h("button", { type: "button", testid: "invoices-reload", onclick: again }, t("key.check")));
        return box;
      },
      onCancel: () => below.replaceChildren(),
    });
    below.replaceChildren(panel);
    panel.querySelector("h2").focus();
  };

  const rows = answer.invoices.map((inv) => {
    const iPay = inv.payer === me;
    const parties = { invoiceId: inv.invoiceId, payee: inv.payee, payer: inv.payer };
    const reference = inv.reference || toHex(inv.invoiceId).slice(0, 8);
    const open = inv.state >= 1 && inv.state <= 3;
    const reasonInput = (id) => h("input", { type: "text", id, "aria-label": t("invoices.reason"), maxlength: 280 });
    const actions = [];
    if (iPay && inv.state === 1) {
      actions.push(h("button", { type: "button", testid: "invoice-accept", onclick: () => offer(t("op.accept", { reference, payee: inv.payee }), { case: "acceptInvoice", value: { invoice: parties } }) }, t("invoices.accept")));
      const reason = reasonInput(`reject-${reference}`);
      actions.push(reason, h("button", { type: "button", testid: "invoice-reject", onclick: () => offer(t("op.reject", { reference, payee: inv.payee, reason: reason.value }), { case: "rejectInvoice", value: { invoice: parties, reason: reason.value } }) }, t("invoices.reject")));
    }
    if (iPay && open) {
      const amount = h("input", { type: "text", inputmode: "decimal", testid: "invoice-pay-amount", "aria-label": t("invoices.payAmount"), size: 10 });
      actions.push(
        amount,
        h("button", {
          type: "button",
          testid: "invoice-pay",
          onclick: () => {
            let minor = inv.openMinor;
            if (amount.value.trim() !== "") {
              try {
                minor = parseAmount(amount.value, exponent, lang());
              } catch (e) {
                below.replaceChildren(messageBox(amountMessage(e)));
                return;
              }
            }
            offer(t("op.payInvoice", { amount: formatAmount(minor, exponent, lang()), currency, payee: inv.payee, reference }), {
              case: "transfer",
              value: { payer: me, payee: inv.payee, amountMinor: minor, memo: "", invoiceId: inv.invoiceId, invoiceRef: inv.reference || undefined },
            });
          },
        }, t("invoices.pay")),
      );
    }
    if (!iPay && open && inv.paidMinor === 0n && inv.clearedMinor === 0n) {
      const reason = reasonInput(`cancel-${reference}`);
      actions.push(reason, h("button", { type: "button", testid: "invoice-cancel", onclick: () => offer(t("op.cancel", { reference, payer: inv.payer, reason: reason.value }), { case: "cancelInvoice", value: { invoice: parties, reason: reason.value } }) }, t("invoices.cancel")));
    }
    if (open) {
      const excluded = inv.excludedFromClearing;
      actions.push(h("button", { type: "button", class: "secondary", testid: "invoice-clearing", onclick: () => offer(t(excluded ? "op.include" : "op.exclude", { reference }), { case: "setInvoiceClearing", value: { invoice: parties, excluded: !excluded } }) }, t(excluded ? "invoices.include" : "invoices.exclude")));
    }
    return h(
      "tr",
      { testid: "invoice-row", "data-state": String(inv.state) },
      h("th", { scope: "row" }, reference),
      h("td", {}, `${iPay ? inv.payee : inv.payer} (${t(iPay ? "invoices.toPay" : "invoices.toReceive")})`),
      h("td", { class: "num" }, money(inv.amountMinor)),
      h("td", { class: "num" }, money(inv.openMinor)),
      h("td", { testid: "invoice-state" }, t(`state.${inv.state}`)),
      h("td", {}, h("div", { class: "actions" }, actions)),
    );
  });

  const payer = h("input", { type: "text", testid: "invoice-payer", autocomplete: "off" });
  const amount = h("input", { type: "text", testid: "invoice-amount", inputmode: "decimal", autocomplete: "off" });
  const due = h("input", { type: "date", testid: "invoice-due" });
  const reference = h("input", { type: "text", testid: "invoice-reference", maxlength: 64 });
  const share = h("input", { type: "number", testid: "invoice-share", min: 1, max: 100, value: 100 });
  const issue = h(
    "form",
    {
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        let minor;
        try {
          minor = parseAmount(amount.value, exponent, lang());
        } catch (e) {
          below.replaceChildren(messageBox(amountMessage(e)));
          return;
        }
        const percent = Number(share.value);
        offer(t("op.issue", { payer: payer.value.trim(), amount: formatAmount(minor, exponent, lang()), currency, share: percent, reference: reference.value }), {
          case: "issueInvoice",
          value: {
            invoiceId: crypto.getRandomValues(new Uint8Array(16)),
            payee: me,
            payer: payer.value.trim(),
            amountMinor: minor,
            localSharePercent: percent,
            dueDay: due.value ? dayOf(due.value) : undefined,
            reference: reference.value,
          },
        });
      },
    },
    h("h2", {}, t("invoices.issue")),
    field("invoice-payer", t("invoices.payer"), payer),
    field("invoice-amount", t("invoices.amount", { currency }), amount, t("pay.amountHint")),
    field("invoice-due", t("invoices.due"), due),
    field("invoice-reference", t("invoices.reference"), reference),
    field("invoice-share", t("invoices.share", { currency }), share),
    h("button", { type: "submit", testid: "invoice-issue" }, t("invoices.issueSubmit")),
  );

  return [
    heading(t("invoices.title", { account: me })),
    rows.length === 0
      ? h("p", {}, t("invoices.none"))
      : h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["invoices.ref", "invoices.party", "invoices.amountCol", "invoices.open", "invoices.state", "invoices.actions"].map((k, i) => h("th", { scope: "col", class: i === 2 || i === 3 ? "num" : "" }, t(k))))),
          h("tbody", {}, rows),
        ),
    below,
    issue,
  ];
}

/**
 * The account's keys: each with its role, a payer's caps and what it paid today, this
 * browser's marked; every role reads them. An owner key adds a key (its public key pasted,
 * its role, a payer's caps) and removes one, each shown before it is signed, as `cercle key
 * add` and `key remove` sign them. A key already on another account is refused by the
 * ledger (KEY_ALREADY_REGISTERED) unless sharing is allowed: the refusal offers it then.
 */
async function keysPage() {
  const { exponent, currency } = node.info;
  const account = await loadAccount();
  const mine = app.key.publicHex;
  const myRoleNow = myRole(account);
  const owner = myRoleNow === "owner";
  const today = ledgerDay(node.info.dayOffsetMinutes, Date.now());
  const below = h("div", { "aria-live": "polite" });
  const roleName = (role) => t(`keys.role.${role}`);
  const again = () => route();

  /** What was signed, and the way back to the list. */
  const done = (receipt, text) => {
    const box = receiptBox(receipt, text, t("keys.doneTitle"));
    box.append(h("button", { type: "button", testid: "keys-reload", onclick: again }, t("keys.reload")));
    return box;
  };

  /** Shows what will be signed for `kind` (`lines` and its operation id), then signs it. */
  const offer = async ({ heading2, button, lines, kind, warning, onDone, onRefused }) => {
    const prepared = await node.prepare(kind);
    const panel = confirmPanel({
      title: { heading: heading2, button },
      lines: [[t("key.account"), account.account], ...lines, [t("pay.opId"), toHex(prepared.operationId)]],
      prepared,
      testid: "keys-confirm",
      onDone,
      onCancel: () => below.replaceChildren(),
      onRefused,
    });
    if (warning) panel.insertBefore(h("p", { testid: "keys-warning" }, h("strong", {}, warning)), panel.querySelector(".actions"));
    below.replaceChildren(panel);
    panel.querySelector("h2").focus();
  };

  const remove = (k, hex) =>
    offer({
      heading2: t("keys.removeTitle"),
      button: t("keys.removeConfirm"),
      lines: [[t("keys.operation"), t("keys.removeOp")], [t("keys.pubkeyShort"), hex], [t("keys.roleCol"), roleName(k.role)]],
      kind: removeKeyOperation(account.account, k.publicKey),
      warning: hex === mine ? t("keys.removeMine", { account: account.account }) : null,
      onDone: (receipt) => done(receipt, t("keys.removed", { key: shortKey(hex), sequence: receipt.sequence })),
    });

  const capsOf = (k) => k.perTransferCapMinor !== undefined && k.dailyCapMinor !== undefined;
  const rows = account.keys.map((k) => {
    const hex = toHex(k.publicKey);
    const payer = capsOf(k);
    const always = payer && k.perTransferCapMinor === 0n && k.dailyCapMinor === 0n;
    const shown = h("code", { class: "mono", title: hex }, shortKey(hex));
    const copy = navigator.clipboard
      ? h("button", {
          type: "button",
          class: "secondary small",
          "aria-label": t("keys.copyLabel", { key: shortKey(hex) }),
          onclick: async (ev) => {
            try {
              await navigator.clipboard.writeText(hex);
              ev.target.textContent = t("keys.copied");
            } catch {
              // No clipboard here: the whole key, to select by hand.
              shown.textContent = hex;
            }
          },
        }, t("keys.copy"))
      : null;
    let action = null;
    if (owner) {
      action = isLastOwner(account.keys, hex)
        ? h("span", { class: "hint" }, t("keys.lastOwner"))
        : h("button", { type: "button", class: "secondary small", testid: "keys-remove", onclick: () => remove(k, hex).catch((e) => below.replaceChildren(errorBox(e))) }, t("keys.remove"));
    }
    return h(
      "tr",
      { testid: "keys-row", "data-pubkey": hex, "data-role": k.role },
      h("th", { scope: "row" }, h("span", { class: "nowrap" }, shown, " ", copy), hex === mine ? h("div", {}, h("span", { class: "badge", testid: "keys-mine" }, t("keys.mine"))) : null),
      h("td", { testid: "keys-role" }, roleName(k.role), always ? h("span", { class: "hint block" }, t("keys.always")) : null),
      h("td", { class: "num" }, payer ? money(k.perTransferCapMinor) : "—"),
      h("td", { class: "num" }, payer ? money(k.dailyCapMinor) : "—"),
      h("td", { class: "num" }, payer ? money(paidOn(k, today)) : "—"),
      owner ? h("td", {}, action) : null,
    );
  });
  const columns = ["keys.pubkeyShort", "keys.roleCol", "keys.perTransferCol", "keys.dailyCol", "keys.paidTodayCol", ...(owner ? ["keys.actions"] : [])];
  const table = h(
    "div",
    { class: "scroll", tabindex: 0, role: "region", "aria-label": t("keys.tableLabel") },
    h(
      "table",
      { testid: "keys" },
      h("thead", {}, h("tr", {}, columns.map((c, i) => h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : "" }, t(c))))),
      h("tbody", {}, rows),
    ),
  );
  const roles = h("ul", { class: "hint" }, ROLES.map((r) => h("li", {}, t("keys.roleDoes", { role: roleName(r), does: t(`keys.does.${r}`) }))));
  const day = t("keys.day", { offset: dayOffset(node.info.dayOffsetMinutes) });
  const anyPayer = account.keys.some(capsOf);
  const page = [heading(t("keys.title", { account: account.account })), h("p", {}, t("keys.intro")), table, h("div", { class: "notes" }, anyPayer || owner ? h("p", { class: "hint" }, day) : null, roles)];
  if (!owner) {
    page.push(h("p", { class: "panel", testid: "keys-owner-only" }, t("keys.ownerOnly", { role: roleName(myRoleNow) })));
    return page;
  }

  // The form of a new key.
  const pubkey = h("input", { type: "text", testid: "keys-pubkey", autocomplete: "off", spellcheck: "false", class: "mono wide" });
  const role = h("select", { testid: "keys-role-select" }, ROLES.map((r) => h("option", { value: r, selected: r === "viewer" }, t("keys.roleDoes", { role: roleName(r), does: t(`keys.does.${r}`) }))));
  const perTransfer = h("input", { type: "text", testid: "keys-per-transfer", inputmode: "decimal", autocomplete: "off" });
  const daily = h("input", { type: "text", testid: "keys-daily", inputmode: "decimal", autocomplete: "off" });
  const requireApproval = h("input", { type: "checkbox", id: "keys-require-approval", testid: "keys-require-approval" });
  const caps = h(
    "fieldset",
    { class: "caps" },
    h("legend", {}, t("keys.capsLegend")),
    field("keys-per-transfer", t("keys.perTransfer", { currency }), perTransfer, t("keys.perTransferHint")),
    field("keys-daily", t("keys.daily", { currency }), daily, t("keys.dailyHint")),
    h("div", { class: "check" }, requireApproval, h("label", { for: "keys-require-approval" }, t("keys.requireApproval"))),
  );
  const showCaps = () => {
    caps.hidden = role.value !== "payer";
    perTransfer.disabled = daily.disabled = requireApproval.checked;
  };
  role.addEventListener("change", showCaps);
  requireApproval.addEventListener("change", showCaps);
  showCaps();

  /** Reads the form and shows what will be signed; `allowSharedKey` after the ledger asked. */
  const review = async (allowSharedKey = false) => {
    let publicKey;
    try {
      publicKey = parsePublicKey(pubkey.value);
    } catch (e) {
      if (!(e instanceof KeyFormError)) throw e;
      below.replaceChildren(messageBox(t(`keys.${e.kind}`, e.params)));
      pubkey.focus();
      return;
    }
    const hex = toHex(publicKey);
    const already = account.keys.find((k) => toHex(k.publicKey) === hex);
    if (already) {
      below.replaceChildren(messageBox(t("keys.alreadyHere", { role: roleName(already.role) })));
      pubkey.focus();
      return;
    }
    const chosen = role.value;
    let limits;
    if (chosen === "payer") {
      try {
        limits = payerCaps({ perTransfer: perTransfer.value, daily: daily.value, requireApproval: requireApproval.checked }, exponent, lang());
      } catch (e) {
        if (!(e instanceof KeyFormError || e instanceof AmountError)) throw e;
        const input = (e.field ?? e.params?.field) === "daily" ? daily : perTransfer;
        const what = t(input === daily ? "keys.dailyShort" : "keys.perTransferShort");
        const text =
          e instanceof KeyFormError
            ? t(`keys.${e.kind}`, { what, per: e.params.perTransferMinor === undefined ? "" : money(e.params.perTransferMinor), daily: e.params.dailyMinor === undefined ? "" : money(e.params.dailyMinor) })
            : `${what}: ${amountMessage(e)}`;
        below.replaceChildren(messageBox(text));
        input.focus();
        return;
      }
    }
    const lines = [[t("keys.operation"), t("keys.addOp")], [t("keys.pubkeyShort"), hex], [t("keys.roleCol"), t("keys.roleDoes", { role: roleName(chosen), does: t(`keys.does.${chosen}`) })]];
    if (limits) {
      if (limits.dailyMinor === 0n) lines.push([t("keys.capsLegend"), t("keys.always")]);
      else lines.push([t("keys.perTransferShort"), money(limits.perTransferMinor)], [t("keys.dailyShort"), money(limits.dailyMinor)]);
    }
    if (allowSharedKey) lines.push([t("keys.shared"), t("keys.sharedYes")]);
    await offer({
      heading2: t("keys.addTitle"),
      button: t("keys.addConfirm"),
      lines,
      kind: addKeyOperation({ account: account.account, publicKey, role: chosen, caps: limits, allowSharedKey }),
      warning: chosen === "owner" ? t("keys.ownerWarning") : null,
      onDone: (receipt) => done(receipt, t("keys.added", { key: shortKey(hex), role: roleName(chosen), sequence: receipt.sequence })),
      // The key signs for another account already: the owner may mean it (an accountant's key).
      onRefused: (d) =>
        d.name === "KEY_ALREADY_REGISTERED" && !allowSharedKey
          ? h(
              "div",
              { class: "panel" },
              h("p", {}, t("keys.sharedOffer")),
              h("button", { type: "button", testid: "keys-share", onclick: () => review(true).catch((e) => below.replaceChildren(errorBox(e))) }, t("keys.sharedButton")),
            )
          : null,
    });
  };
  const form = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await review();
        } catch (e) {
          below.replaceChildren(errorBox(e, () => review()));
        }
      },
    },
    h("h2", {}, t("keys.addHeading")),
    field("keys-pubkey", t("keys.pubkey"), pubkey, t("keys.pubkeyHint")),
    field("keys-role-select", t("keys.roleCol"), role),
    caps,
    h("button", { type: "submit", testid: "keys-submit" }, t("keys.review")),
  );
  page.push(below, form);
  return page;
}

/** The ledger day's offset from UTC as `cercle info` writes it: `+01:00`. */
function dayOffset(minutes) {
  const m = Math.abs(minutes);
  return `${minutes < 0 ? "-" : "+"}${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

/** The firm's signed statement over a period, checked here, then downloaded as a file. */
async function statementPage() {
  const from = h("input", { type: "date", testid: "statement-from" });
  const to = h("input", { type: "date", testid: "statement-to" });
  const out = h("div", { "aria-live": "polite" });
  const account = app.account;
  const get = async () => {
    const fromMs = from.value ? Date.parse(`${from.value}T00:00:00Z`) : 0;
    const toMs = to.value ? Date.parse(`${to.value}T00:00:00Z`) + 86_400_000 - 1 : 0;
    if (toMs !== 0 && fromMs > toMs) return out.replaceChildren(messageBox(t("statement.order")));
    out.replaceChildren(h("p", {}, t("loading")));
    let checked;
    try {
      const reply = await node.api.getStatement({ account, fromMs: BigInt(fromMs), toMs: BigInt(toMs) });
      checked = await checkedStatement(node.info, reply);
    } catch (e) {
      out.replaceChildren(e instanceof ProofError ? messageBox(t("statement.invalid", { detail: e.message })) : errorBox(e, get));
      return;
    }
    const s = checked.statement;
    const verdict = s.provisional ? t("statement.provisional", { time: formatTime(s.cutAtMs) }) : t("statement.final");
    const start = s.fromMs === 0n ? t("statement.start") : formatTime(s.fromMs);
    const end = s.toMs === 0xffff_ffff_ffff_ffffn ? t("statement.now") : formatTime(s.toMs);
    const name = `${account}-statement-${from.value || "start"}-${to.value || new Date().toISOString().slice(0, 10)}.json`;
    const rows = [
      [t("statement.verdict"), verdict],
      [t("statement.period"), t(s.toMs === 0xffff_ffff_ffff_ffffn ? "statement.rangeNow" : "statement.range", { from: start, to: end })],
      [t("statement.opening"), money(s.openingMinor)],
      [t("statement.in"), money(s.turnoverInMinor)],
      [t("statement.out"), money(s.turnoverOutMinor)],
      [t("statement.closing"), money(s.closingMinor)],
      [t("creditLimit"), money(s.creditLimitMinor)],
      [t("statement.entries"), t("statement.proven", { count: s.entryCount, size: s.treeSize })],
      [t("statement.nodeKey"), toHex(nodeKeyFor(node.info, s.treeSize))],
    ];
    out.replaceChildren(
      h("section", { class: "ok", testid: "statement-summary", "aria-labelledby": "statement-checked" },
        h("h2", { id: "statement-checked" }, t("statement.checked")),
        h("dl", { class: "pairs" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { class: k === t("statement.nodeKey") ? "mono" : "" }, v)])),
      ),
      h("a", { class: "button", testid: "statement-download", download: name, href: URL.createObjectURL(new Blob([checked.text], { type: "application/json" })) }, t("statement.download")),
      h("p", { class: "hint" }, t("statement.howToCheck")),
      h("pre", { class: "mono" }, `cercle statement verify ${name} --node-key ${toHex(nodeKeyFor(node.info, s.treeSize))}`),
    );
  };
  const form = h(
    "form",
    {
      class: "filters",
      novalidate: true,
      onsubmit: (ev) => {
        ev.preventDefault();
        get();
      },
    },
    field("statement-from", t("statement.from"), from),
    field("statement-to", t("statement.to"), to),
    h("button", { type: "submit", testid: "statement-get" }, t("statement.get")),
  );
  return [heading(t("statement.title", { account })), h("p", {}, t("statement.intro")), form, out];
}

// ---------------------------------------------------------------------------------
// Routing

const PAGES = {
  overview: overviewPage,
  pay: payPage,
  history: historyPage,
  invoices: invoicesPage,
  statement: statementPage,
  keys: keysPage,
  accounts: accountsPage,
  register: registerPage,
  manage: managePage,
  clearing: clearingPage,
  indicators: indicatorsPage,
  key: keyPage,
};
const FIRM_PAGES = ["overview", "pay", "history", "invoices", "statement", "keys"];
// Auditors read what administrators read; only administrators sign for the association.
const ADMIN_PAGES = ["accounts", "register", "clearing", "indicators"];
const AUDITOR_PAGES = ["accounts", "clearing", "indicators"];

/** The pages the key may see in the menu, in order. */
function menu() {
  if (!app.key) return ["key"];
  const governance = app.administrator ? ADMIN_PAGES : app.auditor ? AUDITOR_PAGES : [];
  return [...(app.account ? FIRM_PAGES : []), ...governance, "key"];
}

/** The page the address names, and what follows it (`#/manage/alice-bakery`). */
function currentPage() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const allowed = menu();
  if (name === "manage" && app.administrator) return ["manage", decodeURIComponent(rest.join("/"))];
  if (allowed.includes(name)) return [name, undefined];
  return [allowed.length > 1 ? allowed[0] : "key", undefined];
}

function renderNav() {
  const [page] = currentPage();
  const current = page === "manage" ? "accounts" : page;
  const nav = document.getElementById("nav");
  nav.setAttribute("aria-label", t("nav"));
  nav.replaceChildren(...menu().map((n) => h("a", { href: `#/${n}`, "aria-current": n === current ? "page" : undefined }, t(`nav.${n}`))));
  document.getElementById("lang-label").textContent = t("language");
  document.querySelector(".skip").textContent = t("skip");
}

let rendering = 0;

async function route() {
  const ticket = ++rendering;
  let page = "key";
  let content;
  try {
    await node.ledgerInfo();
    if (app.key) await loadAccounts();
    const [name, arg] = currentPage();
    page = name;
    renderNav();
    content = await PAGES[page](arg);
  } catch (e) {
    renderNav();
    content = [heading(t(`nav.${page}`)), errorBox(e, () => route())];
  }
  if (ticket !== rendering) return;
  document.title = `Cercle · ${t(`nav.${page}`)}`;
  main().replaceChildren(...content.flat().filter(Boolean));
  main().setAttribute("data-page", page);
  main().querySelector("h1")?.focus();
}

async function start() {
  setLang(initialLang());
  const select = document.getElementById("lang");
  select.value = lang();
  select.addEventListener("change", () => {
    setLang(select.value);
    route();
  });
  window.addEventListener("hashchange", () => route());
  try {
    app.key = await loadKey();
    node.key = app.key;
    await route();
  } catch (e) {
    main().replaceChildren(heading("Cercle"), errorBox(e, () => route()));
  }
}

start();
