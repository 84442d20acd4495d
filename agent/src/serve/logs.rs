//! Container logs: the current instance's log is `<pod dir>/<container>.log`; when a container
//! starts again its log becomes `<container>.previous.log` (one previous instance is kept, as the
//! kubelet does). Reading from the last N lines (records: a line longer than
//! [`MAX_RECORD`](crate::container_log::MAX_RECORD) counts as several), from a time on, with or
//! without times, and following a log as it grows until its container instance ends.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::container_log::Renderer;

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
const CHUNK: usize = 32 * 1024;

/// Keep the log of the instance that ended as the previous log, before a new instance starts
/// writing `log_path`. Best effort: a failure is logged and the new instance appends.
pub fn rotate(log_path: &Path) {
    let Some(name) = log_path.file_stem() else {
        return;
    };
    let previous = log_path.with_file_name(format!("{}.previous.log", name.to_string_lossy()));
    match std::fs::rename(log_path, &previous) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(log = %log_path.display(), error = %e, "cannot keep the previous container log")
        }
    }
}

/// The offset at which the last `lines` lines of `file` start (a final line without a newline
/// counts as a line).
pub fn tail_offset(file: &mut std::fs::File, lines: u64) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut block = vec![0u8; 8192];
    let mut found = 0u64;
    while pos > 0 {
        let n = (pos as usize).min(block.len());
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut block[..n])?;
        for i in (0..n).rev() {
            // A newline that ends the file ends the last line; it does not start another one.
            if block[i] != b'\n' || pos + i as u64 == len - 1 {
                continue;
            }
            found += 1;
            if found == lines {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    Ok(0)
}

/// Send the output logged in `path` (see [`container_log`](crate::container_log)) from the
/// start (or its last `tail` lines) to `tx`, as `view` shows it (from a time on, with times);
/// with `follow`, keep sending what is appended until `ended()` says the instance that writes
/// it is gone (then what it wrote last is sent too) or the receiver goes away.
pub async fn stream(
    path: &Path,
    tail: Option<u64>,
    follow: bool,
    mut view: Renderer,
    ended: impl Fn() -> bool,
    tx: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let start = match tail {
        Some(lines) => tail_offset(&mut file, lines)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = vec![0u8; CHUNK];
    // Read but not shown yet: a record being written (no newline yet).
    let mut pending = Vec::new();
    loop {
        // Check before reading, so that output written just before the end is still sent.
        let done = !follow || ended();
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            let used = view.lines(&pending, &mut out);
            pending.drain(..used);
            if !out.is_empty() && tx.send(out).await.is_err() {
                return Ok(());
            }
        }
        if done {
            if !pending.is_empty() {
                // A last record without its newline (its writer is gone).
                let mut out = Vec::new();
                view.line(&pending, &mut out);
                let _ = tx.send(out).await;
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(content: &str, lines: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, content).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let off = tail_offset(&mut f, lines).unwrap() as usize;
        content[off..].to_string()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 0), "");
        assert_eq!(tail_of("", 3), "");
        assert_eq!(tail_of("\n\n", 1), "\n");
        // Across the 8 KiB read blocks.
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&long, 3), "line 4997\nline 4998\nline 4999\n");
        assert_eq!(tail_of(&long, 5000), long);
    }

    #[test]
    fn rotation_keeps_one_previous_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("web.log");
        rotate(&log); // nothing yet: no error
        std::fs::write(&log, "first\n").unwrap();
        rotate(&log);
        std::fs::write(&log, "second\n").unwrap();
        let previous = dir.path().join("web.previous.log");
        assert_eq!(std::fs::read_to_string(&previous).unwrap(), "first\n");
        rotate(&log);
        assert_eq!(std::fs::read_to_string(&previous).unwrap(), "second\n");
        assert!(!log.exists());
    }

    /// Everything `stream` sends for `path` (not following).
    async fn read_all(path: &Path, tail: Option<u64>, view: Renderer) -> String {
        let (tx, mut rx) = mpsc::channel(64);
        stream(path, tail, false, view, || true, tx).await.unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.extend(chunk);
        }
        String::from_utf8(all).unwrap()
    }

    #[tokio::test]
    async fn records_are_shown_from_a_time_on_and_with_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(
            &path,
            "2026-01-02T03:00:00.000000000Z stdout F old\n\
             2026-01-02T03:00:10.000000000Z stderr F new\n\
             2026-01-02T03:00:11.000000000Z stdout F newer\n\
             2026-01-02T03:00:12.000000000Z stdout F cut",
        )
        .unwrap();
        let since: jiff::Timestamp = "2026-01-02T03:00:05Z".parse().unwrap();
        assert_eq!(
            read_all(&path, None, Renderer::new(None, false)).await,
            "old\nnew\nnewer\ncut\n"
        );
        assert_eq!(
            read_all(&path, None, Renderer::new(Some(since), false)).await,
            "new\nnewer\ncut\n"
        );
        assert_eq!(
            read_all(&path, Some(2), Renderer::new(None, true)).await,
            "2026-01-02T03:00:11.000000000Z newer\n2026-01-02T03:00:12.000000000Z cut\n"
        );
    }

    #[tokio::test]
    async fn follow_sends_appended_output_until_the_instance_ends() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::channel(4);
        let task = {
            let (path, ended) = (path.clone(), ended.clone());
            tokio::spawn(async move {
                let view = Renderer::new(None, false);
                stream(
                    &path,
                    Some(1),
                    true,
                    view,
                    || ended.load(Ordering::SeqCst),
                    tx,
                )
                .await
            })
        };
        assert_eq!(rx.recv().await.unwrap(), b"two\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"three\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"three\n");
        f.write_all(b"last\n").unwrap();
        ended.store(true, Ordering::SeqCst);
        let mut rest = Vec::new();
        while let Some(chunk) = rx.recv().await {
            rest.extend(chunk);
        }
        assert_eq!(rest, b"last\n");
        task.await.unwrap().unwrap();
    }
}
