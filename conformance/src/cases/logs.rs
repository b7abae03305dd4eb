//! Container logs: the CRI log format on the node and ReopenContainerLog.
//!
//! The log file is on the endpoint's host, which these cases share (they need root).

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;

use super::container::CONTAINER_NEEDS;
use super::support::{Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};
use crate::fixtures::image::{BUSYBOX, LATEST};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
const FORMAT_CLAUSE: &str = "cri:RuntimeService.CreateContainer#config.log_path";

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Logs
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "logs/cri-format",
            FORMAT_CLAUSE,
            "every log line is `<RFC3339Nano> <stdout|stderr> <P|F> <content>` and carries what the process wrote (kubectl logs parses it)",
            |ctx| Box::pin(scoped(ctx, "lf", cri_format)),
        ),
        cases.optional(
            "logs/long-line-reassembles",
            FORMAT_CLAUSE,
            "a 40000-byte line is logged as P-tagged parts ending in an F part that concatenate to the line",
            |ctx| Box::pin(scoped(ctx, "ll", long_line)),
        ),
        cases.required(
            "logs/reopen",
            "cri:RuntimeService.ReopenContainerLog#container_id",
            "after the log file is renamed, ReopenContainerLog makes the runtime write a new file at log_path (kubelet log rotation)",
            |ctx| Box::pin(scoped(ctx, "lr", reopen)),
        ),
        cases.required(
            "logs/reopen-synchronous",
            "cri:RuntimeService.ReopenContainerLog#container_id",
            "when ReopenContainerLog returns, the new file already exists at log_path (the kubelet's rotation reads it at once)",
            |ctx| Box::pin(scoped(ctx, "ls", reopen_synchronous)),
        ),
        cases.required(
            "logs/reopen-exited",
            "cri:RuntimeService.ReopenContainerLog#not-running",
            "ReopenContainerLog of an exited container either creates a new log file and succeeds, or fails and creates none",
            |ctx| Box::pin(scoped(ctx, "lx", reopen_exited)),
        ),
        cases.required(
            "logs/log-path-traversal-refused",
            "cri:ContainerConfig#log_path",
            "a log_path that leaves the pod's log_directory (`..`, absolute, through a symlink in the directory) is refused, and nothing is written outside",
            |ctx| Box::pin(scoped(ctx, "lt", log_path_traversal)),
        ),
    ]
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `P` (partial) or `F` (full).
    pub tag: String,
    /// The content, without the newline.
    pub content: String,
}

/// Parses `<RFC3339Nano> <stdout|stderr> <P|F> <content>`.
pub(crate) fn parse_line(line: &str) -> Result<LogLine, String> {
    let mut parts = line.splitn(4, ' ');
    let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{line:?}: fewer than three fields"));
    };
    let content = parts.next().unwrap_or("");
    if !is_rfc3339(ts) {
        return Err(format!("{line:?}: {ts:?} is not an RFC 3339 timestamp"));
    }
    if stream != "stdout" && stream != "stderr" {
        return Err(format!("{line:?}: stream {stream:?}"));
    }
    // Tags may carry more, colon-separated; the first is P or F.
    let first = tag.split(':').next().unwrap_or("");
    if first != "P" && first != "F" {
        return Err(format!("{line:?}: tag {tag:?} is neither P nor F"));
    }
    Ok(LogLine {
        stream: stream.to_owned(),
        tag: first.to_owned(),
        content: content.to_owned(),
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
        || !(b[10] == b'T' || b[10] == b't')
        || !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &ts[i..] {
        "Z" | "z" => true,
        zone => {
            let z = zone.as_bytes();
            z.len() == 6
                && (z[0] == b'+' || z[0] == b'-')
                && z[1..3].iter().all(u8::is_ascii_digit)
                && z[3] == b':'
                && z[4..6].iter().all(u8::is_ascii_digit)
        }
    }
}

async fn read_log(s: &Scope, id: &str) -> Result<(String, Vec<LogLine>), String> {
    let st = s.container_status(id).await?;
    let text = tokio::fs::read_to_string(&st.log_path)
        .await
        .map_err(|e| format!("reading {}: {e}", st.log_path))?;
    let lines = text
        .lines()
        .map(parse_line)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((st.log_path, lines))
}

async fn cri_format(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s
        .busybox_exited(
            "echo first out; echo first err >&2; echo 'two  spaces '; exit 0",
            |_| {},
            Duration::from_secs(20),
        )
        .await?;
    let (_, lines) = read_log(&s, &id).await?;
    let want = |stream: &str, content: &str| LogLine {
        stream: stream.into(),
        tag: "F".into(),
        content: content.into(),
    };
    for w in [
        want("stdout", "first out"),
        want("stderr", "first err"),
        want("stdout", "two  spaces "),
    ] {
        ensure(lines.contains(&w), || format!("no {w:?} in {lines:?}"))?;
    }
    Ok(format!("{} lines", lines.len()))
}

async fn long_line(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s
        .busybox_exited(
            "i=0; while [ $i -lt 4000 ]; do printf 0123456789; i=$((i+1)); done; echo",
            |_| {},
            Duration::from_secs(30),
        )
        .await?;
    let (_, lines) = read_log(&s, &id).await?;
    let stdout: Vec<_> = lines.iter().filter(|l| l.stream == "stdout").collect();
    let last = stdout.last().ok_or("no stdout lines")?;
    ensure(last.tag == "F", || "the last part is not F".into())?;
    ensure(
        stdout[..stdout.len() - 1].iter().all(|l| l.tag == "P"),
        || "parts before the last are not all P".into(),
    )?;
    let joined: String = stdout.iter().map(|l| l.content.as_str()).collect();
    let want = "0123456789".repeat(4000);
    ensure(joined == want, || {
        format!(
            "reassembled {} bytes, expected {}",
            joined.len(),
            want.len()
        )
    })?;
    Ok(format!("{} parts", stdout.len()))
}

async fn reopen(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s
        .busybox(
            "trap 'exit 0' TERM; while :; do echo tick; sleep 0.2; done",
            |_| {},
            |_| {},
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let st = s.container_status(&id).await?;
    rotate(&s, &id, &st.log_path).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (path, lines) = read_log(&s, &id)
        .await
        .map_err(|e| format!("after reopen: {e}"))?;
    ensure(lines.iter().any(|l| l.content == "tick"), || {
        format!("{path} has no new lines after reopen: {lines:?}")
    })?;
    Ok(String::new())
}

/// The kubelet's rotation: rename the log file, then ReopenContainerLog.
async fn rotate(s: &Scope, id: &str, log_path: &str) -> Result<(), String> {
    let rotated = format!("{log_path}.1");
    tokio::fs::rename(log_path, &rotated)
        .await
        .map_err(|e| format!("renaming {log_path}: {e}"))?;
    s.rs()
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.to_owned(),
        })
        .await
        .map(drop)
        .map_err(|e| format!("ReopenContainerLog: {}", status_text(&e)))
}

async fn reopen_synchronous(s: Arc<Scope>) -> CaseResult {
    // Silent after its first line: no later write can create the file for the runtime.
    let (_, id, _) = s
        .busybox("echo first; exec sleep 3600", |_| {}, |_| {})
        .await?;
    let st = s.container_status(&id).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !tokio::fs::try_exists(&st.log_path).await.unwrap_or(false) {
        ensure(std::time::Instant::now() < deadline, || {
            format!("{} never appeared", st.log_path)
        })?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A runtime that answers before its monitor has reopened loses a race it usually
    // wins by microseconds: rotate many times and look at once (a blocking stat, no hop
    // to another thread), so that one lost race shows.
    for round in 1..=ROTATIONS {
        rotate(&s, &id, &st.log_path).await?;
        let exists = std::path::Path::new(&st.log_path).exists();
        ensure(exists, || {
            format!(
                "ReopenContainerLog returned before {} was created (rotation {round} of {ROTATIONS})",
                st.log_path
            )
        })?;
    }
    Ok(format!("{ROTATIONS} rotations"))
}

/// Rotations of logs/reopen-synchronous.
const ROTATIONS: u32 = 25;

async fn reopen_exited(s: Arc<Scope>) -> CaseResult {
    let (id, st) = s
        .busybox_exited("echo done", |_| {}, Duration::from_secs(20))
        .await?;
    let rotated = format!("{}.1", st.log_path);
    tokio::fs::rename(&st.log_path, &rotated)
        .await
        .map_err(|e| format!("renaming {}: {e}", st.log_path))?;
    let r = s
        .rs()
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await;
    let exists = tokio::fs::try_exists(&st.log_path).await.unwrap_or(false);
    match r {
        Ok(_) => {
            ensure(exists, || {
                "ReopenContainerLog succeeded but created no log file".into()
            })?;
            Ok("reopened: new file".into())
        }
        Err(e) => {
            ensure(!exists, || {
                format!(
                    "ReopenContainerLog failed ({}) yet created a log file",
                    status_text(&e)
                )
            })?;
            Ok(format!("refused: {:?}", e.code()))
        }
    }
}

/// Removes a directory tree when dropped, also when the case is cancelled.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// log_path is relative to the pod's log_directory (api.proto); the runtime writes the file
/// as root, so a path that leaves the directory would let a CRI client write any file.
async fn log_path_traversal(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let mut pod = s.pod_config();
    let base = std::path::PathBuf::from(&pod.log_directory);
    let _remove = RemoveOnDrop(base.clone());
    let logs = base.join("logs");
    let outside = base.join("outside");
    pod.log_directory = logs.display().to_string();
    for d in [&logs, &outside] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    std::os::unix::fs::symlink(&outside, logs.join("link")).map_err(|e| format!("symlink: {e}"))?;
    let pod_id = s.run_pod(&pod).await?;
    let absolute = outside.join("absolute.log").display().to_string();
    let mut codes = Vec::new();
    for (log_path, what) in [
        ("../outside/dotdot.log", "with `..`"),
        (absolute.as_str(), "absolute"),
        ("link/through.log", "through a symlink"),
    ] {
        let mut config = s.container_config(&pod, &image, &["true"]);
        config.log_path = log_path.to_owned();
        let created = s.create(&pod_id, &pod, &config).await;
        let written: Vec<_> = std::fs::read_dir(&outside)
            .map_err(|e| format!("listing {}: {e}", outside.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ensure(written.is_empty(), || {
            format!("log_path {log_path:?} ({what}) wrote {written:?} outside the log directory")
        })?;
        match created {
            Ok(_) => return Err(format!("log_path {log_path:?} ({what}) was accepted")),
            Err(e) => codes.push(e.split(':').nth(1).unwrap_or_default().trim().to_owned()),
        }
    }
    Ok(format!("refused: {}", codes.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_parse() {
        let l = parse_line("2026-11-28T08:14:26.007595081Z stdout F hello world").expect("ok");
        assert_eq!(
            (l.stream.as_str(), l.tag.as_str(), l.content.as_str()),
            ("stdout", "F", "hello world")
        );
        assert!(parse_line("2026-11-28T08:14:26.1+01:00 stderr P x").is_ok());
        assert!(parse_line("2026-11-28T08:14:26Z stdout F ").is_ok());
        assert!(parse_line("2026-11-28 08:14:26Z stdout F x").is_err());
        assert!(parse_line("2026-11-28T08:14:26Z stdin F x").is_err());
        assert!(parse_line("2026-11-28T08:14:26Z stdout X x").is_err());
        assert!(parse_line("2026-11-28T08:14:26. stdout F x").is_err());
        assert!(parse_line("garbage").is_err());
    }
}
