//! Helpers the `audit` and `proof` commands share: a progress line and counts. The node's
//! verifiable-history calls (tree head, proofs, entry stream) are on `client::Node`.

/// A `\r` progress line on stderr, drawn only when stderr is a terminal.
pub struct ProgressLine {
    enabled: bool,
    drawn: bool,
}

impl ProgressLine {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        ProgressLine { enabled: std::io::stderr().is_terminal(), drawn: false }
    }

    /// Redraws the line: `what: done / total (percent)`.
    pub fn show(&mut self, what: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        eprint!("\r{what}: {} / {} entries ({percent}%)   ", thousands(done), thousands(total));
        self.drawn = true;
    }

    /// Erases the line.
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// `1 entry`, `1,234 entries`.
pub fn entries(n: u64) -> String {
    format!("{} {}", thousands(n), if n == 1 { "entry" } else { "entries" })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    cercle_core::format_minor(i64::try_from(n).unwrap_or(i64::MAX), 0)
}
