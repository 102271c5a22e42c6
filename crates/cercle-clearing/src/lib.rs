//! Optimal multilateral set-off of obligations, and the certificate that proves it optimal.
