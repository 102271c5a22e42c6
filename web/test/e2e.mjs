// The browser app in a real Chromium against a real node (no mock), driven by
// playwright-core. Run by tests/tests/web.rs, which starts the node, makes the data
// directory and checks the log afterwards with `cercle audit verify`.
//
// Environment: CERCLE_URL (the node), CERCLE_BIN (the `cercle` wallet), CERCLE_ADMIN_KEY,
// CERCLE_BOB_KEY (a key file made by `cercle keygen`, imported in the browser),
// CERCLE_SCREENSHOTS (a directory for the screenshots), CHROMIUM (the browser).
// Prints one JSON line on success: the public key made in the browser.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
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

function cli(...args) {
  return execFileSync(env("CERCLE_BIN"), ["--node", url, "--key", env("CERCLE_ADMIN_KEY"), ...args], { encoding: "utf8" });
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

async function visit(page, name, lang) {
  await page.goto(`${url}/#/${name}`);
  await page.locator(`main[data-page="${name}"] h1`).waitFor();
  await accessible(page, `${name} (${lang})`);
  await page.screenshot({ path: `${shots}/${name}-${lang}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const pages = [];
try {
  // Alice's bakery, in English: a key made in the browser.
  const en = await browser.newContext({ locale: "en-GB", acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  en.setDefaultTimeout(TIMEOUT_MS);
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

  // The association registers both firms with the real wallet.
  const bobPubkey = execFileSync(env("CERCLE_BIN"), ["pubkey", "--key", env("CERCLE_BOB_KEY")], { encoding: "utf8" }).trim();
  cli("admin", "register", "alice-bakery", "--pubkey", alicePubkey, "--name", "Alice's Bakery", "--credit-limit", "1000");
  cli("admin", "register", "bob-mill", "--pubkey", bobPubkey, "--credit-limit", "500");

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
  const fr = await browser.newContext({ locale: "fr-FR", acceptDownloads: true, viewport: { width: 1100, height: 800 } });
  fr.setDefaultTimeout(TIMEOUT_MS);
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

  // Every page, in both languages, passes axe and is photographed.
  for (const [page, lang] of [[alice, "en"], [bob, "fr"]]) {
    for (const name of ["overview", "pay", "history", "invoices", "key"]) await visit(page, name, lang);
  }

  // The language switch: French for alice, amounts in the French format.
  await alice.goto(`${url}/#/overview`);
  await alice.getByTestId("lang").selectOption("fr");
  await alice.getByTestId("balance").filter({ hasText: "-175,50 CHW" }).waitFor();
  assert.equal(await alice.locator("html").getAttribute("lang"), "fr");
  await alice.getByRole("link", { name: "Historique" }).waitFor();
  await alice.getByTestId("lang").selectOption("en");
  await alice.getByTestId("balance").filter({ hasText: "-175.50 CHW" }).waitFor();

  // A history that does not extend what this browser saw is reported as rewritten.
  await alice.evaluate(() => {
    const slot = Object.keys(localStorage).find((k) => k.startsWith("cercle.treeHead."));
    const saved = JSON.parse(localStorage.getItem(slot));
    localStorage.setItem(slot, JSON.stringify({ ...saved, rootHash: "00".repeat(32) }));
  });
  await alice.getByTestId("proof-check").click();
  await alice.getByTestId("proof-result").filter({ hasText: "History rewritten" }).waitFor();

  console.log(JSON.stringify({ alice_pubkey: alicePubkey, bob_pubkey: bobPubkey }));
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
