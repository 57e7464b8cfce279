//! Draws a [`Timeline`] as one self-contained SVG (or an HTML page around it) a lab can
//! project: a lane per container, coloured by state; events as marks on their pod's lane,
//! warnings in red; triggers and plugin reloads as lines across every lane.

use super::{Entry, Timeline, What};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const LEFT: f64 = 260.0;
const WIDTH: f64 = 1100.0;
const LANE: f64 = 34.0;
const TOP: f64 = 70.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(state: &str, reason: &str, exit_code: Option<i32>) -> &'static str {
    match (state, reason) {
        ("Running", _) => "#2e9d4f",
        ("Terminated", _) if exit_code == Some(0) => "#3b6fd6",
        ("Terminated", _) => "#d63b3b",
        ("Waiting", "ContainerCreating" | "PodInitializing") => "#a0a0a0",
        ("Waiting", _) => "#e8912d",
        _ => "#cccccc",
    }
}

/// A lane: one container of one pod, and the state segments drawn in it.
struct Lane<'a> {
    pod: &'a str,
    container: &'a str,
    states: Vec<(i64, &'a Entry)>,
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

    let mut lanes: Vec<Lane> = Vec::new();
    let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in entries {
        if let (Some(pod), What::Container { container, .. }) = (e.pod.as_deref(), &e.what) {
            let i = *index.entry((pod, container.as_str())).or_insert_with(|| {
                lanes.push(Lane { pod, container, states: Vec::new() });
                lanes.len() - 1
            });
            lanes[i].states.push((e.time, e));
        }
    }
    let height = TOP + LANE * lanes.len().max(1) as f64 + 60.0;
    let mut out = String::new();
    let _ = write!(out, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#);
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="24" font-size="16" font-weight="bold">labkubelet timeline: node {}</text>"#,
        escape(&timeline.node)
    );
    let seconds = (end - start) as f64 / 1e9;
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0].into_iter().find(|s| seconds / s <= 12.0).unwrap_or(7200.0);
    let mut tick = 0.0;
    while tick <= seconds {
        let tx = x(start + (tick * 1e9) as i64);
        let _ = write!(
            out,
            r##"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}" stroke="#eeeeee"/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#666">+{tick}s</text>"##,
            TOP - 10.0,
            height - 40.0,
            TOP - 16.0
        );
        tick += step;
    }
    for (i, lane) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        let _ = write!(out, r#"<text x="10" y="{:.1}">{} / {}</text>"#, y + LANE / 2.0 + 4.0, escape(lane.pod), escape(lane.container));
        for (j, (t, e)) in lane.states.iter().enumerate() {
            let until = lane.states.get(j + 1).map_or(end, |(next, _)| *next);
            if let What::Container { state, reason, exit_code, restart_count, ready, .. } = &e.what {
                let (x0, x1) = (x(*t), x(until).max(x(*t) + 2.0));
                let label = if reason.is_empty() { state.clone() } else { format!("{state} ({reason})") };
                let _ = write!(
                    out,
                    r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} restarts={restart_count} ready={ready}</title></rect>"#,
                    y + 6.0,
                    x1 - x0,
                    LANE - 12.0,
                    colour(state, reason, *exit_code),
                    escape(&label)
                );
                if x1 - x0 > 90.0 {
                    let _ = write!(out, r#"<text x="{:.1}" y="{:.1}" fill="white" font-size="11">{}</text>"#, x0 + 4.0, y + LANE / 2.0 + 4.0, escape(&label));
                }
            }
        }
    }
    let lane_of = |pod: &str| lanes.iter().position(|l| l.pod == pod);
    for e in entries {
        let ex = x(e.time);
        match &e.what {
            What::Event { type_, reason, message } => {
                let Some(i) = e.pod.as_deref().and_then(lane_of) else { continue };
                let y = TOP + LANE * i as f64 + 4.0;
                let fill = if type_ == "Warning" { "#b00020" } else { "#333333" };
                let _ =
                    write!(out, r#"<circle cx="{ex:.1}" cy="{y:.1}" r="3.5" fill="{fill}"><title>{}: {}</title></circle>"#, escape(reason), escape(message));
            }
            What::Trigger { plugin, action, result } => {
                let _ = write!(
                    out,
                    r##"<line x1="{ex:.1}" y1="{}" x2="{ex:.1}" y2="{}" stroke="#7b1fa2" stroke-width="2" stroke-dasharray="4 3"><title>trigger {} {}: {}</title></line><text x="{ex:.1}" y="{}" fill="#7b1fa2" text-anchor="middle">⚡ {}</text>"##,
                    TOP - 6.0,
                    height - 44.0,
                    escape(plugin),
                    escape(action),
                    escape(result),
                    height - 28.0,
                    escape(action)
                );
            }
            What::Plugin { message } => {
                let _ = write!(
                    out,
                    r##"<line x1="{ex:.1}" y1="{}" x2="{ex:.1}" y2="{}" stroke="#00838f" stroke-dasharray="2 3"><title>{}</title></line>"##,
                    TOP - 6.0,
                    height - 44.0,
                    escape(message)
                );
            }
            What::Container { .. } => {}
        }
    }
    let legend = [
        ("#a0a0a0", "creating"),
        ("#2e9d4f", "running"),
        ("#e8912d", "waiting (back-off, pull error)"),
        ("#d63b3b", "terminated, error"),
        ("#3b6fd6", "terminated, exit 0"),
    ];
    for (i, (fill, text)) in legend.iter().enumerate() {
        let lx = 10.0 + 200.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{fill}"/><text x="{}" y="{}">{text}</text>"#,
            height - 16.0,
            lx + 16.0,
            height - 6.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The timeline as an HTML page: the picture, then every entry in a table.
pub fn html(timeline: &Timeline) -> String {
    let mut rows = String::new();
    let start = timeline.entries.first().map_or(0, |e| e.time);
    for e in &timeline.entries {
        let what = match &e.what {
            What::Container { container, state, reason, exit_code, restart_count, ready } => {
                let code = exit_code.map(|c| format!(" exit {c}")).unwrap_or_default();
                format!("{container}: {state} {reason}{code} (restarts {restart_count}, ready {ready})")
            }
            What::Event { type_, reason, message } => format!("event {type_} {reason}: {message}"),
            What::Plugin { message } => format!("plugin: {message}"),
            What::Trigger { plugin, action, result } => format!("trigger {plugin} {action}: {result}"),
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
