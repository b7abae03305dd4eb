//! docs/traceability.md must be exactly what `crid-conformance traceability` generates from
//! the catalogue, so the matrix people read never lags behind the cases.

use crid_conformance::cases::catalogue;
use crid_conformance::report::traceability::{REGENERATE, to_traceability};

#[test]
fn checked_in_traceability_matrix_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/traceability.md");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `{REGENERATE}`",
            path.display()
        )
    });
    let generated = to_traceability(&catalogue());
    if checked_in != generated {
        let first_diff = checked_in
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  checked in: {a}\n  generated:  {b}", i + 1))
            .unwrap_or_else(|| {
                format!(
                    "lengths differ: {} lines checked in, {} generated",
                    checked_in.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "docs/traceability.md is stale (the catalogue changed).\n{first_diff}\n\
             Regenerate it from the workspace root with:\n  {REGENERATE}"
        );
    }
}
