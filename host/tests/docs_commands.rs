//! The commands the README and the book show, as a reader copies them: every `labkubelet`
//! command in their shell blocks parses as written; the standalone lab's run against the
//! agent of the README's command 1 (in a copy of `examples/`), with the output their
//! `#   ` comment lines promise; and every `scripted` rules file in them passes `plugin check`.

#![allow(clippy::unwrap_used)] // a test fails where it unwraps

mod common;

use common::KillOnDrop;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labkubelet");
/// What `$(hostname)` names in the commands: the test's agent runs under this name.
const NODE: &str = "docs-node";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README and every chapter of the book.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![workspace().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(workspace().join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    chapters.retain(|p| p.extension().is_some_and(|e| e == "md"));
    chapters.sort();
    pages.extend(chapters);
    pages
}

/// A code block: its language and its lines.
type Block = (String, Vec<String>);

/// The code blocks of a page with the language they are marked with (`` ```sh ``), a
/// shell line continued with `\` joined to the next.
fn blocks(text: &str) -> Vec<Block> {
    let (mut blocks, mut open): (Vec<Block>, Option<Block>) = (Vec::new(), None);
    let mut continued = String::new();
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), Vec::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, lines)), None) => match line.strip_suffix('\\') {
                Some(start) => {
                    continued.push_str(if continued.is_empty() { start.trim_end() } else { start.trim() });
                    continued.push(' ');
                }
                None if continued.is_empty() => lines.push(line.to_string()),
                None => lines.push(format!("{}{}", std::mem::take(&mut continued), line.trim_start())),
            },
            (None, None) => {}
        }
    }
    blocks
}

/// A `labkubelet` command of a shell line, as the words a shell would pass: after
/// `cargo run … -p labkubelet --` or a leading `labkubelet`, up to a comment or the end of
/// the command; `$(hostname)` is the test's node.
fn command(line: &str) -> Option<Vec<String>> {
    let rest = match line.split_once("-p labkubelet -- ") {
        Some((cargo, rest)) if cargo.trim_start().starts_with("cargo run") => rest,
        _ => line.trim_start().strip_prefix("labkubelet ")?,
    };
    let rest = rest.split(" #").next().unwrap_or_default().replace("$(hostname)", NODE);
    let mut words: Vec<String> = Vec::new();
    let mut quote: Option<char> = None;
    let mut word: Option<String> = None;
    for c in rest.chars() {
        match (quote, c) {
            (None, '|' | ';' | '&' | ')') => break,
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}

fn labkubelet(args: &[String], dir: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(dir).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_labkubelet_command_in_the_docs_parses_as_written() {
    let mut checked = 0;
    for page in pages() {
        for (_, lines) in blocks(&std::fs::read_to_string(&page).unwrap()).into_iter().filter(|(lang, _)| ["sh", "bash"].contains(&lang.as_str())) {
            for args in lines.iter().filter_map(|l| command(l)) {
                // `--help` after the words clap has checked, before what `--` passes on.
                let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
                let mut asked = args.clone();
                asked.insert(at, "--help".into());
                let out = labkubelet(&asked, &workspace());
                assert!(out.status.success(), "{}: labkubelet {}\n{}", page.display(), args.join(" "), text(&out));
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "the docs' labkubelet commands: found {checked}");
}

#[test]
fn every_scripted_rules_file_in_the_docs_passes_plugin_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scripted.yaml");
    let mut checked = 0;
    for page in pages() {
        for (_, lines) in blocks(&std::fs::read_to_string(&page).unwrap()).into_iter().filter(|(lang, _)| lang == "yaml") {
            let rules = lines.join("\n");
            if !rules.lines().any(|l| l.starts_with("rules:")) {
                continue;
            }
            std::fs::write(&file, &rules).unwrap();
            let out = labkubelet(&["plugin".into(), "check".into(), file.to_str().unwrap().into()], dir.path());
            assert!(out.status.success(), "{}:\n{rules}\n{}", page.display(), text(&out));
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs' scripted rules files: found {checked}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &to.join(entry.file_name())),
            false => drop(std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap()),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `what` until `done` accepts its output, for a minute at most; returns that output.
fn until(what: &str, mut run: impl FnMut() -> Output, done: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = run();
        if done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: not as the docs say within 90 s; last:\n{}", text(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The shell block of docs/lab.md's five-minute lab, line by line, in a copy of `examples/`
/// served by the README's command 1 on ports of the test's choosing. Lines that open an editor,
/// serve a page until stopped, or build a plugin for wasm (the scaffold test does) are left out.
#[test]
fn the_standalone_labs_commands_run_as_written() {
    let lab = std::fs::read_to_string(workspace().join("docs/lab.md")).unwrap();
    let section = lab.split("## A five-minute lab").nth(1).unwrap().split("\n## ").next().unwrap();
    let (_, lines) = blocks(section).into_iter().find(|(lang, _)| lang == "sh").expect("the lab's shell block");
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let run = readme.lines().find_map(|l| command(l).filter(|args| args.first().is_some_and(|a| a == "run"))).expect("the README's command 1");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&workspace().join("examples"), &dir.path().join("examples"));
    let root = dir.path().join("state");
    let root_dir = ["--root-dir".to_string(), root.to_str().unwrap().to_string()];
    let (port, healthz) = (free_port(), free_port());
    let mut agent = Command::new(BIN);
    agent.args(&run).args(&root_dir).args(["--hostname-override", NODE, "--port", &port.to_string(), "--healthz-port", &healthz.to_string()]);
    let _agent = KillOnDrop(agent.current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    let mut ran = 0;
    for (i, line) in lines.iter().enumerate() {
        let promised = lines.get(i + 1).and_then(|next| next.strip_prefix("#   ")).map(|p| p.trim_end_matches('…').trim().to_string());
        if line.starts_with("curl ") {
            let line = line.replace("$(hostname)", NODE).replace(":10250", &format!(":{port}")).replace(":10248", &format!(":{healthz}"));
            let shell = || Command::new("bash").args(["-o", "pipefail", "-c", &line]).current_dir(dir.path()).output().unwrap();
            until(&line, shell, |out| out.status.success() && !out.stdout.is_empty());
        } else if let Some(mut args) = command(line) {
            if args.iter().any(|a| a == "--serve") {
                continue;
            }
            if ["trigger", "timeline", "node", "exec"].contains(&args[0].as_str()) || args[..2] == ["plugin", "list"] {
                args.extend(root_dir.iter().cloned());
            }
            let out = until(
                line,
                || labkubelet(&args, dir.path()),
                |out| match &promised {
                    Some(promised) => text(out).contains(promised.as_str()),
                    None => out.status.success(),
                },
            );
            assert!(promised.is_some() || out.status.success(), "{line}\n{}", text(&out));
        } else {
            continue;
        }
        ran += 1;
    }
    assert!(ran >= 10, "the lab's commands run: {ran}");
    assert!(dir.path().join("timeline.html").is_file(), "timeline --format html -o timeline.html wrote no file");
    assert!(dir.path().join("examples/plugins/slow-db.py").is_file(), "plugin new slow-db --python wrote no scenario");
    assert!(dir.path().join("slow-start/Cargo.toml").is_file(), "plugin new slow-start wrote no crate");
}
