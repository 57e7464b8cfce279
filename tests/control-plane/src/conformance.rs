//! Kubernetes' own node conformance tests against this control plane: the `[NodeConformance]`
//! specs of the release's e2e suite (`e2e.test`, which `tests/control-plane/install-e2e-suite.sh`
//! builds from the same source as the control plane), run by ginkgo in parallel, and each
//! spec's result as ginkgo's JUnit reports give it.

use crate::ControlPlane;
use crate::assets::Assets;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Left out of the count, as the issue that set the target counts: the granular networking
/// checks need pod networking between nodes, PrivilegedPod a privileged container's kernel.
pub const LEFT_OUT: &[&str] = &["[sig-network] Networking Granular Checks", "PrivilegedPod"];

/// How a run is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// ginkgo's parallel test processes.
    pub parallel: u32,
    /// Runs only the specs whose name holds this text.
    pub focus: Option<String>,
}

/// One spec's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Skipped,
    /// What failed: the failure message's first line.
    Failed(String),
}

/// A run's results.
#[derive(Debug)]
pub struct Report {
    /// Each counted spec by its full name.
    pub results: BTreeMap<String, Outcome>,
    pub took: Duration,
    /// ginkgo's output and JUnit reports.
    pub dir: PathBuf,
}

impl Report {
    /// (passed, failed, skipped).
    pub fn summary(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Outcome) -> bool| self.results.values().filter(|o| f(o)).count();
        (count(|o| *o == Outcome::Passed), count(|o| matches!(o, Outcome::Failed(_))), count(|o| *o == Outcome::Skipped))
    }
}

/// Runs the counted specs against `control_plane` as its admin, with whatever nodes it has;
/// `label` names the run's folder.
pub fn run(control_plane: &ControlPlane, label: &str, options: &Options) -> anyhow::Result<Report> {
    let assets = Assets::locate().map_err(anyhow::Error::msg)?;
    for binary in ["e2e.test", "ginkgo"] {
        let path = assets.binary(binary);
        anyhow::ensure!(path.is_file(), "no {binary} in {}: run tests/control-plane/install-e2e-suite.sh", path.display());
    }
    let dir = control_plane.dir.join(format!("conformance-{label}"));
    std::fs::create_dir_all(&dir)?;
    let conformance = go_regex_literal("[NodeConformance]");
    let focus = match &options.focus {
        Some(f) => format!("{conformance}.*{f}|{f}.*{conformance}", f = go_regex_literal(f)),
        None => conformance,
    };
    let skip = LEFT_OUT.iter().map(|l| go_regex_literal(l)).collect::<Vec<_>>().join("|");
    let started = Instant::now();
    // hack/ginkgo-e2e.sh's invocation, with the skeleton provider (a cluster without a cloud).
    let status = Command::new(assets.binary("ginkgo"))
        .args([format!("--nodes={}", options.parallel), "--noColor".into(), "--succinct".into()])
        .arg(assets.binary("e2e.test"))
        .arg("--")
        .arg(format!("--kubeconfig={}", control_plane.admin_kubeconfig().display()))
        .args(["--provider=skeleton", "--dump-logs-on-failure=false"])
        .arg(format!("--kubectl-path={}", assets.binary("kubectl").display()))
        .arg(format!("--report-dir={}", dir.display()))
        .arg(format!("--ginkgo.focus={focus}"))
        .arg(format!("--ginkgo.skip={skip}"))
        .stdout(std::fs::File::create(dir.join("ginkgo.log"))?)
        .stderr(std::fs::File::create(dir.join("ginkgo.stderr"))?)
        .status()?;
    let took = started.elapsed();
    let results = read_reports(&dir, options.focus.as_deref())?;
    anyhow::ensure!(!results.is_empty(), "ginkgo ({status}) reported no spec; see {}", dir.join("ginkgo.log").display());
    Ok(Report { results, took, dir })
}

/// The specs counted: `[NodeConformance]`, less [`LEFT_OUT`], narrowed by a focus.
fn counted(name: &str, focus: Option<&str>) -> bool {
    name.contains("[NodeConformance]") && !LEFT_OUT.iter().any(|l| name.contains(l)) && focus.is_none_or(|f| name.contains(f))
}

/// A literal text as a Go regular expression.
fn go_regex_literal(text: &str) -> String {
    text.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

#[derive(Deserialize)]
struct Suite {
    #[serde(rename = "testcase", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "@name")]
    name: String,
    failure: Option<Failure>,
    skipped: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Failure {
    #[serde(rename = "$text", default)]
    text: String,
}

/// The counted specs' results in ginkgo's JUnit reports, one per parallel process
/// (`junit_01.xml`, …): a spec not run in a process is reported there as skipped, so a result
/// from the process that ran it wins.
fn read_reports(dir: &Path, focus: Option<&str>) -> anyhow::Result<BTreeMap<String, Outcome>> {
    let mut results = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("junit_") && n.ends_with(".xml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let suite: Suite = quick_xml::de::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for case in suite.cases.into_iter().filter(|c| counted(&c.name, focus)) {
            let outcome = match (case.failure, case.skipped) {
                (Some(f), _) => Outcome::Failed(what_failed(&f.text)),
                (None, Some(_)) => Outcome::Skipped,
                (None, None) => Outcome::Passed,
            };
            let known = results.entry(case.name).or_insert(Outcome::Skipped);
            if *known == Outcome::Skipped {
                *known = outcome;
            }
        }
    }
    Ok(results)
}

/// The longest summary of a failure kept.
const SUMMARY_CHARS: usize = 240;

/// A failure message on one line: ginkgo's message lies between the failing code's
/// locations, after a timestamp, with Go's error dump around the error's text.
fn what_failed(message: &str) -> String {
    let mut words = Vec::new();
    for line in message.lines().map(str::trim) {
        // Source locations, and the `<*errors.errorString | 0x…>: {` `}` around an error.
        if line.is_empty() || line.starts_with('/') || line.starts_with("<*") || line == "}" {
            continue;
        }
        // `Dec  7 05:54:50.026: ` before the first line.
        let line = match line.split_once(": ") {
            Some((stamp, rest)) if stamp.len() <= 22 && stamp.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && stamp.contains(':') => rest,
            _ => line,
        };
        words.extend(line.strip_prefix("s: ").unwrap_or(line).split_whitespace().map(str::to_string));
    }
    let text = words.join(" ");
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSED: &str = "[k8s.io] Pods should be submitted and removed [NodeConformance] [Conformance]";
    const FAILED: &str = "[k8s.io] Container Runtime blackbox test should report termination message [NodeConformance]";
    const SKIPPED: &str = "[k8s.io] Sysctls should support sysctls [NodeConformance]";

    fn report(cases: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><testsuite name="Kubernetes e2e suite" tests="3" failures="1" errors="0" time="12.5">{cases}</testsuite>"#
        )
    }

    #[test]
    fn reads_each_processs_junit_report_the_process_that_ran_a_spec_wins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = report(&format!(
            r#"<testcase name="{PASSED}" classname="Kubernetes e2e suite" time="3.1"></testcase>
  <testcase name="{FAILED}" classname="Kubernetes e2e suite" time="0"><skipped></skipped></testcase>
  <testcase name="[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance]" classname="Kubernetes e2e suite" time="0"><skipped></skipped></testcase>
  <testcase name="{SKIPPED}" classname="Kubernetes e2e suite" time="0.2"><skipped></skipped></testcase>
  <testcase name="[sig-apps] Deployment should run [Conformance]" classname="Kubernetes e2e suite" time="0"><skipped></skipped></testcase>"#
        ));
        let second = report(&format!(
            r#"<testcase name="{PASSED}" classname="Kubernetes e2e suite" time="0"><skipped></skipped></testcase>
  <testcase name="{FAILED}" classname="Kubernetes e2e suite" time="300.2">
    <failure type="Failure">/go/src/k8s.io/kubernetes/test/e2e/common/runtime.go:123&#xA;Expected&#xA;    &lt;string&gt;: &#34;&#34;&#xA;to equal&#xA;/go/src/k8s.io/kubernetes/test/e2e/common/runtime.go:130</failure>
    <system-out>log</system-out>
  </testcase>"#
        ));
        std::fs::write(dir.path().join("junit_01.xml"), first).expect("write");
        std::fs::write(dir.path().join("junit_02.xml"), second).expect("write");
        std::fs::write(dir.path().join("ginkgo.log"), "not a report").expect("write");
        let results = read_reports(dir.path(), None).expect("parsed");
        assert_eq!(results.len(), 3, "{results:?}");
        assert_eq!(results.get(PASSED), Some(&Outcome::Passed));
        assert_eq!(results.get(FAILED), Some(&Outcome::Failed("Expected <string>: \"\" to equal".into())));
        assert_eq!(results.get(SKIPPED), Some(&Outcome::Skipped));
        let report = Report { results, took: Duration::ZERO, dir: dir.path().into() };
        assert_eq!(report.summary(), (1, 1, 1));
        assert_eq!(read_reports(dir.path(), Some("Sysctls")).expect("parsed").keys().collect::<Vec<_>>(), [SKIPPED]);
    }

    #[test]
    fn a_broken_report_names_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("junit_01.xml"), "<testsuite><testcase").expect("write");
        let error = read_reports(dir.path(), None).expect_err("broken").to_string();
        assert!(error.contains("junit_01.xml"), "{error}");
    }

    #[test]
    fn a_failure_is_summed_up_on_one_line() {
        let message = "/go/src/k8s.io/kubernetes/test/e2e/framework/framework.go:629\nDec  7 05:54:50.026: Unexpected error:\n    <*errors.errorString | 0xc002eb9a60>: {\n        s: \"expected output\",\n    }\n/go/x.go:1";
        assert_eq!(what_failed(message), "Unexpected error: \"expected output\",");
        assert_eq!(what_failed("Dec  7 06:02:16.783: updating image did not reset the back-off value"), "updating image did not reset the back-off value");
        assert!(what_failed(&"word ".repeat(200)).ends_with('…'));
    }

    #[test]
    fn literals_are_escaped_for_ginkgo() {
        assert_eq!(go_regex_literal("[NodeConformance]"), r"\[NodeConformance\]");
        assert_eq!(go_regex_literal("a.b (c)"), r"a\.b \(c\)");
    }
}
