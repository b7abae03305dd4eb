//! The run's figures (requests per RPC, per code, per mutation; duration) and its wrong
//! answers, grouped so that one defect reads as one line with its count and an example.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use tonic::Code;

use super::streams::Check;

/// A wrong answer.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The RPC.
    pub rpc: String,
    /// The mutation kind (or `concurrent-duplicate`).
    pub mutation: String,
    /// The target kind.
    pub target: String,
    /// The probe in full.
    pub probe: String,
    /// The code received, or `no answer`.
    pub got: String,
    /// Its message (cut to 300 bytes).
    pub message: String,
    /// The codes that would have been right.
    pub expected: Vec<Code>,
    /// The clause.
    pub clause: String,
}

/// Counts of one run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// RPC to (requests, wrong answers).
    pub per_rpc: BTreeMap<String, (u64, u64)>,
    /// RPC to code to answers.
    pub per_rpc_code: BTreeMap<String, BTreeMap<String, u64>>,
    /// Code (or `no answer`) to answers.
    pub per_code: BTreeMap<String, u64>,
    /// Mutation kind to requests.
    pub per_mutation: BTreeMap<String, u64>,
    /// Every wrong answer.
    pub findings: Vec<Finding>,
    /// Requests sent.
    pub total: u64,
    /// The slowest answer.
    pub slowest: Duration,
}

/// `s` cut to `n` bytes (at a character boundary), with a note of its full size.
pub fn cut(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

/// A code's name as gRPC spells it in the figures.
pub fn code_name(code: Code) -> String {
    format!("{code:?}")
}

impl Tally {
    /// Counts one answer (`got`: a code name or `no answer`); `finding` when it was wrong.
    pub fn record(
        &mut self,
        rpc: &str,
        mutation: &str,
        got: &str,
        latency: Duration,
        finding: Option<Finding>,
    ) {
        self.total += 1;
        let r = self.per_rpc.entry(rpc.to_owned()).or_default();
        r.0 += 1;
        if let Some(f) = finding {
            r.1 += 1;
            self.findings.push(f);
        }
        *self.per_code.entry(got.to_owned()).or_default() += 1;
        *self
            .per_rpc_code
            .entry(rpc.to_owned())
            .or_default()
            .entry(got.to_owned())
            .or_default() += 1;
        *self.per_mutation.entry(mutation.to_owned()).or_default() += 1;
        self.slowest = self.slowest.max(latency);
    }

    /// Wrong answers grouped by (RPC, mutation, target, code received): count and the
    /// first example.
    pub fn groups(&self) -> Vec<(usize, &Finding)> {
        let mut groups: BTreeMap<(&str, &str, &str, &str), (usize, &Finding)> = BTreeMap::new();
        for f in &self.findings {
            groups
                .entry((&f.rpc, &f.mutation, &f.target, &f.got))
                .or_insert((0, f))
                .0 += 1;
        }
        groups.into_values().collect()
    }
}

/// Everything a run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Who answered: `runtime_name runtime_version`.
    pub runtime: String,
    /// The endpoint.
    pub endpoint: String,
    /// The generator's seed.
    pub seed: u64,
    /// Generated requests asked for.
    pub generated: u64,
    /// The counts.
    pub tally: Tally,
    /// Wall time.
    pub duration: Duration,
    /// Pods and containers created by OK answers.
    pub created: (usize, usize),
    /// Objects listed that no answer reported created.
    pub leaked: Vec<String>,
    /// Objects that should exist and do not.
    pub lost: Vec<String>,
    /// What the run created and could not remove.
    pub left_behind: Vec<String>,
    /// Requests of the streaming checks (gRPC and HTTP).
    pub streaming: usize,
    /// Streaming, socket, liveness, log and canary checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// No wrong answer, nothing leaked, lost or left, every check held.
    pub fn passed(&self) -> bool {
        self.tally.findings.is_empty()
            && self.leaked.is_empty()
            && self.lost.is_empty()
            && self.left_behind.is_empty()
            && self.checks.iter().all(|c| c.passed)
    }

    /// The report as Markdown.
    pub fn render(&self) -> String {
        let t = &self.tally;
        let secs = self.duration.as_secs_f64();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "hostile: {} requests ({} generated, {} concurrent duplicates, {} streaming) against {} at {}, seed {}, in {:.1}s ({:.0} requests/s; slowest answer {:.2}s)",
            t.total + self.streaming as u64,
            self.generated,
            t.per_mutation
                .get("concurrent-duplicate")
                .copied()
                .unwrap_or(0),
            self.streaming,
            self.runtime,
            self.endpoint,
            self.seed,
            secs,
            (t.total + self.streaming as u64) as f64 / secs.max(0.001),
            t.slowest.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "objects: {} pods and {} containers created by OK answers; leaked {}, lost {}, left after clean-up {}",
            self.created.0,
            self.created.1,
            self.leaked.len(),
            self.lost.len(),
            self.left_behind.len()
        );
        for (what, list) in [
            ("leaked", &self.leaked),
            ("lost", &self.lost),
            ("left", &self.left_behind),
        ] {
            for o in list.iter().take(20) {
                let _ = writeln!(s, "  {what}: {o}");
            }
        }
        let _ = writeln!(
            s,
            "\n| RPC | requests | wrong | codes |\n|---|---:|---:|---|"
        );
        for (rpc, (n, wrong)) in &t.per_rpc {
            let codes: Vec<String> = t
                .per_rpc_code
                .get(rpc)
                .into_iter()
                .flatten()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(s, "| {rpc} | {n} | {wrong} | {} |", codes.join(", "));
        }
        let _ = writeln!(s, "\n| code | answers |\n|---|---:|");
        for (code, n) in &t.per_code {
            let _ = writeln!(s, "| {code} | {n} |");
        }
        let _ = writeln!(s, "\n| mutation | requests |\n|---|---:|");
        for (m, n) in &t.per_mutation {
            let _ = writeln!(s, "| {m} | {n} |");
        }
        let _ = writeln!(s, "\n| check | result | seen |\n|---|---|---|");
        for c in &self.checks {
            let verdict = if c.passed { "pass" } else { "FAIL" };
            let _ = writeln!(
                s,
                "| {} | {verdict} | {} |",
                c.name,
                c.detail.replace('|', "\\|")
            );
        }
        let groups = t.groups();
        if !groups.is_empty() {
            let _ = writeln!(
                s,
                "\n{} wrong answers in {} groups (RPC, mutation, target, code):",
                t.findings.len(),
                groups.len()
            );
            for (n, f) in groups {
                let expected: Vec<String> = f.expected.iter().map(|c| code_name(*c)).collect();
                let _ = writeln!(
                    s,
                    "- {n}× {} / {} / {}: got {}, expected {} ({})\n  e.g. {}\n  message: {}",
                    f.rpc,
                    f.mutation,
                    f.target,
                    f.got,
                    expected.join(" or "),
                    f.clause,
                    f.probe,
                    f.message
                );
            }
        }
        let _ = writeln!(
            s,
            "\nhostile: {}",
            if self.passed() { "passed" } else { "FAILED" }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rpc: &str, got: &str) -> Finding {
        Finding {
            rpc: rpc.into(),
            mutation: "huge-names".into(),
            target: "own".into(),
            probe: format!("{rpc} …"),
            got: got.into(),
            message: "m".into(),
            expected: vec![Code::Ok, Code::InvalidArgument],
            clause: "c".into(),
        }
    }

    #[test]
    fn wrong_answers_group_and_fail_the_report() {
        let mut t = Tally::default();
        t.record(
            "Version",
            "well-formed",
            "Ok",
            Duration::from_millis(2),
            None,
        );
        for _ in 0..3 {
            t.record(
                "RunPodSandbox",
                "huge-names",
                "Internal",
                Duration::from_millis(5),
                Some(finding("RunPodSandbox", "Internal")),
            );
        }
        assert_eq!(t.total, 4);
        assert_eq!(t.per_rpc["RunPodSandbox"], (3, 3));
        assert_eq!(t.per_code["Internal"], 3);
        assert_eq!(t.groups().len(), 1);
        assert_eq!(t.groups()[0].0, 3);
        let r = Report {
            tally: t,
            ..Report::default()
        };
        assert!(!r.passed());
        let text = r.render();
        assert!(
            text.contains(
                "3× RunPodSandbox / huge-names / own: got Internal, expected Ok or InvalidArgument"
            ),
            "{text}"
        );
        assert!(Report::default().passed());
    }
}
