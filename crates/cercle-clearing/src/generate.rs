//! Seeded generator of realistic invoice networks, for tests and the benchmark.
//!
//! The shape follows what studies of real invoice data report (Fleischman and Dini 2021 on
//! Slovenia): a scale-free network, many small firms and a few large ones, built by preferential
//! attachment (a firm that already trades a lot is more likely to get the next invoice); trade
//! flows mostly down a value chain (each firm has a tier, and the downstream firm usually owes the
//! upstream one) with enough exceptions to close many cycles; invoice amounts log-normal-ish.
//!
//! The generator uses its own small PRNG (SplitMix64) and integer arithmetic only, so a seed
//! gives the same network on every platform and with every dependency version.

use crate::Headroom;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub firms: u32,
    pub obligations: u32,
    pub seed: u64,
}

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), by multiply-shift; the bias is below 2^-32 for the
    /// bounds used here.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// Tiers of the value chain: 0 is raw materials, the last is retail.
const TIERS: u64 = 5;
/// Out of 100 obligations, how many run down the value chain (downstream owes upstream); the
/// others go either way and close cycles.
const DOWNSTREAM_PERCENT: u64 = 70;
/// Out of 100 picks of a firm, how many are by preferential attachment.
const PREFERENTIAL_PERCENT: u64 = 80;

/// An invoice network: (debtor, creditor, amount_minor) with firms in `0..spec.firms`, no firm
/// owing itself, amounts from 1.00 to about 2,000,000.00 (minor units, two decimals) with a
/// median around 1,500.00. Empty when there are fewer than two firms.
pub fn invoices(spec: &Spec) -> Vec<(u32, u32, i64)> {
    if spec.firms < 2 {
        return Vec::new();
    }
    let mut rng = Rng::new(spec.seed);
    let firms = u64::from(spec.firms);
    let tier = |firm: u32| {
        let mut r = Rng::new(spec.seed ^ u64::from(firm).wrapping_mul(0x2545_f491_4f6c_dd1d));
        r.below(TIERS)
    };
    // Every end of every obligation so far: a uniform pick from it is a pick proportional to
    // degree, which is preferential attachment.
    let mut ends: Vec<u32> = Vec::with_capacity(2 * spec.obligations as usize);
    let pick = |rng: &mut Rng, ends: &[u32]| {
        if !ends.is_empty() && rng.chance(PREFERENTIAL_PERCENT, 100) {
            ends[rng.below(ends.len() as u64) as usize]
        } else {
            rng.below(firms) as u32
        }
    };
    let mut out = Vec::with_capacity(spec.obligations as usize);
    while out.len() < spec.obligations as usize {
        let a = pick(&mut rng, &ends);
        let b = pick(&mut rng, &ends);
        if a == b {
            continue;
        }
        let (debtor, creditor) = if rng.chance(DOWNSTREAM_PERCENT, 100) && tier(a) != tier(b) {
            if tier(a) > tier(b) { (a, b) } else { (b, a) }
        } else if rng.chance(1, 2) {
            (a, b)
        } else {
            (b, a)
        };
        ends.push(debtor);
        ends.push(creditor);
        out.push((debtor, creditor, amount(&mut rng)));
    }
    out
}

/// A log-normal-ish amount in minor units: a mantissa in 100..200 times 2^k, with k the sum of
/// four uniform draws in 0..=5 (roughly normal, mean 10).
fn amount(rng: &mut Rng) -> i64 {
    let mantissa = 100 + rng.below(100) as i64;
    let k: u64 = (0..4).map(|_| rng.below(6)).sum();
    mantissa << k
}

/// Headroom for stage 2: each firm may pay into and receive from the circuit up to a share
/// (0 to 1/4, by firm) of its turnover in `obligations`, as a credit limit and a balance cap
/// proportionate to its size would allow.
pub fn headroom(firm_count: u32, obligations: &[(u32, u32, i64)], seed: u64) -> Vec<Headroom> {
    let mut turnover = vec![0i128; firm_count as usize];
    for &(d, c, amount) in obligations {
        for firm in [d, c] {
            if let Some(t) = turnover.get_mut(firm as usize) {
                *t += i128::from(amount);
            }
        }
    }
    let mut rng = Rng::new(seed);
    turnover
        .into_iter()
        .map(|t| {
            let pay_max = t * i128::from(rng.below(5)) / 16;
            let receive_max = t * i128::from(rng.below(5)) / 16;
            Headroom { pay_max, receive_max }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_and_well_formed() {
        let spec = Spec { firms: 500, obligations: 5_000, seed: 7 };
        let a = invoices(&spec);
        assert_eq!(a, invoices(&spec));
        assert_ne!(a, invoices(&Spec { seed: 8, ..spec }));
        assert_eq!(a.len(), 5_000);
        assert!(a.iter().all(|&(d, c, x)| d != c && d < 500 && c < 500 && (100..200 << 20).contains(&x)));
        assert!(invoices(&Spec { firms: 1, obligations: 10, seed: 1 }).is_empty());
    }

    #[test]
    fn degrees_are_skewed() {
        let spec = Spec { firms: 2_000, obligations: 20_000, seed: 1 };
        let mut degree = vec![0u32; 2_000];
        for (d, c, _) in invoices(&spec) {
            degree[d as usize] += 1;
            degree[c as usize] += 1;
        }
        degree.sort_unstable();
        let median = degree[1_000];
        let top = degree[1_999];
        // Average degree 20: a scale-free network has a hub far above it and a median below.
        assert!(median < 20 && top > 20 * 10, "median {median}, top {top}");
    }
}
