use super::*;

const S: i64 = 1_000_000_000;

fn container(state: &str, reason: &str, exit_code: Option<i32>, restart_count: i32) -> What {
    What::Container { container: "app".into(), state: state.into(), reason: reason.into(), exit_code, restart_count, ready: state == "Running" }
}

fn event(reason: &str, message: &str) -> What {
    What::Event { type_: "Normal".into(), reason: reason.into(), message: message.into(), container: Some("app".into()) }
}

/// A crash-looping pod with a slow pull, two triggers a second apart (one refused) and a
/// refused plugin change, over ten minutes.
fn lab() -> Timeline {
    let pod = Some("default/web".to_string());
    let entry = |t: i64, what: What| Entry { time: t * S, pod: pod.clone(), what };
    let node = |t: i64, what: What| Entry { time: t * S, pod: None, what };
    let trigger = |action: &str, result: &str, accepted| What::Trigger { plugin: "crashloop".into(), action: action.into(), result: result.into(), accepted };
    Timeline {
        node: "lab-node".into(),
        entries: vec![
            entry(0, container("Waiting", "ContainerCreating", None, 0)),
            entry(0, event("Pulling", "Pulling image \"nginx:1.25\"")),
            entry(15, event("Pulled", "Successfully pulled image \"nginx:1.25\" in 15s")),
            entry(15, container("Running", "", None, 0)),
            entry(20, container("Terminated", "Error", Some(1), 0)),
            entry(20, container("Waiting", "CrashLoopBackOff", None, 1)),
            entry(21, container("Terminated", "Error", Some(1), 1)),
            node(100, trigger("kill", "accepted: killed 1 container(s) with exit code 137", true)),
            node(101, trigger("kill", "no-such-pod: no pod default/nope on node lab-node", false)),
            node(102, What::Plugin { message: "refused /lab/plugins/scripted.wasm: /lab/plugins/scripted.yaml:7:5: unknown field".into(), refused: true }),
            node(300, What::Plugin { message: "swapped crashloop 0.1.0 for 0.1.0 from /lab/plugins/crashloop.wasm".into(), refused: false }),
            entry(600, container("Running", "", None, 3)),
        ],
    }
}

/// The labels of an SVG: x, y, width, text.
fn labels(svg: &str) -> Vec<(f64, f64, f64, String)> {
    let attr = |tag: &str, name: &str| -> f64 {
        let from = tag.find(&format!("{name}=\"")).map(|i| i + name.len() + 2).unwrap_or(0);
        tag[from..].split('"').next().unwrap_or("0").parse().unwrap_or(f64::NAN)
    };
    svg.split(r#"<text class="label""#)
        .skip(1)
        .map(|rest| {
            let (tag, after) = rest.split_once('>').unwrap();
            (attr(tag, "x"), attr(tag, "y"), attr(tag, "data-width"), after.split('<').next().unwrap().to_string())
        })
        .collect()
}

#[test]
fn exits_pulls_restarts_and_refusals_are_drawn() {
    let svg = svg(&lab());
    let texts: Vec<String> = labels(&svg).into_iter().map(|l| l.3).collect();
    assert!(texts.contains(&"exit 1 Error".to_string()), "{texts:?}");
    assert!(texts.contains(&"⚡ kill".to_string()) && texts.contains(&"✕ kill: no-such-pod".to_string()), "{texts:?}");
    assert!(texts.contains(&"✕ plugin refused scripted.wasm".to_string()), "{texts:?}");
    assert!(texts.contains(&"⟳ swapped crashloop".to_string()), "{texts:?}");
    assert_eq!(svg.matches(r#"<path class="exit""#).count(), 2, "both exits are marked, labelled or not");
    assert_eq!(svg.matches(r#"<rect class="pull""#).count(), 1);
    assert!(svg.contains("Pulling image &quot;nginx:1.25&quot; (15.0s)"), "the pull says how long it took");
    assert!(svg.contains("default/web / app  ↻ 3"), "the lane shows its restart count");
    assert!(svg.contains(&format!("fill=\"{REFUSED}\" font-size=\"11\">✕ kill")), "a refused trigger has its own colour");
}

#[test]
fn no_two_labels_overlap() {
    let labels = labels(&svg(&lab()));
    for (i, a) in labels.iter().enumerate() {
        for b in &labels[i + 1..] {
            let same_row = (a.1 - b.1).abs() < 1.0;
            let apart = a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0;
            assert!(!same_row || apart, "{a:?} overlaps {b:?}");
        }
    }
    // Two exits a second apart: the first has room for its code only, before the second's mark.
    assert_eq!(labels.iter().filter(|l| l.3.starts_with("exit ")).count(), 1, "{labels:?}");
    let exits: Vec<f64> = svg(&lab()).split(r#"<path class="exit" d="M"#).skip(1).filter_map(|p| p.split(',').next()?.parse().ok()).collect();
    for label in &labels {
        let between = exits.iter().any(|x| *x > label.0 && *x < label.0 + label.2);
        assert!(!between, "{label:?} runs under an exit mark at {exits:?}");
    }
}

#[test]
fn label_rows_fill_left_to_right_and_give_up_when_full() {
    let mut rows = LabelRows::new(2);
    assert_eq!(rows.place(0.0, "abcdefghij"), Some(0));
    assert_eq!(rows.place(10.0, "abc"), Some(1));
    assert_eq!(rows.place(20.0, "abc"), None);
    assert_eq!(rows.place(100.0, "abc"), Some(0));
}

#[test]
fn the_table_counts_from_the_earliest_entry() {
    let mut timeline = lab();
    timeline.entries.reverse();
    let page = html(&timeline);
    assert!(!page.contains("+-"), "{page}");
    assert!(page.contains("<tr><td>+0.0s</td><td>default/web</td><td>app: Waiting ContainerCreating"), "{page}");
    assert!(page.contains("<tr><td>+600.0s</td>"), "{page}");
}

#[test]
fn the_live_page_fetches_the_picture_again() {
    let page = live_html("lab-node", "/timeline.svg");
    assert!(page.contains(r#"fetch("/timeline.svg""#) && page.contains("setInterval(refresh, 2000)"), "{page}");
}
