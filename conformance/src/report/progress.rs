//! Progress of a long run on stderr: a bar redrawn in place when stderr is a terminal, one
//! plain line per result otherwise (CI logs keep every line and no control characters).

use std::io::{IsTerminal, Write};

use crate::cases::{Requirement, Verdict};

/// Width of the bar in characters.
const BAR: usize = 28;
/// Longest status text after the bar, so the line never wraps on a normal terminal.
const STATUS_MAX: usize = 70;

/// A progress reporter over `total` results.
pub struct Progress<W: Write> {
    out: W,
    tty: bool,
    total: usize,
    done: usize,
    failed: usize,
}

impl Progress<std::io::Stderr> {
    /// Reports on stderr, redrawing in place when stderr is a terminal.
    pub fn stderr(total: usize) -> Self {
        let err = std::io::stderr();
        let tty = err.is_terminal();
        Progress::new(err, tty, total)
    }
}

impl<W: Write> Progress<W> {
    /// Reports to `out`; `tty` selects the redrawn bar.
    pub fn new(out: W, tty: bool, total: usize) -> Self {
        Progress {
            out,
            tty,
            total,
            done: 0,
            failed: 0,
        }
    }

    /// Prints a line that stays (a heading, a note), above the bar on a terminal.
    pub fn note(&mut self, line: &str) {
        if self.tty {
            let _ = write!(self.out, "\r\x1b[2K{line}\n");
            self.draw("");
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    /// Records one result of `cell`: failures stay visible, the rest only move the bar.
    pub fn result(&mut self, cell: &str, id: &str, verdict: &Verdict, requirement: Requirement) {
        self.done += 1;
        let tag = match (verdict, requirement) {
            (Verdict::Pass, _) => "pass",
            (Verdict::Fail(_), Requirement::Required) => "FAIL",
            (Verdict::Fail(_), Requirement::Optional) => "fail (optional)",
            (Verdict::Skip(_), _) => "skip",
        };
        if matches!(verdict, Verdict::Fail(_)) {
            self.failed += 1;
        }
        // A run against one endpoint has no cell label.
        let what = if cell.is_empty() {
            id.to_owned()
        } else {
            format!("{cell} {id}")
        };
        if self.tty {
            if let Verdict::Fail(why) = verdict {
                let why = super::text::one_line(why, 120);
                let _ = write!(self.out, "\r\x1b[2K{tag} {what}: {why}\n");
            }
            self.draw(&what);
        } else {
            let _ = writeln!(self.out, "[{}/{}] {tag} {what}", self.done, self.total);
        }
        let _ = self.out.flush();
    }

    /// Ends the bar with a newline so what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.tty {
            self.draw("done");
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }

    fn draw(&mut self, status: &str) {
        let filled = (BAR * self.done).checked_div(self.total).unwrap_or(BAR);
        let status = super::text::one_line(status, STATUS_MAX);
        let failed = if self.failed > 0 {
            format!(" {} failed", self.failed)
        } else {
            String::new()
        };
        let _ = write!(
            self.out,
            "\r\x1b[2K[{}{}] {}/{}{failed}  {status}",
            "#".repeat(filled.min(BAR)),
            "-".repeat(BAR - filled.min(BAR)),
            self.done,
            self.total
        );
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_writes_one_line_per_result_without_control_characters() {
        let mut p = Progress::new(Vec::new(), false, 3);
        p.note("cell 1: containerd");
        p.result("c1", "a", &Verdict::Pass, Requirement::Required);
        p.result("c1", "b", &Verdict::Fail("x".into()), Requirement::Required);
        p.result("", "c", &Verdict::Skip("y".into()), Requirement::Optional);
        p.finish();
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(
            out,
            "cell 1: containerd\n[1/3] pass c1 a\n[2/3] FAIL c1 b\n[3/3] skip c\n"
        );
    }

    #[test]
    fn tty_mode_redraws_the_bar_and_keeps_failures() {
        let mut p = Progress::new(Vec::new(), true, 2);
        p.result("c1", "a", &Verdict::Pass, Requirement::Required);
        p.result(
            "c1",
            "b",
            &Verdict::Fail("went\nwrong".into()),
            Requirement::Optional,
        );
        p.finish();
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert!(
            out.contains("\r\x1b[2K[##############--------------] 1/2  c1 a"),
            "{out:?}"
        );
        assert!(
            out.contains("fail (optional) c1 b: went wrong\n"),
            "{out:?}"
        );
        assert!(
            out.contains("[############################] 2/2 1 failed  done\n"),
            "{out:?}"
        );
        assert!(
            !out.contains("pass c1 a\n"),
            "passes only move the bar: {out:?}"
        );
    }
}
