//! Draws a [`Timeline`] as one self-contained SVG (or an HTML page around it) a lab can
//! project: a lane per container, coloured by state, with its image pulls hatched over it,
//! its exits marked with code and reason, and its restart count; events as dots on their
//! pod's lanes, warnings in red; triggers and plugin changes as lines across every lane, the
//! refused ones marked apart. Labels are laid out in rows so that none overlaps another.

use super::{Entry, Timeline, What};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const LEFT: f64 = 300.0;
const WIDTH: f64 = 1200.0;
const LANE: f64 = 46.0;
const BAR: f64 = 20.0;
const TOP: f64 = 70.0;
/// The height of a row of labels under the lanes, and how many there may be.
const LABEL_ROW: f64 = 15.0;
const LABEL_ROWS: usize = 6;
/// Roughly how wide a character of the 11 px labels is, for the layout.
const CHAR_WIDTH: f64 = 6.6;
const LABEL_GAP: f64 = 6.0;

const CREATING: &str = "#a0a0a0";
const RUNNING: &str = "#2e9d4f";
const WAITING: &str = "#e8912d";
const FAILED: &str = "#d63b3b";
const COMPLETED: &str = "#3b6fd6";
const TRIGGER: &str = "#7b1fa2";
const PLUGIN: &str = "#00838f";
const REFUSED: &str = "#b00020";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(state: &str, reason: &str, exit_code: Option<i32>) -> &'static str {
    match (state, reason) {
        ("Running", _) => RUNNING,
        ("Terminated", _) if exit_code == Some(0) => COMPLETED,
        ("Terminated", _) => FAILED,
        ("Waiting", "ContainerCreating" | "PodInitializing") => CREATING,
        ("Waiting", _) => WAITING,
        _ => "#cccccc",
    }
}

/// Rows of labels laid out left to right: a label goes into the first row where it does not
/// touch the one before it, and is left out when no row has room (its mark and tooltip stay).
struct LabelRows {
    right_edges: Vec<f64>,
    max: usize,
}

impl LabelRows {
    fn new(max: usize) -> Self {
        LabelRows { right_edges: Vec::new(), max }
    }

    /// The row of a label starting at `x` with `text`, if one has room. Labels must come in
    /// order of `x`.
    fn place(&mut self, x: f64, text: &str) -> Option<usize> {
        let width = label_width(text);
        if let Some(row) = self.right_edges.iter().position(|right| x >= right + LABEL_GAP) {
            self.right_edges[row] = x + width;
            return Some(row);
        }
        if self.right_edges.len() == self.max {
            return None;
        }
        self.right_edges.push(x + width);
        Some(self.right_edges.len() - 1)
    }

    fn used(&self) -> usize {
        self.right_edges.len()
    }
}

fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

/// A label the layout placed: the width it was given is written out, so the layout can be
/// checked.
fn label(out: &mut String, x: f64, y: f64, fill: &str, text: &str) {
    let _ =
        write!(out, r#"<text class="label" x="{x:.1}" y="{y:.1}" data-width="{:.1}" fill="{fill}" font-size="11">{}</text>"#, label_width(text), escape(text));
}

/// A lane: one container of one pod, its state changes and its image pulls.
struct Lane<'a> {
    pod: &'a str,
    container: &'a str,
    states: Vec<&'a Entry>,
    /// From `Pulling` to `Pulled` or `Failed` (or still going), and what the event said.
    pulls: Vec<(i64, Option<i64>, &'a str)>,
}

impl Lane<'_> {
    fn restarts(&self) -> i32 {
        self.states.iter().filter_map(|e| if let What::Container { restart_count, .. } = &e.what { Some(*restart_count) } else { None }).max().unwrap_or(0)
    }
}

fn lanes(entries: &[Entry]) -> Vec<Lane<'_>> {
    let mut lanes: Vec<Lane> = Vec::new();
    let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in entries {
        let Some(pod) = e.pod.as_deref() else { continue };
        let container = match &e.what {
            What::Container { container, .. } => container.as_str(),
            What::Event { container: Some(container), .. } => container.as_str(),
            _ => continue,
        };
        let i = *index.entry((pod, container)).or_insert_with(|| {
            lanes.push(Lane { pod, container, states: Vec::new(), pulls: Vec::new() });
            lanes.len() - 1
        });
        let lane = &mut lanes[i];
        match &e.what {
            What::Container { .. } => lane.states.push(e),
            What::Event { reason, message, .. } if reason == "Pulling" => lane.pulls.push((e.time, None, message)),
            What::Event { reason, .. } if reason == "Pulled" || reason == "Failed" => {
                if let Some(pull) = lane.pulls.last_mut().filter(|p| p.1.is_none()) {
                    pull.1 = Some(e.time);
                }
            }
            _ => {}
        }
    }
    lanes
}

/// A plugin change in two or three words for its label: `swapped scripted`, `✕ refused scripted.yaml`.
fn plugin_label(message: &str, refused: bool) -> String {
    let words: Vec<&str> = message.split_whitespace().collect();
    if refused {
        let file = words.get(1).map(|w| w.trim_end_matches(':')).map(|w| w.rsplit('/').next().unwrap_or(w)).unwrap_or("");
        let file = file.split(':').next().unwrap_or(file);
        return format!("✕ plugin refused {file}");
    }
    match words.as_slice() {
        ["node", _, name, ..] => format!("⟳ {name} took the state"),
        [verb, name, ..] => format!("⟳ {verb} {name}"),
        _ => format!("⟳ {message}"),
    }
}

/// The timeline as an SVG document.
///
/// ```
/// use labkubelet::timeline::{render, Journal, What};
/// let journal = Journal::new("node-1");
/// journal.record(0, Some("default/web"), What::Container {
///     container: "app".into(), state: "Running".into(), reason: String::new(),
///     exit_code: None, restart_count: 0, ready: true,
/// });
/// let svg = render::svg(&journal.export());
/// assert!(svg.starts_with("<svg") && svg.contains("default/web"));
/// ```
pub fn svg(timeline: &Timeline) -> String {
    let entries = &timeline.entries;
    let start = entries.iter().map(|e| e.time).min().unwrap_or(0);
    let end = entries.iter().map(|e| e.time).max().unwrap_or(0).max(start + 1_000_000_000);
    let x = |t: i64| LEFT + (t - start) as f64 / (end - start) as f64 * (WIDTH - LEFT - 20.0);
    let lanes = lanes(entries);
    let lanes_bottom = TOP + LANE * lanes.len().max(1) as f64;

    // The marks across every lane and their labels under the lanes, laid out first: their
    // rows decide the picture's height.
    let mut marks = String::new();
    let mut mark_labels = String::new();
    let mut rows = LabelRows::new(LABEL_ROWS);
    for e in entries {
        let ex = x(e.time);
        let (stroke, dash, tip, text) = match &e.what {
            What::Trigger { plugin, action, result, accepted: true } => {
                (TRIGGER, "4 3", format!("trigger {plugin} {action}: {result}"), format!("⚡ {action}"))
            }
            What::Trigger { plugin, action, result, accepted: false } => {
                let why = result.split(':').next().unwrap_or(result);
                (REFUSED, "1 3", format!("trigger {plugin} {action} refused: {result}"), format!("✕ {action}: {why}"))
            }
            What::Plugin { message, refused } => (if *refused { REFUSED } else { PLUGIN }, "2 3", message.clone(), plugin_label(message, *refused)),
            _ => continue,
        };
        let _ = write!(
            marks,
            r#"<line x1="{ex:.1}" y1="{:.1}" x2="{ex:.1}" y2="{lanes_bottom:.1}" stroke="{stroke}" stroke-width="2" stroke-dasharray="{dash}"><title>{}</title></line>"#,
            TOP - 6.0,
            escape(&tip)
        );
        if let Some(row) = rows.place(ex + 2.0, &text) {
            label(&mut mark_labels, ex + 2.0, lanes_bottom + 14.0 + LABEL_ROW * row as f64, stroke, &text);
        }
    }
    let labels_bottom = lanes_bottom + 8.0 + LABEL_ROW * rows.used() as f64;
    let height = labels_bottom + 40.0;

    let mut out = String::new();
    let _ = write!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#);
    out.push_str(r##"<defs><pattern id="pulling" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#a0a0a0"/><rect width="4" height="8" fill="#5c6bc0"/></pattern></defs>"##);
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="24" font-size="16" font-weight="bold">labkubelet timeline: node {}</text>"#,
        escape(&timeline.node)
    );
    ticks(&mut out, start, end, lanes_bottom, &x);
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let restarts = lane.restarts();
        let title = if restarts > 0 { format!("{} / {}  ↻ {restarts}", lane.pod, lane.container) } else { format!("{} / {}", lane.pod, lane.container) };
        let _ = write!(out, r#"<text x="10" y="{:.1}">{}</text>"#, y + 4.0 + BAR / 2.0 + 4.0, escape(&title));
        draw_lane(&mut out, lane, y, end, &x);
    }
    out.push_str(&marks);
    out.push_str(&mark_labels);
    for e in entries {
        let What::Event { type_, reason, message, container } = &e.what else { continue };
        let pod = e.pod.as_deref();
        // On its container's lane, else on the pod's first.
        let lane = lanes.iter().position(|l| Some(l.pod) == pod && container.as_deref().is_none_or(|c| c == l.container));
        let Some(i) = lane else { continue };
        let (ex, y) = (x(e.time), TOP + LANE * i as f64 + 2.0);
        let fill = if type_ == "Warning" { REFUSED } else { "#333333" };
        let _ = write!(out, r#"<circle cx="{ex:.1}" cy="{y:.1}" r="3" fill="{fill}"><title>{}: {}</title></circle>"#, escape(reason), escape(message));
    }
    legend(&mut out, height);
    out.push_str("</svg>\n");
    out
}

/// The time axis: a tick every 1 s to 2 h, at most a dozen, from the first entry.
fn ticks(out: &mut String, start: i64, end: i64, lanes_bottom: f64, x: &impl Fn(i64) -> f64) {
    let seconds = (end - start) as f64 / 1e9;
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0].into_iter().find(|s| seconds / s <= 12.0).unwrap_or(7200.0);
    let mut tick = 0.0;
    while tick <= seconds {
        let tx = x(start + (tick * 1e9) as i64);
        let _ = write!(
            out,
            r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{lanes_bottom:.1}" stroke="#eeeeee"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#666">+{tick}s</text>"##,
            TOP - 10.0,
            TOP - 16.0
        );
        tick += step;
    }
}

/// A lane's state segments, the pulls over them, and its exits with code and reason.
fn draw_lane(out: &mut String, lane: &Lane, y: f64, end: i64, x: &impl Fn(i64) -> f64) {
    let bar_top = y + 4.0;
    for (j, e) in lane.states.iter().enumerate() {
        let until = lane.states.get(j + 1).map_or(end, |next| next.time);
        let What::Container { state, reason, exit_code, restart_count, ready, .. } = &e.what else { continue };
        let (x0, x1) = (x(e.time), x(until).max(x(e.time) + 2.0));
        let mut text = if reason.is_empty() { state.clone() } else { format!("{state} ({reason})") };
        if *restart_count > 0 {
            text.push_str(&format!(" ↻{restart_count}"));
        }
        let _ = write!(
            out,
            r#"<rect x="{x0:.1}" y="{bar_top:.1}" width="{:.1}" height="{BAR}" fill="{}"><title>{} restarts={restart_count} ready={ready}</title></rect>"#,
            x1 - x0,
            colour(state, reason, *exit_code),
            escape(&text)
        );
        if x1 - x0 > label_width(&text) + 8.0 {
            let _ = write!(out, r#"<text x="{:.1}" y="{:.1}" fill="white" font-size="11">{}</text>"#, x0 + 4.0, bar_top + BAR / 2.0 + 4.0, escape(&text));
        }
    }
    for (from, until, message) in &lane.pulls {
        let (x0, x1) = (x(*from), x(until.unwrap_or(end)).max(x(*from) + 2.0));
        let took = until.map_or("still pulling".to_string(), |u| format!("{:.1}s", (u - from) as f64 / 1e9));
        let _ = write!(
            out,
            r#"<rect class="pull" x="{x0:.1}" y="{bar_top:.1}" width="{:.1}" height="{BAR}" fill="url(#pulling)" opacity="0.8"><title>{} ({took})</title></rect>"#,
            x1 - x0,
            escape(message)
        );
    }
    // Exit labels go under the bar, each in the room before the next exit's mark: the whole
    // label, or the code alone, or none (the mark and its tooltip stay).
    let exits: Vec<(f64, i32, &str)> = lane
        .states
        .iter()
        .filter_map(|e| match &e.what {
            What::Container { state, reason, exit_code: Some(code), .. } if state == "Terminated" => Some((x(e.time), *code, reason.as_str())),
            _ => None,
        })
        .collect();
    for (i, (ex, code, reason)) in exits.iter().enumerate() {
        let text = format!("exit {code} {reason}");
        let fill = if *code == 0 { COMPLETED } else { FAILED };
        let _ = write!(
            out,
            r#"<path class="exit" d="M{ex:.1},{:.1} l4,-7 l-8,0 z" fill="{fill}" stroke="white"><title>{}</title></path>"#,
            bar_top + BAR + 7.0,
            escape(&text)
        );
        let room = exits.get(i + 1).map_or(f64::INFINITY, |next| next.0 - 4.0) - (ex + 5.0);
        let fitting = [text, code.to_string()].into_iter().find(|t| label_width(t) + LABEL_GAP <= room);
        if let Some(text) = fitting {
            label(out, ex + 5.0, bar_top + BAR + 13.0, fill, &text);
        }
    }
}

fn legend(out: &mut String, height: f64) {
    let legend = [
        (CREATING, "creating"),
        ("url(#pulling)", "pulling an image"),
        (RUNNING, "running"),
        (WAITING, "waiting (back-off, error)"),
        (FAILED, "terminated, error"),
        (COMPLETED, "terminated, exit 0"),
    ];
    for (i, (fill, text)) in legend.iter().enumerate() {
        let lx = 10.0 + 165.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{fill}"/><text x="{}" y="{}">{text}</text>"#,
            height - 26.0,
            lx + 16.0,
            height - 16.0
        );
    }
    let _ = write!(
        out,
        r##"<text x="10" y="{:.1}" fill="#555" font-size="11">⚡ trigger   ✕ refused trigger or plugin change   ⟳ plugin change   ▼ exit (code, reason)   ↻ restarts   ● event (red: warning)</text>"##,
        height - 2.0
    );
}

/// The timeline as an HTML page: the picture, then every entry in a table.
pub fn html(timeline: &Timeline) -> String {
    let mut rows = String::new();
    // Entries come from several writers and are not in time order: time from the earliest.
    let start = timeline.entries.iter().map(|e| e.time).min().unwrap_or(0);
    for e in &timeline.entries {
        let what = match &e.what {
            What::Container { container, state, reason, exit_code, restart_count, ready } => {
                let code = exit_code.map(|c| format!(" exit {c}")).unwrap_or_default();
                format!("{container}: {state} {reason}{code} (restarts {restart_count}, ready {ready})")
            }
            What::Event { type_, reason, message, container } => {
                format!("event {type_} {reason}{}: {message}", container.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())
            }
            What::Plugin { message, .. } => format!("plugin: {message}"),
            What::Trigger { plugin, action, result, .. } => format!("trigger {plugin} {action}: {result}"),
        };
        let _ = write!(
            rows,
            "<tr><td>+{:.1}s</td><td>{}</td><td>{}</td></tr>",
            (e.time - start) as f64 / 1e9,
            escape(e.pod.as_deref().unwrap_or("")),
            escape(&what)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>labkubelet timeline: {node}</title>\
         <style>body{{font-family:sans-serif;margin:20px}}table{{border-collapse:collapse}}td{{padding:2px 8px;border-bottom:1px solid #eee}}</style>\
         </head><body>{svg}<table>{rows}</table></body></html>\n",
        node = escape(&timeline.node),
        svg = svg(timeline),
    )
}

/// A page for the projector: the picture, fetched again from `svg_url` every two seconds
/// (`labkubelet timeline --serve` serves it).
pub fn live_html(node: &str, svg_url: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>labkubelet timeline: {node} (live)</title>
<style>body{{font-family:sans-serif;margin:20px}}#status{{color:#666;font-size:12px}}</style></head>
<body><div id="picture">loading the timeline…</div><p id="status"></p>
<script>
async function refresh() {{
  try {{
    const answer = await fetch("{url}", {{cache: "no-store"}});
    if (!answer.ok) throw new Error(answer.status + " " + await answer.text());
    document.getElementById("picture").innerHTML = await answer.text();
    document.getElementById("status").textContent = "live: updated " + new Date().toLocaleTimeString();
  }} catch (e) {{
    document.getElementById("status").textContent = "cannot reach the agent (" + e.message + "); trying again";
  }}
}}
refresh();
setInterval(refresh, 2000);
</script></body></html>
"#,
        node = escape(node),
        url = escape(svg_url)
    )
}

#[cfg(test)]
mod tests;
