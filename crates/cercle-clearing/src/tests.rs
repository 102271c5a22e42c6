//! The solver against an exhaustive reference on small networks, and the certificate
//! checks against altered results.

use proptest::prelude::*;

use super::*;

/// The best set-off by enumerating every integer clearing (tiny amounts only).
fn reference_setoff(firm_count: u32, pairs: &[Pair]) -> i128 {
    let mut best = 0;
    let mut x = vec![0i128; pairs.len()];
    loop {
        let mut net = vec![0i128; firm_count as usize];
        for (p, v) in pairs.iter().zip(&x) {
            net[p.debtor as usize] -= v;
            net[p.creditor as usize] += v;
        }
        if net.iter().all(|v| *v == 0) {
            best = best.max(x.iter().sum());
        }
        // Next assignment, odometer style.
        let mut i = 0;
        loop {
            if i == x.len() {
                return best;
            }
            if x[i] < pairs[i].amount {
                x[i] += 1;
                break;
            }
            x[i] = 0;
            i += 1;
        }
    }
}

fn pairs_strategy() -> impl Strategy<Value = (u32, Vec<Pair>)> {
    (2u32..=5).prop_flat_map(|n| {
        let pair = (0..n, 0..n, 0i128..=3).prop_map(|(d, c, amount)| (d, c, amount));
        (Just(n), proptest::collection::vec(pair, 0..=7)).prop_map(|(n, raw)| {
            let pairs = aggregate(raw.into_iter().map(|(d, c, a)| (d, c, a as i64)));
            (n, pairs.into_iter().filter(|p| p.amount > 0 && p.amount <= 3).collect())
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn setoff_is_optimal_and_certified((n, pairs) in pairs_strategy()) {
        let s = solve_setoff(n, &pairs).unwrap();
        prop_assert_eq!(check_setoff(n, &pairs, &s), Ok(()));
        prop_assert_eq!(s.cleared.iter().sum::<i128>(), reference_setoff(n, &pairs));
    }

    #[test]
    fn credit_stage_respects_headroom_and_is_certified(
        (n, pairs) in pairs_strategy(),
        room in proptest::collection::vec((0i128..=4, 0i128..=4), 5),
    ) {
        let headroom: Vec<Headroom> =
            room[..n as usize].iter().map(|&(pay_max, receive_max)| Headroom { pay_max, receive_max }).collect();
        let w = solve_with_credit(n, &pairs, &headroom).unwrap();
        prop_assert_eq!(check_with_credit(n, &pairs, &headroom, &w), Ok(()));
        prop_assert_eq!(w.payment.iter().sum::<i128>(), 0);
        for (p, h) in w.payment.iter().zip(&headroom) {
            prop_assert!(*p <= h.pay_max && -*p <= h.receive_max);
        }
        // Never less than set-off alone.
        let s = solve_setoff(n, &pairs).unwrap();
        prop_assert!(w.cleared.iter().sum::<i128>() >= s.cleared.iter().sum::<i128>());
    }
}

fn triangle() -> (u32, Vec<Pair>) {
    (
        3,
        vec![
            Pair { debtor: 0, creditor: 1, amount: 100 },
            Pair { debtor: 1, creditor: 2, amount: 70 },
            Pair { debtor: 2, creditor: 0, amount: 50 },
        ],
    )
}

#[test]
fn a_triangle_clears_its_smallest_side() {
    let (n, pairs) = triangle();
    let s = solve_setoff(n, &pairs).unwrap();
    assert_eq!(s.cleared, vec![50, 50, 50]);
    assert_eq!(check_setoff(n, &pairs, &s), Ok(()));
}

#[test]
fn altered_results_are_refused() {
    let (n, pairs) = triangle();
    let s = solve_setoff(n, &pairs).unwrap();
    let check = |change: &dyn Fn(&mut SetOff), needle: &str| {
        let mut bad = s.clone();
        change(&mut bad);
        let err = check_setoff(n, &pairs, &bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    };
    check(&|b| b.cleared.iter_mut().for_each(|c| *c -= 1), "reduced cost");
    check(&|b| b.cleared[0] -= 1, "flow in minus flow out");
    check(&|b| b.cleared.iter_mut().for_each(|c| *c += 60), "exceeds the capacity");
    check(&|b| b.potential[0] += 3, "reduced cost");
    check(&|b| b.potential.pop().map_or((), |_| ()), "the potential has 2 entries");
}

#[test]
fn large_amounts_do_not_overflow() {
    let big = i64::MAX;
    let raw: Vec<(u32, u32, i64)> = (0..8).flat_map(|_| [(0, 1, big), (1, 2, big), (2, 0, big)]).collect();
    let pairs = aggregate(raw);
    assert_eq!(pairs[0].amount, 8 * i128::from(big));
    let s = solve_setoff(3, &pairs).unwrap();
    assert_eq!(s.cleared, vec![8 * i128::from(big); 3]);
    assert_eq!(check_setoff(3, &pairs, &s), Ok(()));
}

#[test]
fn bad_input_is_named() {
    let err = solve_setoff(2, &[Pair { debtor: 0, creditor: 5, amount: 1 }]).unwrap_err();
    assert_eq!(err, SolveError::FirmOutOfRange { pair: 0, firm: 5, firm_count: 2 });
    assert!(solve_setoff(2, &[Pair { debtor: 0, creditor: 1, amount: -1 }]).is_err());
    assert_eq!(solve_setoff(0, &[]).unwrap(), SetOff { cleared: vec![], potential: vec![] });
}
