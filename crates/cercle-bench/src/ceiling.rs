//! The ceiling: how many strict ed25519 verifications per second this machine does on all
//! its cores with no I/O. The node verifies every envelope it accepts, so this bounds what
//! any node on this machine can accept per second.

use std::time::{Duration, Instant};

use cercle_core::sign::{self, op_message};
use cercle_core::{LedgerId, PublicKey};

use crate::plan::Signed;

pub struct Ceiling {
    pub threads: usize,
    pub verifications: u64,
    /// Signatures that did not verify: must be zero.
    pub failures: u64,
    pub wall: Duration,
}

impl Ceiling {
    pub fn per_sec(&self) -> f64 {
        self.verifications as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Verifies at least `count` signatures from `signed` (cycling over them), one thread per
/// core, with `cercle_core::sign::verify` exactly as the node calls it. The messages are
/// built before the clock starts.
pub fn measure(ledger_id: &LedgerId, signed: &[Signed], count: usize) -> Ceiling {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let prepared: Vec<(PublicKey, Vec<u8>, [u8; 64])> = signed
        .iter()
        .cycle()
        .take(count.max(signed.len()))
        .map(|s| {
            let key = PublicKey(
                s.envelope.signer.as_slice().try_into().expect("the bench signs with 32-byte keys"),
            );
            let signature =
                s.envelope.signature.as_slice().try_into().expect("the bench makes 64-byte signatures");
            (key, op_message(ledger_id, &s.envelope.body), signature)
        })
        .collect();
    let chunk_len = prepared.len().div_ceil(threads).max(1);
    let started = Instant::now();
    let failures: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = prepared
            .chunks(chunk_len)
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().filter(|(key, msg, sig)| sign::verify(key, msg, sig).is_err()).count() as u64
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a verifying thread panicked")).sum()
    });
    Ceiling { threads, verifications: prepared.len() as u64, failures, wall: started.elapsed() }
}
