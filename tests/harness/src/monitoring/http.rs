//! The service's kind of error answer, on the harness's HTTP plumbing ([`crate::wire`]).

use serde_json::json;

pub(super) use crate::wire::{Answer, Request};

/// A fault as the service writes it: `{"type", "code", "message", "details"}`.
pub(super) fn fault(status: u16, kind: &str, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({ "type": kind, "code": status, "message": message, "details": "" }),
    )
}
