//! The container log file format, the kubelet's (CRI's): one record per line,
//! `<time> <stream> <tag> <content>`, where `time` is when the agent received the output
//! (RFC 3339 in UTC with nanoseconds), `stream` is `stdout` or `stderr`, and `tag` is `F` for a
//! full line (`content` is the line without its newline) or `P` for a part of a line that
//! continues in the next record of its stream (lines longer than [`MAX_RECORD`] bytes, and a
//! last line without a newline). Runtimes write it through [`copy`] (a [`LineSplitter`] per
//! stream, the process runtime piping its containers' stdout and stderr); serving logs reads
//! it back through [`Renderer`], which gives the container's output as it wrote it, optionally
//! only from a time on and with each line prefixed by its time (`rkube logs --since`,
//! `--timestamps`). Lines that are not records (a log written before this format) are shown
//! as they are, without a time.

use jiff::Timestamp;

/// The most content one record holds; longer lines are split into `P` records.
pub const MAX_RECORD: usize = 16 * 1024;

/// An output stream of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A record's time as written: RFC 3339, UTC, always nine fractional digits (so records sort as
/// text too).
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Append one record to `out`.
pub fn encode(out: &mut Vec<u8>, time: Timestamp, stream: Stream, full: bool, content: &[u8]) {
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Turns what one stream of a container writes into records: complete lines as they arrive,
/// parts of lines once [`MAX_RECORD`] bytes are pending, the rest when the stream ends.
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Take `data` received at `now`; the records it completes are appended to `out`.
    pub fn push(&mut self, data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            self.emit_line(now, out);
        }
        self.pending.extend_from_slice(rest);
        // A long line so far: its complete parts go out now.
        let whole = self.pending.len() / MAX_RECORD * MAX_RECORD;
        if whole > 0 {
            for part in self.pending[..whole].chunks(MAX_RECORD) {
                encode(out, now, self.stream, false, part);
            }
            self.pending.drain(..whole);
        }
    }

    /// The stream ended: what is left (a last line without a newline) becomes a `P` record.
    pub fn finish(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        for part in self.pending.chunks(MAX_RECORD) {
            encode(out, now, self.stream, false, part);
        }
        self.pending.clear();
    }

    /// The pending line is complete: its last part is an `F` record.
    fn emit_line(&mut self, now: Timestamp, out: &mut Vec<u8>) {
        let mut parts = self.pending.chunks(MAX_RECORD).peekable();
        if parts.peek().is_none() {
            encode(out, now, self.stream, true, b"");
        }
        while let Some(part) = parts.next() {
            encode(out, now, self.stream, parts.peek().is_none(), part);
        }
        self.pending.clear();
    }
}

/// Copy what `pipe` (a container's `stream`) delivers to `file`, opened for appending, as
/// records, until the pipe closes. A file that cannot be written is reported once and the
/// output is read on (and lost), so the container never blocks on a full pipe.
pub async fn copy(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    file: std::fs::File,
    path: std::path::PathBuf,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut file = tokio::fs::File::from_std(file);
    let mut split = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    let mut broken = false;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(log = %path.display(), error = %e, "container output ended");
                0
            }
        };
        let now = Timestamp::now();
        if n == 0 {
            split.finish(now, &mut out);
        } else {
            split.push(&buf[..n], now, &mut out);
        }
        if !out.is_empty() && !broken {
            let written = async {
                file.write_all(&out).await?;
                file.flush().await
            };
            if let Err(e) = written.await {
                tracing::warn!(log = %path.display(), error = %e, "cannot write a container log: its output is lost");
                broken = true;
            }
        }
        out.clear();
        if n == 0 {
            return;
        }
    }
}

/// One line of a log file, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// `None` for a line that is not a record.
    pub time: Option<Timestamp>,
    /// The time as written.
    pub time_text: &'a [u8],
    pub stream: Option<Stream>,
    /// A full line (or a line that is not a record), shown with a newline.
    pub full: bool,
    pub content: &'a [u8],
}

/// Read one line of a log file (without its newline).
pub fn parse(line: &[u8]) -> Record<'_> {
    let not_a_record = Record {
        time: None,
        time_text: b"",
        stream: None,
        full: true,
        content: line,
    };
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(time_text), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
    else {
        return not_a_record;
    };
    let content = parts.next().unwrap_or(b"");
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return not_a_record,
    };
    let full = match tag {
        b"F" => true,
        b"P" => false,
        _ => return not_a_record,
    };
    let Some(time) = std::str::from_utf8(time_text)
        .ok()
        .and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return not_a_record;
    };
    Record {
        time: Some(time),
        time_text,
        stream: Some(stream),
        full,
        content,
    }
}

/// Turns log file lines into what a reader asked for: records from `since` on (lines that are
/// not records are always shown), each line prefixed by its time and a space with
/// `timestamps`.
#[derive(Debug, Clone)]
pub struct Renderer {
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    /// Per stream: the last record shown was a `P` (its line goes on; no time prefix).
    in_line: [bool; 2],
}

impl Renderer {
    pub fn new(since: Option<Timestamp>, timestamps: bool) -> Renderer {
        Renderer {
            since,
            timestamps,
            in_line: [false; 2],
        }
    }

    /// Append what log file line `line` (without its newline) shows to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let record = parse(line);
        if let (Some(since), Some(time)) = (self.since, record.time) {
            if time < since {
                return;
            }
        }
        let slot = match record.stream {
            Some(Stream::Stderr) => 1,
            _ => 0,
        };
        if self.timestamps && !self.in_line[slot] && record.time.is_some() {
            out.extend_from_slice(record.time_text);
            out.push(b' ');
        }
        out.extend_from_slice(record.content);
        if record.full {
            out.push(b'\n');
        }
        self.in_line[slot] = !record.full;
    }

    /// Append what the complete lines of `data` show to `out`; returns how many bytes of
    /// `data` were used (a last line without its newline is left for later).
    pub fn lines(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut used = 0;
        while let Some(i) = data[used..].iter().position(|b| *b == b'\n') {
            self.line(&data[used..used + i], out);
            used += i + 1;
        }
        used
    }
}

/// A whole log file's content as the container wrote it (for tools and tests).
pub fn decode(file: &[u8]) -> Vec<u8> {
    let mut renderer = Renderer::new(None, false);
    let mut out = Vec::with_capacity(file.len());
    let used = renderer.lines(file, &mut out);
    if used < file.len() {
        renderer.line(&file[used..], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn lines_become_records_with_their_time_and_stream() {
        let t = at("2026-01-02T03:04:05.5Z");
        let mut out = Vec::new();
        let mut split = LineSplitter::new(Stream::Stdout);
        split.push(b"one\ntw", t, &mut out);
        split.push(b"o\n\nthree", t, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "2026-01-02T03:04:05.500000000Z stdout F one\n\
             2026-01-02T03:04:05.500000000Z stdout F two\n\
             2026-01-02T03:04:05.500000000Z stdout F \n"
        );
        out.clear();
        split.finish(t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T03:04:05.500000000Z stdout P three\n"
        );
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let t = at("2026-01-02T03:04:05Z");
        let mut out = Vec::new();
        let mut split = LineSplitter::new(Stream::Stderr);
        let long = vec![b'x'; MAX_RECORD + 10];
        split.push(&long, t, &mut out);
        split.push(b"y\n", t, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        let tags: Vec<&str> = text.lines().map(|l| &l[31..39]).collect();
        assert_eq!(tags, ["stderr P", "stderr F"]);
        let mut want = long.clone();
        want.extend_from_slice(b"y\n");
        assert_eq!(decode(&out), want);
    }

    #[test]
    fn records_parse_and_other_lines_pass_through() {
        let r = parse(b"2026-01-02T03:04:05.000000001Z stderr F a b  c");
        assert_eq!(r.time, Some(at("2026-01-02T03:04:05.000000001Z")));
        assert_eq!(
            (r.stream, r.full, r.content),
            (Some(Stream::Stderr), true, &b"a b  c"[..])
        );
        let r = parse(b"2026-01-02T03:04:05Z stdout P");
        assert_eq!((r.full, r.content), (false, &b""[..]));
        for line in [
            &b"hello world"[..],
            b"",
            b"not-a-time stdout F x",
            b"2026-01-02T03:04:05Z out F x",
        ] {
            let r = parse(line);
            assert_eq!((r.time, r.full, r.content), (None, true, line));
        }
    }

    #[test]
    fn rendering_filters_by_time_and_prefixes_lines_with_it() {
        let file = b"2026-01-02T03:00:00.000000000Z stdout F old\n\
            2026-01-02T03:00:10.000000000Z stdout P new \n\
            2026-01-02T03:00:11.000000000Z stderr F err\n\
            2026-01-02T03:00:12.000000000Z stdout F line\n\
            plain\n";
        assert_eq!(decode(file), b"old\nnew err\nline\nplain\n");
        let mut out = Vec::new();
        let mut r = Renderer::new(Some(at("2026-01-02T03:00:05Z")), true);
        assert_eq!(r.lines(file, &mut out), file.len());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T03:00:10.000000000Z new 2026-01-02T03:00:11.000000000Z err\n\
             line\nplain\n"
        );
        // An incomplete last line is left for later.
        let mut out = Vec::new();
        let mut r = Renderer::new(None, false);
        assert_eq!(
            r.lines(b"2026-01-02T03:00:00Z stdout F a\n2026-01", &mut out),
            32
        );
        assert_eq!(out, b"a\n");
    }
}
