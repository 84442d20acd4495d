//! Column layout as kubectl's tabwriter does it (`GetNewTabWriter` in cli-runtime: Go's
//! `text/tabwriter` with minwidth 6, padding 3, pad character ' ', and the `RememberWidths` flag
//! of the fork kubectl uses, so that rows printed later by a watch line up with the table above).
//!
//! A column is as wide as its widest cell plus the padding, and at least the minimum width; the
//! last cell of a line is not padded. Widths count characters, as Go counts runes.

/// The minimum width of a column, padding included.
pub const MIN_WIDTH: usize = 6;
/// The spaces after the widest cell of a column.
pub const PADDING: usize = 3;

/// Lays out lines of cells, remembering the widest column widths between calls.
#[derive(Debug, Default, Clone)]
pub struct TabWriter {
    widths: Vec<usize>,
}

impl TabWriter {
    pub fn new() -> TabWriter {
        TabWriter::default()
    }

    /// The lines laid out in columns, each ending with a newline. Column widths grow to fit these
    /// lines and never shrink below those of earlier calls.
    pub fn format(&mut self, lines: &[Vec<String>]) -> String {
        let cells: Vec<Vec<String>> = lines
            .iter()
            .map(|line| line.iter().map(|c| sanitize(c)).collect())
            .collect();
        for line in &cells {
            // The last cell is not tab-terminated, so it never widens a column.
            for (i, cell) in line.iter().enumerate().take(line.len().saturating_sub(1)) {
                let width = (cell.chars().count() + PADDING).max(MIN_WIDTH);
                if i >= self.widths.len() {
                    self.widths.push(width);
                } else if width > self.widths[i] {
                    self.widths[i] = width;
                }
            }
        }
        let mut out = String::new();
        for line in &cells {
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < line.len() {
                    let pad = self.widths[i].saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A cell as kubectl prints it: cut at the first line break, marked with `...`, and with tabs
/// (which would start a new column) shown as spaces.
fn sanitize(cell: &str) -> String {
    match cell.find(['\n', '\r', '\x0c']) {
        Some(i) => format!("{}...", &cell[..i]).replace('\t', " "),
        None => cell.replace('\t', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn pads_to_widest_cell_plus_three_with_a_minimum_of_six() {
        let mut w = TabWriter::new();
        let text = w.format(&lines(&[
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["kubia-abcde", "1/1", "Running", "0", "5m"],
        ]));
        assert_eq!(
            text,
            "NAME          READY   STATUS    RESTARTS   AGE\n\
             kubia-abcde   1/1     Running   0          5m\n"
        );
    }

    #[test]
    fn remembers_widths_for_rows_printed_later() {
        let mut w = TabWriter::new();
        w.format(&lines(&[
            &["NAME", "DATA", "AGE"],
            &["a-long-name", "1", "0s"],
        ]));
        assert_eq!(
            w.format(&lines(&[&["b", "2", "1s"]])),
            "b             2      1s\n"
        );
        // A wider cell widens the column from then on.
        assert_eq!(
            w.format(&lines(&[&["an-even-longer-name", "3", "2s"]])),
            "an-even-longer-name   3      2s\n"
        );
        assert_eq!(
            w.format(&lines(&[&["c", "4", "3s"]])),
            "c                     4      3s\n"
        );
    }

    #[test]
    fn cuts_cells_at_line_breaks() {
        let mut w = TabWriter::new();
        assert_eq!(
            w.format(&lines(&[&["a", "line one\nline two"]])),
            "a     line one...\n"
        );
    }
}
