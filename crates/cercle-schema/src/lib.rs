//! The protobuf schema of signed operation bodies, generated from
//! `proto/cercle/v1/operation.proto`: the bytes a signer produces with any protobuf
//! library, and the core decodes.
//!
//! Architecture invariant: messages only, no logic. The core (`cercle_core::body`) is the
//! one place that turns these into domain operations and back; nothing else uses them.

#![allow(clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/cercle.v1.rs"));
