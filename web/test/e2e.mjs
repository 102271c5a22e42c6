// The browser app in a real Chromium against a real node (no mock), driven by
// playwright-core. Run by tests/tests/web.rs, which starts the node, makes the data
// directory and checks the log afterwards with `cercle audit verify`.
//
// Environment: CERCLE_URL (the node), CERCLE_BIN (the `cercle` wallet), CERCLE_ADMIN_KEY,
// CERCLE_BOB_KEY (a key file made by `cercle keygen`, imported in the browser),
// CERCLE_SCREENSHOTS (a directory for the screenshots), CHROMIUM (the browser).
// Prints one JSON line on success: the public keys of the firms.
//
// The administrator works in the browser too: it imports its `cercle keygen` key file,
// registers the firms (alice's key read from a picture of her key page's QR code),
// changes bob's limits, freezes and unfreezes him, reads the accounts overview, runs
// clearing (dry run, then the run) and computes the indicators.

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("CERCLE_URL");
const shots = env("CERCLE_SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const TIMEOUT_MS = 20_000;

function wallet(...args) {
  return execFileSync(env("CERCLE_BIN"), ["--node", url, ...args], { encoding: "utf8" });
}

/** axe-core on the page as it is: no serious or critical violation. */
async function accessible(page, what) {
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`),
    [],
    `accessibility of ${what}`,
  );
}

/**
 * Opens `route` (`#/route`), runs `then` (what makes the page show its content), checks
 * it with axe and saves `shot`-`lang`.png.
 */
async function visit(page, route, lang, { shot = route, then } = {}) {
  await open(page, route);
  if (then) await then();
  await accessible(page, `${shot} (${lang})`);
  await page.screenshot({ path: `${shots}/${shot}-${lang}.png`, fullPage: true });
}

/** What a page shows after its confirmation panel: axe, then a screenshot. */
async function photograph(page, shot) {
  await accessible(page, shot);
  await page.screenshot({ path: `${shots}/${shot}.png`, fullPage: true });
}

async function language(page, lang) {
  await page.getByTestId("lang").selectOption(lang);
  await page.locator(`html[lang="${lang}"]`).waitFor();
}

async function newContext(locale) {
  const context = await browser.newContext({ locale, acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  context.setDefaultTimeout(TIMEOUT_MS);
  return context;
}

/**
 * Waits until the accounts overview lists exactly `expected` (its count line can read the same
 * for the previous filter and the new one, so the rows themselves are awaited), then checks it.
 */
async function rowsAre(page, expected) {
  const rows = () => [...document.querySelectorAll('[data-testid="accounts-row"]')].map((r) => r.dataset.account);
  await page
    .waitForFunction((want) => JSON.stringify([...document.querySelectorAll('[data-testid="accounts-row"]')].map((r) => r.dataset.account)) === JSON.stringify(want), expected, { timeout: TIMEOUT_MS })
    .catch(() => {});
  assert.deepEqual(await page.evaluate(rows), expected);
}

/** Opens `#/route` and waits for its page (reloading when the address is already that). */
async function open(page, route) {
  const target = `${url}/#/${route}`;
  if (page.url() === target) await page.reload();
  else await page.goto(target);
  await page.locator(`main[data-page="${route.split("/")[0]}"] h1`).waitFor();
}

const scratch = mkdtempSync(join(tmpdir(), "cercle-e2e-"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const pages = [];
try {
  // Alice's bakery, in English: a key made in the browser.
  const en = await newContext("en-GB");
  const alice = await en.newPage();
  pages.push(["alice", alice]);
  alice.on("pageerror", (e) => console.error(`page error: ${e}`));
  await alice.goto(url);
  await alice.getByTestId("key-generate").waitFor();
  assert.equal(await alice.getByTestId("lang").inputValue(), "en");
  await accessible(alice, "key page without a key (en)");
  await alice.screenshot({ path: `${shots}/key-new-en.png`, fullPage: true });
  await alice.getByTestId("key-generate").click();
  const alicePubkey = (await alice.getByTestId("pubkey").textContent()).trim();
  assert.match(alicePubkey, /^[0-9a-f]{64}$/);
  await alice.getByTestId("no-account").waitFor();

  // The association's administrator, in the browser too: it imports the key file
  // `cercle keygen` made, and the app knows it for an administrator's (ListKeyAccounts).
  const adminContext = await newContext("en-GB");
  const admin = await adminContext.newPage();
  pages.push(["admin", admin]);
  admin.on("pageerror", (e) => console.error(`page error: ${e}`));
  await admin.goto(url);
  await admin.getByTestId("key-import").setInputFiles(env("CERCLE_ADMIN_KEY"));
  await admin.locator('main[data-page="accounts"] h1').waitFor();
  await admin.getByTestId("accounts-count").filter({ hasText: "of 0 that match" }).waitFor();

  // It registers alice with the key her browser made, read from a picture of its QR code.
  const qrPicture = join(scratch, "alice-qr.png");
  await alice.locator(".qr").screenshot({ path: qrPicture });
  await admin.getByTestId("accounts-register").click();
  await admin.getByTestId("register-handle").fill("alice-bakery");
  await admin.getByTestId("register-name").fill("Alice's Bakery");
  await admin.getByTestId("register-scan").setInputFiles(qrPicture);
  await admin.getByText("Public key read from the QR code.").waitFor();
  assert.equal(await admin.getByTestId("register-pubkey").inputValue(), alicePubkey);
  // An amount that reads two ways is refused before anything is signed.
  await admin.getByTestId("register-credit-limit").fill("125,50");
  await admin.getByTestId("register-submit").click();
  await admin.getByTestId("error").filter({ hasText: "ambiguous" }).waitFor();
  assert.equal(await admin.getByTestId("admin-confirm").count(), 0);
  await admin.getByTestId("register-credit-limit").fill("1000");
  await admin.getByTestId("register-submit").click();
  const registration = admin.getByTestId("confirmation");
  await registration.waitFor();
  for (const text of ["alice-bakery", "Alice's Bakery", alicePubkey, "1,000.00 CHW"]) {
    assert.ok((await registration.textContent()).includes(text), `the registration shows ${text}`);
  }
  await photograph(admin, "register-confirm-en");
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").filter({ hasText: "alice-bakery is registered" }).waitFor();
  await photograph(admin, "register-done-en");

  // Bob's key, made by `cercle keygen`, is pasted, with his profile.
  const bobPubkey = wallet("pubkey", "--key", env("CERCLE_BOB_KEY")).trim();
  await open(admin, "register");
  await admin.getByTestId("register-handle").fill("bob-mill");
  await admin.getByTestId("register-pubkey").fill(bobPubkey);
  await admin.getByTestId("register-credit-limit").fill("500");
  await admin.getByTestId("register-sector").fill("10.71");
  await admin.getByTestId("register-commune").fill("34145");
  await admin.getByTestId("register-submit").click();
  await admin.getByTestId("confirmation").filter({ hasText: "10.71 · 34145" }).waitFor();
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").filter({ hasText: "bob-mill is registered" }).waitFor();
  await open(admin, "accounts");
  await rowsAre(admin, ["alice-bakery", "bob-mill"]);

  // The key finds its account by itself (ListKeyAccounts).
  await alice.getByTestId("key-check").click();
  await alice.getByRole("heading", { name: "Overview of alice-bakery" }).waitFor();
  await alice.getByTestId("balance").filter({ hasText: "0.00 CHW" }).waitFor();
  await alice.getByTestId("proof-result").filter({ hasText: "now remembers the ledger's signed state" }).waitFor();
  await alice.goto(`${url}/#/key`);
  assert.equal(await alice.getByTestId("account").inputValue(), "alice-bakery");

  // An ambiguous amount is refused before anything is signed.
  await alice.goto(`${url}/#/pay`);
  await alice.getByTestId("pay-to").fill("bob-mill");
  await alice.getByTestId("pay-amount").fill("10,00");
  await alice.getByTestId("pay-submit").click();
  await alice.getByTestId("error").filter({ hasText: "ambiguous" }).waitFor();
  assert.equal(await alice.getByTestId("pay-confirm").count(), 0);

  // The firm pays: it sees what it signs, then the receipt.
  await alice.getByTestId("pay-amount").fill("125.50");
  await alice.getByTestId("pay-memo").fill("flour, week 47");
  await alice.getByTestId("pay-submit").click();
  const confirmation = alice.getByTestId("confirmation");
  await confirmation.waitFor();
  for (const text of ["alice-bakery", "bob-mill", "125.50 CHW", "flour, week 47"]) {
    assert.ok((await confirmation.textContent()).includes(text), `the confirmation shows ${text}`);
  }
  await accessible(alice, "pay confirmation (en)");
  await alice.screenshot({ path: `${shots}/pay-confirm-en.png`, fullPage: true });
  await alice.getByTestId("pay-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "-125.50 CHW" }).waitFor();
  await alice.screenshot({ path: `${shots}/pay-receipt-en.png`, fullPage: true });

  // The node accepts a payment but its answer is lost: the page says so, and the retry
  // sends the same envelope, which the ledger recognises (one operation id, paid once).
  await alice.goto(`${url}/#/pay`);
  await alice.getByTestId("pay-to").fill("bob-mill");
  await alice.getByTestId("pay-amount").fill("10");
  await alice.getByTestId("pay-submit").click();
  const submitted = [];
  await alice.route(
    "**/cercle.v1.Ledger/Submit",
    async (route) => {
      submitted.push(route.request().postDataBuffer());
      await route.fetch();
      await route.abort("connectionreset");
    },
    { times: 1 },
  );
  await alice.getByTestId("pay-confirm").click();
  await alice.getByTestId("error").filter({ hasText: "connection lost" }).waitFor();
  alice.on("request", (r) => r.url().endsWith("/Submit") && submitted.push(r.postDataBuffer()));
  await alice.getByTestId("retry").click();
  await alice.getByTestId("receipt").filter({ hasText: "already had this payment" }).waitFor();
  assert.equal(submitted.length, 2);
  assert.deepEqual(submitted[1], submitted[0], "the retry sends the very same signed envelope");
  await alice.goto(`${url}/#/overview`);
  await alice.getByTestId("balance").filter({ hasText: "-135.50 CHW" }).waitFor();
  // The history this browser saw is a prefix of the ledger now (a consistency proof).
  await alice.getByTestId("proof-result").filter({ hasText: "extend, unchanged, the" }).waitFor();

  // Over the credit limit: the ledger refuses, and says why with both numbers.
  await alice.goto(`${url}/#/pay`);
  await alice.getByTestId("pay-to").fill("bob-mill");
  await alice.getByTestId("pay-amount").fill("900");
  await alice.getByTestId("pay-submit").click();
  await alice.getByTestId("limit-check").waitFor();
  await alice.getByTestId("pay-confirm").click();
  const refusal = alice.getByTestId("error");
  await refusal.filter({ hasText: "credit limit exceeded" }).waitFor();
  const refusalText = await refusal.textContent();
  assert.ok(refusalText.includes("CREDIT_LIMIT_EXCEEDED"), refusalText);
  assert.ok(refusalText.includes("-1,035.50 CHW") && refusalText.includes("-1,000.00 CHW"), refusalText);
  await accessible(alice, "pay refusal (en)");
  await alice.screenshot({ path: `${shots}/pay-refused-en.png`, fullPage: true });

  // Bob's mill, in French: a key file made by `cercle keygen`, imported.
  const fr = await newContext("fr-FR");
  const bob = await fr.newPage();
  pages.push(["bob", bob]);
  bob.on("pageerror", (e) => console.error(`page error: ${e}`));
  await bob.goto(url);
  await bob.getByTestId("key-import").waitFor();
  assert.equal(await bob.getByTestId("lang").inputValue(), "fr");
  await accessible(bob, "key page without a key (fr)");
  await bob.screenshot({ path: `${shots}/key-new-fr.png`, fullPage: true });
  await bob.getByTestId("key-import").setInputFiles(env("CERCLE_BOB_KEY"));
  await bob.getByRole("heading", { name: "Vue d’ensemble de bob-mill" }).waitFor();
  await bob.getByTestId("balance").filter({ hasText: "135,50 CHW" }).waitFor();
  await bob.goto(`${url}/#/key`);
  assert.equal((await bob.getByTestId("pubkey").textContent()).trim(), bobPubkey);
  assert.equal(await bob.getByTestId("account").inputValue(), "bob-mill");

  // An invoice: issued by bob, accepted and paid by alice.
  await bob.goto(`${url}/#/invoices`);
  await bob.getByTestId("invoice-payer").fill("alice-bakery");
  await bob.getByTestId("invoice-amount").fill("40");
  await bob.getByTestId("invoice-reference").fill("F-2026-117");
  await bob.getByTestId("invoice-issue").click();
  await bob.getByTestId("op-confirm").click();
  await bob.getByTestId("receipt").waitFor();
  await bob.getByTestId("invoices-reload").click();
  await bob.getByTestId("invoice-row").filter({ hasText: "émise" }).waitFor();

  await alice.goto(`${url}/#/invoices`);
  await alice.getByTestId("invoice-row").filter({ hasText: "issued" }).waitFor();
  await alice.getByTestId("invoice-accept").click();
  await alice.getByTestId("op-confirm").click();
  await alice.getByTestId("receipt").waitFor();
  await alice.getByTestId("invoices-reload").click();
  await alice.getByTestId("invoice-row").filter({ hasText: "accepted" }).waitFor();
  await alice.getByTestId("invoice-pay").click();
  await alice.getByTestId("op-confirm").click();
  await alice.getByTestId("receipt").waitFor();
  await alice.getByTestId("invoices-reload").click();
  await alice.getByTestId("invoice-row").filter({ hasText: "settled" }).waitFor();
  await alice.goto(`${url}/#/overview`);
  await alice.getByTestId("balance").filter({ hasText: "-175.50 CHW" }).waitFor();

  // History: filtered by counterparty, and downloaded as CSV.
  await alice.goto(`${url}/#/history`);
  await alice.getByTestId("history-row").first().waitFor();
  await alice.getByTestId("history-with").fill("bob");
  const rows = await alice.getByTestId("history-row").count();
  assert.equal(rows, 5, "the payments, and the invoice issued, accepted and paid");
  const [download] = await Promise.all([alice.waitForEvent("download"), alice.getByTestId("history-csv").click()]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.ok(csv.startsWith("sequence,timestamp_utc,kind,counterparty,amount,balance_after,memo\r\n"), csv);
  assert.ok(csv.includes(",transfer,bob-mill,-125.50,-125.50,\"flour, week 47\"\r\n"), csv);

  // The administrator, in French now: it registers carol, whose key `cercle keygen` made.
  const carolKey = join(scratch, "carol.key");
  wallet("keygen", "--out", carolKey);
  const carolPubkey = wallet("pubkey", "--key", carolKey).trim();
  await language(admin, "fr");
  await open(admin, "register");
  await admin.getByTestId("register-handle").fill("carol-market");
  await admin.getByTestId("register-name").fill("Marché de Carole");
  await admin.getByTestId("register-pubkey").fill(carolPubkey);
  await admin.getByTestId("register-max-balance").fill("2 000,00");
  await admin.getByTestId("register-submit").click();
  await admin.getByTestId("confirmation").filter({ hasText: "2\u202f000,00 CHW" }).waitFor();
  await photograph(admin, "register-confirm-fr");
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").filter({ hasText: "carol-market est inscrite" }).waitFor();

  // Bob's credit limit: `125,50` reads two ways and is refused; `1 250,50` reads one way.
  await open(admin, "manage/bob-mill");
  await admin.getByTestId("manage-credit-limit").fill("125,50");
  await admin.getByTestId("manage-limits-reason").fill("revue annuelle");
  await admin.getByTestId("manage-limits-submit").click();
  await admin.getByTestId("error").filter({ hasText: "ambigu" }).waitFor();
  assert.equal(await admin.getByTestId("admin-confirm").count(), 0);
  await admin.getByTestId("manage-credit-limit").fill("1 250,50");
  await admin.getByTestId("manage-limits-submit").click();
  const change = admin.getByTestId("confirmation");
  await change.waitFor();
  for (const text of ["bob-mill", "1\u202f250,50 CHW", "500,00 CHW", "revue annuelle"]) {
    assert.ok((await change.textContent()).includes(text), `the limit change shows ${text}`);
  }
  await photograph(admin, "manage-confirm-fr");
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").waitFor();
  await admin.getByTestId("admin-reload").click();
  await admin.getByTestId("credit-limit").filter({ hasText: "1\u202f250,50 CHW" }).waitFor();

  // Bob frozen during a dispute: alice can no longer pay him, and the overview says so.
  await admin.getByTestId("manage-status-reason").fill("litige sur la facture 17");
  await admin.getByTestId("manage-freeze").click();
  await admin.getByTestId("confirmation").filter({ hasText: "litige sur la facture 17" }).waitFor();
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").waitFor();
  await admin.getByTestId("admin-reload").click();
  await admin.getByTestId("status").filter({ hasText: "gelé" }).waitFor();
  await photograph(admin, "manage-frozen-fr");
  await open(alice, "pay");
  await alice.getByTestId("pay-to").fill("bob-mill");
  await alice.getByTestId("pay-amount").fill("1");
  await alice.getByTestId("pay-submit").click();
  await alice.getByTestId("pay-confirm").click();
  await alice.getByTestId("error").filter({ hasText: "ACCOUNT_FROZEN" }).waitFor();
  await open(admin, "accounts");
  await admin.getByTestId("accounts-status").selectOption("2");
  await admin.getByTestId("accounts-filter").click();
  await admin.getByTestId("accounts-count").filter({ hasText: "sur 1 qui" }).waitFor();
  await rowsAre(admin, ["bob-mill"]);
  await admin.getByTestId("accounts-status").selectOption("0");
  await admin.getByTestId("accounts-sign").selectOption("1");
  await admin.getByTestId("accounts-filter").click();
  await admin.getByTestId("accounts-count").filter({ hasText: "sur 1 qui" }).waitFor();
  await rowsAre(admin, ["alice-bakery"]);
  await admin.getByTestId("accounts-sign").selectOption("0");
  await admin.getByTestId("accounts-filter").click();
  await admin.getByTestId("accounts-count").filter({ hasText: "sur 3 qui" }).waitFor();
  // Unfrozen from the overview's link to his page.
  await admin.getByTestId("accounts-row").filter({ hasText: "bob-mill" }).getByTestId("account-manage").click();
  await admin.locator('main[data-page="manage"] h1').waitFor();
  await admin.getByTestId("manage-status-reason").fill("litige réglé");
  await admin.getByTestId("manage-unfreeze").click();
  await admin.getByTestId("confirmation").filter({ hasText: "Dégeler bob-mill" }).waitFor();
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("receipt").waitFor();
  await admin.getByTestId("admin-reload").click();
  await admin.getByTestId("status").filter({ hasText: "actif" }).waitFor();

  // Bob pays carol, in French: `5,00` reads two ways; then what he signs, the receipt, and
  // a refusal over his new limit, with the ledger's numbers in French.
  await open(bob, "pay");
  await bob.getByTestId("pay-to").fill("carol-market");
  await bob.getByTestId("pay-amount").fill("5,00");
  await bob.getByTestId("pay-submit").click();
  await bob.getByTestId("error").filter({ hasText: "ambigu" }).waitFor();
  await bob.getByTestId("pay-amount").fill("5");
  await bob.getByTestId("pay-memo").fill("légumes");
  await bob.getByTestId("pay-submit").click();
  await bob.getByTestId("confirmation").filter({ hasText: "5,00 CHW" }).waitFor();
  await photograph(bob, "pay-confirm-fr");
  await bob.getByTestId("pay-confirm").click();
  await bob.getByTestId("receipt").filter({ hasText: "170,50 CHW" }).waitFor();
  await photograph(bob, "pay-receipt-fr");
  await open(bob, "pay");
  await bob.getByTestId("pay-to").fill("carol-market");
  await bob.getByTestId("pay-amount").fill("5 000");
  await bob.getByTestId("pay-submit").click();
  await bob.getByTestId("limit-check").waitFor();
  await bob.getByTestId("pay-confirm").click();
  await bob.getByTestId("error").filter({ hasText: "CREDIT_LIMIT_EXCEEDED" }).waitFor();
  await photograph(bob, "pay-refused-fr");

  // Two invoices the other way round make a loop: alice invoices bob 30, bob invoices
  // alice 20, and each accepts.
  await open(alice, "invoices");
  await alice.getByTestId("invoice-payer").fill("bob-mill");
  await alice.getByTestId("invoice-amount").fill("30");
  await alice.getByTestId("invoice-reference").fill("A-2026-9");
  await alice.getByTestId("invoice-issue").click();
  await alice.getByTestId("op-confirm").click();
  await alice.getByTestId("receipt").waitFor();
  await open(bob, "invoices");
  await bob.getByTestId("invoice-row").filter({ hasText: "A-2026-9" }).getByTestId("invoice-accept").click();
  await bob.getByTestId("op-confirm").click();
  await bob.getByTestId("receipt").waitFor();
  await bob.getByTestId("invoice-payer").fill("alice-bakery");
  await bob.getByTestId("invoice-amount").fill("20");
  await bob.getByTestId("invoice-reference").fill("F-2026-118");
  await bob.getByTestId("invoice-issue").click();
  await bob.getByTestId("op-confirm").click();
  await bob.getByTestId("receipt").waitFor();
  await open(alice, "invoices");
  await alice.getByTestId("invoice-row").filter({ hasText: "F-2026-118" }).getByTestId("invoice-accept").click();
  await alice.getByTestId("op-confirm").click();
  await alice.getByTestId("receipt").waitFor();

  // Clearing, in English: the dry run, then the run, confirmed.
  await language(admin, "en");
  await open(admin, "clearing");
  await admin.getByTestId("clearing-dry-run").click();
  const plan = admin.getByTestId("clearing-plan");
  await plan.waitFor();
  for (const text of ["2 among 2 firms", "50.00 CHW", "40.00 CHW (80%)"]) {
    assert.ok((await plan.textContent()).includes(text), `the dry run shows ${text}: ${await plan.textContent()}`);
  }
  assert.equal(await admin.getByTestId("clearing-firm").count(), 2);
  await photograph(admin, "clearing-plan-en");
  await admin.getByTestId("clearing-reason").fill("November");
  await admin.getByTestId("clearing-run").click();
  const run = admin.getByTestId("confirmation");
  await run.waitFor();
  for (const text of ["set-off only", "November", "would clear 40.00 CHW of 50.00 CHW"]) {
    assert.ok((await run.textContent()).includes(text), `the clearing run shows ${text}`);
  }
  await photograph(admin, "clearing-confirm-en");
  await admin.getByTestId("admin-confirm").click();
  await admin.getByTestId("clearing-result").filter({ hasText: "40.00 CHW" }).waitFor();
  await photograph(admin, "clearing-done-en");
  await open(alice, "invoices");
  await alice.getByTestId("invoice-row").filter({ hasText: "A-2026-9" }).filter({ hasText: "10.00 CHW" }).waitFor();
  await alice.locator('[data-testid="invoice-row"][data-state="4"]').filter({ hasText: "F-2026-118" }).waitFor();
  await open(admin, "clearing");
  await admin.getByTestId("clearing-dry-run").click();
  await admin.getByTestId("clearing-plan").filter({ hasText: "No firm would change." }).waitFor();

  // The indicators over the whole year: the turnover is the payments, 175.50 + 5.00.
  await open(admin, "indicators");
  await admin.getByTestId("indicators-by").selectOption("all");
  await admin.getByTestId("indicators-compute").click();
  await admin.getByTestId("indicators-period").first().waitFor();
  assert.equal(await admin.getByTestId("indicators-period").count(), 1);
  const figures = await admin.getByTestId("indicators-table").textContent();
  assert.ok(figures.includes("180.50 CHW"), figures);
  assert.equal(await admin.getByTestId("indicators-chart").count(), 4);

  // Alice's signed statement, checked in her browser, downloaded, and checked again by the
  // wallet against the node key.
  await open(alice, "statement");
  await alice.getByTestId("statement-get").click();
  const summary = alice.getByTestId("statement-summary");
  await summary.filter({ hasText: "valid, provisional" }).waitFor();
  assert.ok((await summary.textContent()).includes("-175.50 CHW"), await summary.textContent());
  const [statementDownload] = await Promise.all([alice.waitForEvent("download"), alice.getByTestId("statement-download").click()]);
  const statementFile = join(scratch, "alice-statement.json");
  await statementDownload.saveAs(statementFile);
  const nodeKey = JSON.parse(wallet("--json", "info")).node_key;
  const verdict = wallet("statement", "verify", statementFile, "--node-key", nodeKey);
  assert.match(verdict, /VALID \(provisional/, verdict);
  assert.match(verdict, /closing balance\s+-175\.50 CHW/, verdict);
  assert.match(verdict, /11 entries/, verdict);

  // Every page, in both languages, passes axe and is photographed.
  const showStatement = (page) => async () => {
    await page.getByTestId("statement-get").click();
    await page.getByTestId("statement-summary").waitFor();
  };
  for (const [page, lang] of [[alice, "en"], [bob, "fr"]]) {
    for (const name of ["overview", "pay", "history", "invoices", "keys", "key"]) await visit(page, name, lang);
    await visit(page, "statement", lang, { then: showStatement(page) });
  }
  for (const lang of ["en", "fr"]) {
    await language(admin, lang);
    await visit(admin, "accounts", lang, { shot: "admin-accounts" });
    await visit(admin, "register", lang, { shot: "admin-register" });
    await visit(admin, "manage/bob-mill", lang, { shot: "admin-manage" });
    await visit(admin, "clearing", lang, {
      shot: "admin-clearing",
      then: async () => {
        await admin.getByTestId("clearing-dry-run").click();
        await admin.getByTestId("clearing-plan").waitFor();
      },
    });
    await visit(admin, "indicators", lang, {
      shot: "admin-indicators",
      then: async () => {
        await admin.getByTestId("indicators-compute").click();
        await admin.getByTestId("indicators-table").waitFor();
      },
    });
    await visit(admin, "key", lang, { shot: "admin-key" });
  }

  // The language switch: French for alice, amounts in the French format.
  await alice.goto(`${url}/#/overview`);
  await alice.getByTestId("lang").selectOption("fr");
  await alice.getByTestId("balance").filter({ hasText: "-175,50 CHW" }).waitFor();
  assert.equal(await alice.locator("html").getAttribute("lang"), "fr");
  await alice.getByRole("link", { name: "Historique" }).waitFor();
  await alice.getByTestId("lang").selectOption("en");
  await alice.getByTestId("balance").filter({ hasText: "-175.50 CHW" }).waitFor();

  // An employee's key: a payer with caps, added by the association with the wallet (an
  // administrator adding a firm's key). Its payment above the cap is held; alice, an owner,
  // sees what it reserves and approves it from her overview.
  const clerkKey = join(scratch, "alice-clerk.key");
  wallet("keygen", "--out", clerkKey);
  const clerkPubkey = wallet("pubkey", "--key", clerkKey).trim();
  wallet("--key", env("CERCLE_ADMIN_KEY"), "key", "add", "alice-bakery", "--pubkey", clerkPubkey, "--role", "payer", "--per-transfer-cap", "50", "--daily-cap", "200");
  const clerkContext = await newContext("en-GB");
  const clerk = await clerkContext.newPage();
  pages.push(["clerk", clerk]);
  clerk.on("pageerror", (e) => console.error(`page error: ${e}`));
  await clerk.goto(url);
  await clerk.getByTestId("key-import").setInputFiles(clerkKey);
  await clerk.getByRole("heading", { name: "Overview of alice-bakery" }).waitFor();
  await open(clerk, "pay");
  await clerk.getByTestId("pay-to").fill("bob-mill");
  await clerk.getByTestId("pay-amount").fill("60");
  await clerk.getByTestId("pay-memo").fill("oven repair");
  await clerk.getByTestId("pay-submit").click();
  await clerk.getByTestId("pay-confirm").click();
  const held = clerk.getByTestId("receipt");
  await held.filter({ hasText: "waits for an owner" }).waitFor();
  const pendingId = (await held.textContent()).match(/payment (\d+) waits/)[1];
  await photograph(clerk, "pay-held-en");
  await open(clerk, "overview");
  await clerk.getByTestId("pending-row").filter({ hasText: "waiting for an owner" }).waitFor();
  assert.equal(await clerk.getByTestId("pending-approve").count(), 0, "a payer key cannot approve");

  await open(alice, "overview");
  await alice.getByTestId("reserved").filter({ hasText: "60.00 CHW" }).waitFor();
  // Headroom: 1,000.00 - 175.50 owed - 60.00 reserved.
  await alice.getByTestId("headroom").filter({ hasText: "764.50 CHW" }).waitFor();
  const row = alice.getByTestId("pending-row");
  assert.equal(await row.getAttribute("data-pending"), pendingId);
  for (const text of ["bob-mill", "60.00 CHW", "oven repair"]) {
    assert.ok((await row.textContent()).includes(text), `the pending payment shows ${text}`);
  }
  await photograph(alice, "overview-pending-en");
  await alice.getByTestId("pending-approve").click();
  const approval = alice.getByTestId("confirmation");
  await approval.waitFor();
  for (const text of ["bob-mill", "60.00 CHW", pendingId]) {
    assert.ok((await approval.textContent()).includes(text), `the approval shows ${text}`);
  }
  await alice.getByTestId("pending-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "-235.50 CHW" }).waitFor();
  await open(alice, "overview");
  await alice.getByTestId("balance").filter({ hasText: "-235.50 CHW" }).waitFor();
  assert.equal(await alice.getByTestId("pending-row").count(), 0);
  assert.equal(await alice.getByTestId("reserved").count(), 0);
  await open(alice, "history");
  await alice.getByText("payment waiting for approval").first().waitFor();
  await alice.getByText("payment approved").first().waitFor();
  await open(alice, "overview");

  // The firm's keys, from alice's owner browser: her key and the clerk's payer key with its
  // caps; a bad public key refused before anything is signed; a payer key added with caps;
  // carol's key, already on her own account, refused by the ledger, then added as a viewer
  // once alice allows the sharing, and removed.
  await open(alice, "keys");
  const keyRow = (page, pubkey) => page.locator(`[data-testid="keys-row"][data-pubkey="${pubkey}"]`);
  await keyRow(alice, alicePubkey).getByTestId("keys-mine").waitFor();
  assert.equal(await keyRow(alice, alicePubkey).getAttribute("data-role"), "owner");
  assert.equal(await keyRow(alice, alicePubkey).getByTestId("keys-remove").count(), 0, "her last owner key has no remove button");
  assert.ok((await keyRow(alice, alicePubkey).textContent()).includes("last owner key"));
  const clerkCells = await keyRow(alice, clerkPubkey).locator("th, td").allTextContents();
  // What it paid today: its payments were held, and an approved one is the owner's.
  assert.deepEqual(clerkCells.slice(1, 5), ["payer", "50.00 CHW", "200.00 CHW", "0.00 CHW"], `${clerkCells}`);
  assert.equal(await keyRow(alice, clerkPubkey).locator("code").getAttribute("title"), clerkPubkey, "the whole key, on the shortened one");

  const driverKey = join(scratch, "alice-driver.key");
  wallet("keygen", "--out", driverKey);
  const driverPubkey = wallet("pubkey", "--key", driverKey).trim();
  await alice.getByTestId("keys-pubkey").fill(driverPubkey.slice(0, 60));
  await alice.getByTestId("keys-submit").click();
  await alice.getByTestId("error").filter({ hasText: "This public key has 60 hexadecimal digits; a public key has exactly 64." }).waitFor();
  await alice.getByTestId("keys-pubkey").fill(`${driverPubkey.slice(0, 20)}O${driverPubkey.slice(21)}`);
  await alice.getByTestId("keys-submit").click();
  await alice.getByTestId("error").filter({ hasText: "'O' (character 21) is neither" }).waitFor();
  assert.equal(await alice.getByTestId("keys-confirm").count(), 0, "nothing to sign");
  await photograph(alice, "keys-bad-key-en");

  await alice.getByTestId("keys-pubkey").fill(driverPubkey);
  await alice.getByTestId("keys-role-select").selectOption("payer");
  await alice.getByTestId("keys-per-transfer").fill("25,00");
  await alice.getByTestId("keys-daily").fill("1,000.00");
  await alice.getByTestId("keys-submit").click();
  await alice.getByTestId("error").filter({ hasText: "Cap per payment: '25,00' is ambiguous" }).waitFor();
  assert.equal(await alice.getByTestId("keys-confirm").count(), 0, "nothing to sign");
  await alice.getByTestId("keys-per-transfer").fill("100");
  await alice.getByTestId("keys-submit").click();
  const addition = alice.getByTestId("confirmation");
  await addition.filter({ hasText: driverPubkey }).waitFor();
  for (const text of ["alice-bakery", "Add a key", "payer", "100.00 CHW", "1,000.00 CHW"]) {
    assert.ok((await addition.textContent()).includes(text), `the new key's confirmation shows ${text}`);
  }
  assert.equal(await alice.evaluate(() => document.activeElement?.id), "confirm-title", "the focus is on what will be signed");
  await photograph(alice, "keys-confirm-en");
  await alice.getByTestId("keys-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: `Key ${driverPubkey.slice(0, 8)}…${driverPubkey.slice(-4)} is added as payer` }).waitFor();
  await photograph(alice, "keys-added-en");
  await alice.getByTestId("keys-reload").click();
  await keyRow(alice, driverPubkey).waitFor();
  const driverCells = await keyRow(alice, driverPubkey).locator("th, td").allTextContents();
  assert.deepEqual(driverCells.slice(1, 5), ["payer", "100.00 CHW", "1,000.00 CHW", "0.00 CHW"], `${driverCells}`);
  await photograph(alice, "keys-owner-en");

  await alice.getByTestId("keys-pubkey").fill(carolPubkey);
  await alice.getByTestId("keys-role-select").selectOption("viewer");
  await alice.getByTestId("keys-submit").click();
  await alice.getByTestId("confirmation").filter({ hasText: carolPubkey }).waitFor();
  await alice.getByTestId("keys-confirm").click();
  await alice.getByTestId("error").filter({ hasText: "KEY_ALREADY_REGISTERED" }).waitFor();
  await photograph(alice, "keys-shared-offer-en");
  await alice.getByTestId("keys-share").click();
  const shared = alice.getByTestId("confirmation").filter({ hasText: "allowed: it will sign for both accounts" });
  await shared.waitFor();
  assert.ok((await shared.textContent()).includes(carolPubkey));
  await alice.getByTestId("keys-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "is added as viewer" }).waitFor();
  await alice.getByTestId("keys-reload").click();
  await alice.locator(`[data-testid="keys-row"][data-pubkey="${carolPubkey}"][data-role="viewer"]`).waitFor();
  await keyRow(alice, carolPubkey).getByTestId("keys-remove").click();
  const removal = alice.getByTestId("confirmation").filter({ hasText: "Remove a key" });
  await removal.waitFor();
  assert.ok((await removal.textContent()).includes(carolPubkey));
  await photograph(alice, "keys-remove-en");
  await alice.getByTestId("keys-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "is removed: it no longer signs for the account" }).waitFor();
  await alice.getByTestId("keys-reload").click();
  await keyRow(alice, carolPubkey).waitFor({ state: "detached" });
  await keyRow(alice, driverPubkey).waitFor();
  const keysNow = JSON.parse(wallet("--key", env("CERCLE_ADMIN_KEY"), "--json", "key", "list", "alice-bakery")).keys;
  assert.deepEqual(
    keysNow.map((k) => [k.public_key, k.role, k.per_transfer_cap_minor, k.daily_cap_minor]),
    [[alicePubkey, "owner", undefined, undefined], [clerkPubkey, "payer", 5000, 20000], [driverPubkey, "payer", 10000, 100000]],
  );

  // The clerk's payer key sees the keys, without the controls, and is told why.
  await open(clerk, "keys");
  await keyRow(clerk, driverPubkey).waitFor();
  await keyRow(clerk, clerkPubkey).getByTestId("keys-mine").waitFor();
  await clerk.getByTestId("keys-owner-only").filter({ hasText: "Only an owner key adds or removes keys. This browser's key is a payer key" }).waitFor();
  assert.equal(await clerk.getByTestId("keys-submit").count(), 0);
  assert.equal(await clerk.getByTestId("keys-remove").count(), 0);
  await photograph(clerk, "keys-payer-en");
  await open(alice, "overview");

  // Fees, set with the wallet while the pages are open: the association's own account, a
  // 1% transfer levy split between payer and payee (the odd unit on the payer), and a
  // demurrage of 1% a month above 100.00.
  const feeKey = join(scratch, "association.key");
  wallet("keygen", "--out", feeKey);
  const feePubkey = wallet("pubkey", "--key", feeKey).trim();
  const asAdmin = (...args) => wallet("--key", env("CERCLE_ADMIN_KEY"), ...args);
  asAdmin("admin", "register", "association", "--pubkey", feePubkey, "--name", "The association");
  asAdmin("admin", "fees", "set", "--account", "association", "--transfer-levy-bp", "100", "--levy-on", "split", "--demurrage-bp", "100", "--demurrage-above", "100", "--reason", "budget 2027");

  // The clerk's 70.00 is held: the confirmation says the levy is paid at its approval, and
  // nothing moves yet.
  await open(clerk, "pay");
  await clerk.getByTestId("pay-to").fill("bob-mill");
  await clerk.getByTestId("pay-amount").fill("70");
  await clerk.getByTestId("pay-submit").click();
  await clerk.getByTestId("pay-levy").filter({ hasText: "when it is approved" }).waitFor();
  await clerk.getByTestId("pay-confirm").click();
  const heldAgain = clerk.getByTestId("receipt").filter({ hasText: "waits for an owner" });
  await heldAgain.waitFor();
  const secondPendingId = (await heldAgain.textContent()).match(/payment (\d+) waits/)[1];
  await open(alice, "overview");
  await alice.getByTestId("reserved").filter({ hasText: "70.00 CHW" }).waitFor();
  await alice.getByTestId("balance").filter({ hasText: "-235.50 CHW" }).waitFor();

  // Alice pays bob 80.50: before signing she sees the levy (0.81 CHW, she pays 0.41), her
  // balance after it, and her headroom less what the held payment reserves.
  await open(alice, "pay");
  await alice.getByTestId("pay-to").fill("bob-mill");
  await alice.getByTestId("pay-amount").fill("80.50");
  await alice.getByTestId("pay-memo").fill("bread rolls");
  await alice.getByTestId("pay-submit").click();
  const levyLine = alice.getByTestId("pay-levy");
  await levyLine.waitFor();
  assert.equal(
    (await levyLine.textContent()).trim(),
    "Levy: 0.81 CHW to association (100 bp of 80.50 CHW, split: you pay 0.41 CHW, bob-mill pays 0.40 CHW). In all, 80.91 CHW leaves your account.",
  );
  assert.equal(
    (await alice.getByTestId("limit-check").textContent()).trim(),
    "Your balance after it: -316.41 CHW. Your credit limit lets it go down to -1,000.00 CHW, less 70.00 CHW reserved by payments waiting for approval: no lower than -930.00 CHW.",
  );
  await photograph(alice, "pay-confirm-levy-en");
  await alice.getByTestId("pay-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "-316.41 CHW" }).waitFor();
  assert.equal(
    (await alice.getByTestId("receipt-levy").textContent()).trim(),
    "With your share of the levy, 0.41 CHW to association, your balance moved by -80.91 CHW.",
  );
  await photograph(alice, "pay-receipt-levy-en");

  // Its approval pays the levy in force now: 0.70 CHW, 0.35 each.
  await open(alice, "overview");
  await alice.locator(`[data-testid="pending-row"][data-pending="${secondPendingId}"]`).getByTestId("pending-approve").click();
  await alice.getByTestId("confirmation").getByTestId("pay-levy").filter({ hasText: "0.70 CHW to association" }).waitFor();
  assert.ok((await alice.getByTestId("pay-levy").textContent()).includes("you pay 0.35 CHW, bob-mill pays 0.35 CHW"));
  await alice.getByTestId("pending-confirm").click();
  await alice.getByTestId("receipt").filter({ hasText: "-386.76 CHW" }).waitFor();

  // A month's demurrage: bob is above 100.00 (380.25: 2.80 CHW), carol is not.
  const lastMonth = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
  asAdmin("admin", "fees", "charge", "--period", lastMonth);

  // Alice's history shows each payment's whole movement, the levy named; so does the CSV.
  await open(alice, "history");
  const levied = alice.getByTestId("history-row").filter({ hasText: "levy 0.41 CHW" });
  await levied.waitFor();
  for (const text of ["payment", "bob-mill", "-80.91 CHW", "-316.41 CHW", "bread rolls"]) {
    assert.ok((await levied.textContent()).includes(text), `the levied payment's row shows ${text}: ${await levied.textContent()}`);
  }
  const approved = alice.getByTestId("history-row").filter({ hasText: "levy 0.35 CHW" });
  for (const text of ["payment approved", "-70.35 CHW", "-386.76 CHW"]) {
    assert.ok((await approved.textContent()).includes(text), `the approval's row shows ${text}: ${await approved.textContent()}`);
  }
  await photograph(alice, "history-levy-en");
  const [leviedCsv] = await Promise.all([alice.waitForEvent("download"), alice.getByTestId("history-csv").click()]);
  const leviedText = readFileSync(await leviedCsv.path(), "utf8");
  assert.ok(leviedText.includes(",transfer,bob-mill,-80.91,-316.41,bread rolls · levy 0.41 CHW\r\n"), leviedText);
  assert.ok(leviedText.includes(`,approvePending,bob-mill,-70.35,-386.76,payment waiting ${secondPendingId} · levy 0.35 CHW\r\n`), leviedText);

  // Bob, in French: he received the amounts less his shares, and paid the demurrage.
  await open(bob, "history");
  const received = bob.getByTestId("history-row").filter({ hasText: "prélèvement 0,40 CHW" });
  await received.waitFor();
  assert.ok((await received.textContent()).includes("80,10 CHW"), await received.textContent());
  const receivedApproval = bob.getByTestId("history-row").filter({ hasText: "prélèvement 0,35 CHW" });
  assert.ok((await receivedApproval.textContent()).includes("69,65 CHW"), await receivedApproval.textContent());
  const charged = bob.getByTestId("history-row").filter({ hasText: `cotisations de ${lastMonth}` });
  for (const text of ["cotisations prélevées", "-2,80 CHW", "377,45 CHW"]) {
    assert.ok((await charged.textContent()).includes(text), `bob's charge shows ${text}: ${await charged.textContent()}`);
  }
  await photograph(bob, "history-levy-fr");
  // What bob would pay carol, in French, reviewed and not signed.
  await open(bob, "pay");
  await bob.getByTestId("pay-to").fill("carol-market");
  await bob.getByTestId("pay-amount").fill("10");
  await bob.getByTestId("pay-submit").click();
  const levyFr = bob.getByTestId("pay-levy");
  await levyFr.waitFor();
  assert.equal(
    (await levyFr.textContent()).trim(),
    "Prélèvement : 0,10 CHW pour association (100 points de base de 10,00 CHW, partagé : vous payez 0,05 CHW, carol-market paie 0,05 CHW). Au total, 10,05 CHW sortent de votre compte.",
  );
  assert.ok((await bob.getByTestId("limit-check").textContent()).includes("Votre solde après : 367,40 CHW"));
  await photograph(bob, "pay-confirm-levy-fr");
  await bob.getByRole("button", { name: "Modifier" }).click();
  assert.equal(await bob.getByTestId("confirmation").count(), 0);

  // The association's account, from its own key: each levy received, named by the payment
  // it was levied on, and the month's fees.
  const feeContext = await newContext("en-GB");
  const association = await feeContext.newPage();
  pages.push(["association", association]);
  association.on("pageerror", (e) => console.error(`page error: ${e}`));
  await association.goto(url);
  await association.getByTestId("key-import").setInputFiles(feeKey);
  await association.getByRole("heading", { name: "Overview of association" }).waitFor();
  await open(association, "history");
  const levies = association.getByTestId("history-row").filter({ hasText: "levy on a transfer from alice-bakery to bob-mill" });
  await levies.nth(1).waitFor();
  assert.equal(await levies.count(), 2);
  for (const [i, amount, after] of [[0, "0.81 CHW", "0.81 CHW"], [1, "0.70 CHW", "1.51 CHW"]]) {
    const cells = await levies.nth(i).locator("td").allTextContents();
    assert.deepEqual([cells[2], cells[3], cells[4], cells[5]], ["transfer levy", "", amount, after], `levy ${i}: ${cells}`);
  }
  const fees = association.getByTestId("history-row").filter({ hasText: `periodic fees of ${lastMonth} from the members` });
  const feeCells = await fees.locator("td").allTextContents();
  assert.deepEqual([feeCells[2], feeCells[4], feeCells[5]], ["fees charged", "2.80 CHW", "4.31 CHW"], `${feeCells}`);
  await photograph(association, "history-fees-en");
  await open(alice, "overview");

  // A history that does not extend what this browser saw is reported as rewritten. The
  // overview's own check must have finished first: it saves the tree head it checked.
  await alice.getByTestId("proof-result").waitFor();
  await alice.evaluate(() => {
    const slot = Object.keys(localStorage).find((k) => k.startsWith("cercle.treeHead."));
    const saved = JSON.parse(localStorage.getItem(slot));
    localStorage.setItem(slot, JSON.stringify({ ...saved, rootHash: "00".repeat(32) }));
  });
  await alice.getByTestId("proof-check").click();
  await alice.getByTestId("proof-result").filter({ hasText: "History rewritten" }).waitFor();

  console.log(JSON.stringify({ alice_pubkey: alicePubkey, bob_pubkey: bobPubkey, carol_pubkey: carolPubkey, clerk_pubkey: clerkPubkey, driver_pubkey: driverPubkey, fee_period: lastMonth }));
} catch (e) {
  // What each page showed when the scenario failed, for the test's output and artefacts.
  for (const [name, page] of pages) {
    await page.screenshot({ path: `${shots}/failure-${name}.png`, fullPage: true }).catch(() => {});
    console.error(`${name}'s page at ${page.url()}:\n${await page.locator("main").innerText().catch(() => "?")}`);
  }
  throw e;
} finally {
  await browser.close();
}
