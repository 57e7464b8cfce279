//! The book under docs/ holds together: every relative link of README.md and the chapters
//! names a file that exists (and, with `#anchor`, one of its headings, as mdBook and GitHub
//! make their ids), and the book's SUMMARY.md lists every chapter. CI builds the book with
//! `mdbook build docs`, which checks only what SUMMARY.md names.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chapters() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && p.file_name().is_some_and(|n| n != "SUMMARY.md"))
        .collect();
    files.sort();
    files
}

/// The link targets of a Markdown text: what `](…)` holds, outside code spans and blocks.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = outside_code.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            found.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    found
}

/// A heading's id as mdBook and GitHub make it: lower case, spaces to `-`, other punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix('#')).map(|h| anchor(h.trim_start_matches('#'))).collect()
}

#[test]
fn every_relative_link_of_the_readme_and_the_book_resolves() {
    let mut broken = Vec::new();
    for file in chapters().into_iter().chain([workspace().join("README.md"), workspace().join("docs/SUMMARY.md")]) {
        let text = std::fs::read_to_string(&file).expect("a Markdown file");
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = link.split_once('#').map_or((link.as_str(), None), |(p, f)| (p, Some(f)));
            let target = if path.is_empty() { file.clone() } else { file.parent().expect("a folder").join(path) };
            let Ok(target_text) = std::fs::read_to_string(&target).or_else(|e| if target.is_dir() { Ok(String::new()) } else { Err(e) }) else {
                broken.push(format!("{}: {link} (no such file)", file.display()));
                continue;
            };
            if let Some(fragment) = fragment
                && !anchors(&target_text).iter().any(|a| a == fragment)
            {
                broken.push(format!("{}: {link} (no such heading)", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_books_summary_lists_every_chapter() {
    let summary = std::fs::read_to_string(workspace().join("docs/SUMMARY.md")).expect("docs/SUMMARY.md");
    let listed = links(&summary);
    let missing: Vec<String> =
        chapters().iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).filter(|name| !listed.iter().any(|l| l == name)).collect();
    assert!(missing.is_empty(), "chapters SUMMARY.md does not list: {missing:?}");
}

#[test]
fn links_and_anchors_are_read_as_mdbook_reads_them() {
    assert_eq!(links("see [a](a.md) and `[b](b.md)` then [c](c.md#x)\n```\n[d](d.md)\n```"), ["a.md", "c.md#x"]);
    assert_eq!(anchor(" Node labs: partition, reboot, a lost runtime, memory pressure"), "node-labs-partition-reboot-a-lost-runtime-memory-pressure");
}
