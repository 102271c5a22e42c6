// Amounts: parsing what a person types into minor units (BigInt), and formatting minor
// units in the page's language.
//
// The rule is the wallet's (crates/cercle-core/src/amount.rs, `parse_major`): an amount
// that a reasonable person could read two ways is refused with both readings, never
// guessed (`10,00`, `1,5`, `1,000`, `1.250`), so a payment is never off by a factor of 100.
// In French, the locale's decimal comma is also accepted where it reads one way only:
// after digits grouped by three with a space, an apostrophe or points (`1 250,50`,
// `1.250,50`, as Intl writes French amounts), or followed by more than three digits.
// `amount_vectors.json` in crates/cercle-core holds the cases; the Rust and the JS tests
// both run them.

/** Characters that may separate groups of three digits, besides the comma. */
const GROUP_SEPARATORS = ["'", "\u2019", " ", "\u00a0", "\u202f"];

/** A refusal: `kind` names the case (the Rust `AmountError` variant), `params` its numbers. */
export class AmountError extends Error {
  constructor(kind, params) {
    super(`${kind}: ${JSON.stringify(params)}`);
    this.kind = kind;
    this.params = params;
  }
}

const isDigits = (s) => s.length > 0 && /^[0-9]+$/.test(s);

function whole(digits) {
  const trimmed = digits.replace(/^0+/, "");
  return trimmed === "" ? "0" : trimmed;
}

function plain({ int, frac }) {
  return frac === "" ? int : `${int}.${frac}`;
}

/** The decimal reading written so that it reads one way: never a point and three digits. */
function unambiguous({ int, frac }) {
  if (frac.length !== 3) return plain({ int, frac });
  const trimmed = frac.replace(/0+$/, "");
  if (trimmed.length < 3) return plain({ int, frac: trimmed });
  return `${plain({ int, frac })}0`;
}

function groupedDigits(intPart, separator) {
  const groups = intPart.split(separator);
  const first = groups.shift();
  if (first.length < 1 || first.length > 3 || !isDigits(first)) return null;
  let digits = first;
  for (const g of groups) {
    if (g.length !== 3 || !isDigits(g)) return null;
    digits += g;
  }
  return digits;
}

function integerDigits(text, intPart) {
  if (intPart === "") throw new AmountError("NotDecimal", { text });
  if (isDigits(intPart)) return intPart;
  const separator = [...intPart].find((c) => !/[0-9]/.test(c));
  if (separator !== "," && !GROUP_SEPARATORS.includes(separator)) {
    throw new AmountError("NotDecimal", { text });
  }
  if ([...intPart].some((c) => !/[0-9]/.test(c) && c !== separator)) {
    throw new AmountError("BadGrouping", { text });
  }
  const digits = groupedDigits(intPart, separator);
  if (digits === null) throw new AmountError("BadGrouping", { text });
  return digits;
}

const count = (text, c) => text.split(c).length - 1;

/** The digits of `text` (trimmed, unsigned), as the wallet reads them. */
function splitDigits(text, exponent) {
  const points = count(text, ".");
  const commas = count(text, ",");
  const comma = text.lastIndexOf(",");
  const point = text.indexOf(".");
  if (comma >= 0 && point >= 0 && point < comma && comma + 1 < text.length && isDigits(text.slice(comma + 1))) {
    // `1.250,50`: points between thousands and a decimal comma.
    const suggestion = { int: text.slice(0, comma).replace(/[^0-9]/g, ""), frac: text.slice(comma + 1) };
    throw new AmountError("DecimalComma", { text, suggestion: plain(suggestion) });
  }
  if (points > 1) throw new AmountError("BadGrouping", { text });
  const [intPart, fracPart] = point >= 0 ? [text.slice(0, point), text.slice(point + 1)] : [text, null];
  if (fracPart !== null && !isDigits(fracPart)) throw new AmountError("NotDecimal", { text });
  if (points === 0 && commas === 1 && ![...intPart].some((c) => GROUP_SEPARATORS.includes(c))) {
    // A lone comma: a decimal comma, or a thousands comma?
    const [before, after] = intPart.split(",");
    if (isDigits(before) && isDigits(after)) {
      const asDecimal = { int: before, frac: after };
      if (after.length <= 3) {
        throw new AmountError("Ambiguous", { text, first: unambiguous(asDecimal), second: whole(before + after) });
      }
      throw new AmountError("DecimalComma", { text, suggestion: plain(asDecimal) });
    }
  }
  const int = integerDigits(text, intPart);
  const frac = fracPart ?? "";
  if (frac.length === 3 && isDigits(intPart) && intPart.length <= 3) {
    // `1.250`: a decimal point, or a point between thousands?
    if (frac.replace(/0+$/, "").length > exponent) {
      throw new AmountError("TooManyDecimals", { text, given: 3, exponent, thousands: whole(int + frac) });
    }
    throw new AmountError("Ambiguous", { text, first: unambiguous({ int, frac }), second: whole(int + frac) });
  }
  return { int, frac };
}

/** The French reading of a decimal comma that reads one way only, or null. */
function frenchDecimalComma(text) {
  const comma = text.lastIndexOf(",");
  if (comma < 0 || count(text, ",") !== 1) return null;
  const intPart = text.slice(0, comma);
  const frac = text.slice(comma + 1);
  if (!isDigits(frac) || intPart === "") return null;
  if (frac.length > 3 && isDigits(intPart)) return { int: intPart, frac };
  const separator = [...intPart].find((c) => !/[0-9]/.test(c));
  if (separator === undefined || !(GROUP_SEPARATORS.includes(separator) || separator === ".")) return null;
  if ([...intPart].some((c) => !/[0-9]/.test(c) && c !== separator)) return null;
  const int = groupedDigits(intPart, separator);
  return int === null ? null : { int, frac };
}

const I64_MAX = 9223372036854775807n;

/**
 * Parses a non-negative amount in major units into minor units (a BigInt), as the wallet
 * does; with `lang` "fr", the unambiguous decimal comma too. Throws `AmountError`.
 */
export function parseAmount(input, exponent, lang = "en") {
  const text = input.trim();
  if (text === "") throw new AmountError("Empty", {});
  if (/^[-+\u2212]/.test(text)) throw new AmountError("Signed", { text });
  const digits = (lang === "fr" && frenchDecimalComma(text)) || splitDigits(text, exponent);
  const { int, frac } = digits;
  if (frac.length > exponent) throw new AmountError("TooManyDecimals", { text, given: frac.length, exponent });
  const minor = BigInt(int) * 10n ** BigInt(exponent) + BigInt((frac + "0".repeat(exponent)).slice(0, exponent) || "0");
  if (minor > I64_MAX) throw new AmountError("OutOfRange", { text });
  return minor;
}

/** Minor units as a decimal string with a point, for Intl: `-125050n`, 2 → "-1250.50". */
export function decimalString(minor, exponent) {
  const negative = minor < 0n;
  const magnitude = (negative ? -minor : minor).toString().padStart(exponent + 1, "0");
  const int = magnitude.slice(0, magnitude.length - exponent);
  const frac = magnitude.slice(magnitude.length - exponent);
  return `${negative ? "-" : ""}${int}${exponent > 0 ? `.${frac}` : ""}`;
}

/** Minor units in the language's format: 125050n, 2, "fr" → "1 250,50". */
export function formatAmount(minor, exponent, lang) {
  const locale = lang === "fr" ? "fr-FR" : "en-GB";
  const format = new Intl.NumberFormat(locale, { minimumFractionDigits: exponent, maximumFractionDigits: exponent });
  // Intl reads a decimal string exactly (no float on the way).
  return format.format(decimalString(BigInt(minor), exponent));
}
