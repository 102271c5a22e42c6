// The transfer levy as the ledger computes it (crates/cercle-core/src/fees.rs,
// `FeeSchedule::levy`), so the pay confirmation shows before signing what the payment will
// cost, to the minor unit.
//
// The schedule is the node's `LedgerInfo.fees` (absent: no fee). In exact integers (BigInt,
// never a float): `levy = floor((amount × bp + 5000) / 10000)`, rounded half up; split, the
// payee pays `floor(levy / 2)` and the payer the rest, so the odd unit falls on the payer.
// No levy on a transfer to or from the association's own account. A payment held for an
// owner's approval pays none while it waits: its approval pays the levy then in force.

const BASIS_POINTS_PER_UNIT = 10_000n;

/** `amount × bp / 10000`, rounded half up to the minor unit (`fees::levy_minor`). */
export function levyMinor(amountMinor, bp) {
  return (BigInt(amountMinor) * BigInt(bp) + BASIS_POINTS_PER_UNIT / 2n) / BASIS_POINTS_PER_UNIT;
}

/**
 * The levy on a transfer of `amountMinor` (positive) from `payer` to `payee` under `fees`
 * (the wire's `FeeSchedule`, or undefined): `{ payerMinor, payeeMinor, totalMinor }`, all
 * 0n when there is none.
 */
export function levy(fees, payer, payee, amountMinor) {
  const none = { payerMinor: 0n, payeeMinor: 0n, totalMinor: 0n };
  if (!fees || fees.transferLevyBp === 0 || payer === fees.account || payee === fees.account) return none;
  const total = levyMinor(amountMinor, fees.transferLevyBp);
  switch (fees.levyOn) {
    case "payer":
      return { payerMinor: total, payeeMinor: 0n, totalMinor: total };
    case "payee":
      return { payerMinor: 0n, payeeMinor: total, totalMinor: total };
    case "split":
      // BigInt division truncates; the levy is never negative, so it is the floor.
      return { payerMinor: total - total / 2n, payeeMinor: total / 2n, totalMinor: total };
    default:
      // A node newer than this page: say nothing rather than a wrong number.
      throw new Error(`unknown levy_on "${fees.levyOn}"`);
  }
}
