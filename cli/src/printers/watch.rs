//! Printing what a watch delivers, as `kubectl get -w` does: the table header once, each later
//! row laid out with the column widths remembered from the rows before it, an EVENT column with
//! `--output-watch-events`, YAML documents separated by `---`.

use anyhow::{anyhow, Result};
use jiff::Timestamp;
use serde_json::{json, Value};

use super::output::{self, OutputFormat};
use super::{table, PrintOptions, TabWriter, Table};

/// Prints batches of watched objects in one format, keeping the state that spans batches.
pub struct WatchPrinter {
    format: OutputFormat,
    kind: String,
    kind_name: String,
    opts: PrintOptions,
    no_headers: bool,
    output_watch_events: bool,
    tabwriter: TabWriter,
    header_printed: bool,
    documents: usize,
}

impl WatchPrinter {
    /// A printer for objects of `kind` (`Pod`), named `kind_name/NAME` by `-o name`
    /// (`pod`, `deployment.apps`).
    pub fn new(
        format: OutputFormat,
        kind: &str,
        kind_name: &str,
        opts: PrintOptions,
        no_headers: bool,
        output_watch_events: bool,
    ) -> WatchPrinter {
        WatchPrinter {
            format,
            kind: kind.to_string(),
            kind_name: kind_name.to_string(),
            opts,
            no_headers,
            output_watch_events,
            tabwriter: TabWriter::new(),
            header_printed: false,
            documents: 0,
        }
    }

    /// The text for objects that changed as `event` says (`ADDED`, `MODIFIED`, `DELETED`; the
    /// initial list counts as `ADDED`), with ages measured at `now`.
    pub fn print(&mut self, event: &str, objects: &[Value], now: Timestamp) -> Result<String> {
        if objects.is_empty() {
            return Ok(String::new());
        }
        let event_cell = self.output_watch_events.then(|| format!("{event:<8}"));
        let mut text = String::new();
        match &self.format {
            OutputFormat::Table { wide } => {
                let opts = PrintOptions {
                    wide: *wide,
                    now,
                    ..self.opts.clone()
                };
                let t = table(&self.kind, objects, &opts);
                self.add_lines(t, event_cell, &mut text);
            }
            OutputFormat::CustomColumns(columns) => {
                let t = output::custom_columns_table(columns, objects).map_err(|e| anyhow!(e))?;
                self.add_lines(t, event_cell, &mut text);
            }
            OutputFormat::Name => {
                for o in objects {
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    text.push_str(&format!("{}/{name}\n", self.kind_name));
                }
            }
            OutputFormat::Json | OutputFormat::Yaml | OutputFormat::JsonPath(_) => {
                for o in objects {
                    let data = if self.output_watch_events {
                        json!({"type": event, "object": o})
                    } else {
                        o.clone()
                    };
                    match &self.format {
                        OutputFormat::Json => text.push_str(&output::to_json(&data)),
                        OutputFormat::Yaml => {
                            self.documents += 1;
                            if self.documents > 1 {
                                text.push_str("---\n");
                            }
                            text.push_str(&output::to_yaml(&data)?);
                        }
                        OutputFormat::JsonPath(t) => {
                            text.push_str(&t.render(&data).map_err(|e| anyhow!(e))?)
                        }
                        _ => unreachable!("a structured format"),
                    }
                }
            }
        }
        Ok(text)
    }

    /// Lay out a table's rows (and the header, the first time) with the remembered widths.
    fn add_lines(&mut self, table: Table, event_cell: Option<String>, text: &mut String) {
        let with_header = !self.header_printed && !self.no_headers;
        self.header_printed = true;
        let mut lines = table.lines(!with_header);
        if let Some(cell) = event_cell {
            for (i, line) in lines.iter_mut().enumerate() {
                let first = if with_header && i == 0 {
                    "EVENT".to_string()
                } else {
                    cell.clone()
                };
                line.insert(0, first);
            }
        }
        text.push_str(&self.tabwriter.format(&lines));
    }
}
