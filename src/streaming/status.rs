//! How an exec or attach ends, told on the error stream: a Kubernetes `Status` object from
//! protocol v4 on, a plain message before it.

use serde_json::json;

/// The end of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code.
    Exited(i32),
    /// The session failed before or without an exit code.
    Failed(String),
}

/// The error stream's content for `outcome` under a protocol of version `version`
/// (v4 and v5: JSON `Status`; v2, v3: a message on failure, nothing on success).
pub fn encode(outcome: &Outcome, version: u8) -> Vec<u8> {
    if version < 4 {
        return match outcome {
            Outcome::Exited(0) => Vec::new(),
            Outcome::Exited(code) => {
                format!("command terminated with non-zero exit code: exit code {code}").into_bytes()
            }
            Outcome::Failed(msg) => msg.clone().into_bytes(),
        };
    }
    let v = match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            // `reason` is the JSON name of a StatusCause's type.
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
        }),
    };
    v.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_the_kubernetes_form() {
        let ok: serde_json::Value =
            serde_json::from_slice(&encode(&Outcome::Exited(0), 4)).expect("json");
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value =
            serde_json::from_slice(&encode(&Outcome::Exited(3), 5)).expect("json");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert!(encode(&Outcome::Exited(0), 3).is_empty());
    }
}
