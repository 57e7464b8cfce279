//! busybox's `tar` applet over the container's files: what `kubectl cp` runs in a container
//! (`tar cf - PATH` to copy out, `tar -xmf - -C DIR` to copy in) and what a student types.
//! Archives are ustar/GNU as the `tar` crate reads and writes them; symbolic and hard links
//! are skipped with a message (the container's files have none).

use super::fs::{Fs, FsError, Node, resolve};
use std::io::Read;

/// What one `tar` invocation asks for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    mode: Option<char>,
    file: Option<String>,
    dir: Option<String>,
    verbose: bool,
    operands: Vec<String>,
}

/// Runs `tar` with `args` in folder `cwd`: its exit status.
pub fn run(cwd: &str, args: &[String], fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            err.extend_from_slice(
                format!("tar: {e}\nBusyBox v1.36.1 (2023-05-18 22:34:17 UTC) multi-call binary.\n\nUsage: tar c|x|t [-vf ARCHIVE] [-C DIR] [FILE]...\n")
                    .as_bytes(),
            );
            return 1;
        }
    };
    let base = options.dir.as_deref().map_or_else(|| cwd.to_string(), |d| resolve(cwd, d));
    if options.dir.is_some() && !fs.is_dir(&base) {
        err.extend_from_slice(format!("tar: can't change directory to '{}': {}\n", options.dir.as_deref().unwrap_or_default(), FsError::NotFound).as_bytes());
        return 1;
    }
    let archive = options.file.as_deref().filter(|f| *f != "-").map(|f| resolve(cwd, f));
    match options.mode {
        Some('c') => {
            if options.operands.is_empty() {
                err.extend_from_slice(b"tar: empty archive\n");
                return 1;
            }
            let (bytes, status) = create(fs, &base, &options, out, err);
            match archive {
                Some(path) => match fs.write(&path, &bytes, false) {
                    Ok(()) => status,
                    Err(e) => {
                        err.extend_from_slice(format!("tar: can't open '{path}': {e}\n").as_bytes());
                        1
                    }
                },
                None => {
                    out.extend_from_slice(&bytes);
                    status
                }
            }
        }
        Some(mode) => {
            let input = match &archive {
                Some(path) => match fs.read(path) {
                    Ok(b) => b.to_vec(),
                    Err(e) => {
                        err.extend_from_slice(format!("tar: can't open '{path}': {e}\n").as_bytes());
                        return 1;
                    }
                },
                None => stdin.to_vec(),
            };
            read(fs, &base, &input, mode == 'x', options.verbose, out, err)
        }
        None => {
            err.extend_from_slice(b"tar: need at least one of -c, -x or -t\n");
            1
        }
    }
}

/// busybox's option syntax: the first word may be letters without a dash (`tar cf - x`), and
/// `f` and `C` take the next free word.
fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut pending: Vec<char> = Vec::new();
    for (i, word) in args.iter().enumerate() {
        let letters = match word.as_str() {
            "--no-same-permissions" | "--no-same-owner" | "--same-owner" | "--numeric-owner" => continue,
            long if long.starts_with("--") => return Err(format!("unrecognized option '{long}'")),
            short if short.starts_with('-') && short.len() > 1 => &short[1..],
            bundle if i == 0 => bundle,
            operand => {
                if let Some(letter) = pending.pop() {
                    take(&mut options, letter, operand);
                } else {
                    options.operands.push(operand.to_string());
                }
                continue;
            }
        };
        for (at, letter) in letters.char_indices() {
            match letter {
                'c' | 'x' | 't' => {
                    if options.mode.is_some_and(|m| m != letter) {
                        return Err("only one of -c, -x or -t may be given".into());
                    }
                    options.mode = Some(letter);
                }
                'v' => options.verbose = true,
                'm' | 'o' | 'p' => {}
                'f' | 'C' if word.starts_with('-') && at + 1 < letters.len() => {
                    take(&mut options, letter, &letters[at + 1..]);
                    break;
                }
                'f' | 'C' => pending.insert(0, letter),
                'z' | 'j' | 'J' => return Err(format!("invalid option -- '{letter}': compressed archives are not simulated")),
                other => return Err(format!("invalid option -- '{other}'")),
            }
        }
    }
    match pending.last() {
        Some(letter) => Err(format!("option requires an argument -- '{letter}'")),
        None => Ok(options),
    }
}

fn take(options: &mut Options, letter: char, value: &str) {
    match letter {
        'f' => options.file = Some(value.to_string()),
        _ => options.dir = Some(value.to_string()),
    }
}

/// The archive of the operands, named as given without a leading `/` (as busybox warns), and
/// the status: 1 when an operand is missing, after archiving the rest.
fn create(fs: &Fs, base: &str, options: &Options, out: &mut Vec<u8>, err: &mut Vec<u8>) -> (Vec<u8>, i32) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut status = 0;
    let mut warned = false;
    for operand in &options.operands {
        let name = operand.trim_start_matches('/');
        if name.len() != operand.len() && !warned {
            err.extend_from_slice(b"tar: removing leading '/' from member names\n");
            warned = true;
        }
        let path = resolve(base, operand);
        if fs.get(&path).is_none() {
            err.extend_from_slice(format!("tar: can't stat '{operand}': {}\n", FsError::NotFound).as_bytes());
            status = 1;
            continue;
        }
        if let Err(e) = append(fs, &mut builder, &path, name.trim_end_matches('/'), options.verbose.then_some(&mut *out)) {
            err.extend_from_slice(format!("tar: {operand}: {e}\n").as_bytes());
            status = 1;
        }
    }
    match builder.into_inner() {
        Ok(bytes) => (bytes, status),
        Err(e) => {
            err.extend_from_slice(format!("tar: {e}\n").as_bytes());
            (Vec::new(), 1)
        }
    }
}

/// Appends `path` as `name`, and a folder's contents after it.
fn append(fs: &Fs, builder: &mut tar::Builder<Vec<u8>>, path: &str, name: &str, mut verbose: Option<&mut Vec<u8>>) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    let shown = match fs.get(path) {
        Some(Node::File { data, mode }) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(*mode);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, &data[..])?;
            name.to_string()
        }
        Some(Node::Dir) => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            let shown = if name.is_empty() { "./".to_string() } else { format!("{name}/") };
            builder.append_data(&mut header, &shown, std::io::empty())?;
            shown
        }
        None => return Ok(()),
    };
    if let Some(out) = verbose.as_deref_mut() {
        out.extend_from_slice(format!("{shown}\n").as_bytes());
    }
    if fs.is_dir(path) {
        for child in fs.list(path).unwrap_or_default() {
            let inner = if name.is_empty() { child.clone() } else { format!("{name}/{child}") };
            append(fs, builder, &resolve(path, &child), &inner, verbose.as_deref_mut())?;
        }
    }
    Ok(())
}

/// Lists (`t`) or extracts (`x`) an archive under `base`: members naming a path outside it
/// (`..`) are skipped, as GNU and busybox tar skip them.
fn read(fs: &mut Fs, base: &str, input: &[u8], extract: bool, verbose: bool, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let mut archive = tar::Archive::new(input);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return fail(err, e),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return fail(err, e),
        };
        let name = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => return fail(err, e),
        };
        if !extract || verbose {
            out.extend_from_slice(format!("{name}\n").as_bytes());
        }
        if !extract {
            continue;
        }
        if name.split('/').any(|part| part == "..") {
            err.extend_from_slice(format!("tar: skipping unsafe path '{name}'\n").as_bytes());
            continue;
        }
        let path = resolve(base, name.trim_start_matches('/'));
        let kind = entry.header().entry_type();
        let written = if kind.is_dir() {
            fs.mkdir(&path, true)
        } else if kind.is_file() {
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            let mut data = Vec::new();
            if let Err(e) = entry.read_to_end(&mut data) {
                return fail(err, e);
            }
            fs.mkdir(super::fs::parent(&path), true).and_then(|()| fs.write(&path, &data, false)).map(|()| fs.set_mode(&path, mode))
        } else {
            err.extend_from_slice(format!("tar: {name}: links are not simulated, skipped\n").as_bytes());
            Ok(())
        };
        if let Err(e) = written {
            err.extend_from_slice(format!("tar: can't create '{name}': {e}\n").as_bytes());
            return 1;
        }
    }
    0
}

fn fail(err: &mut Vec<u8>, e: std::io::Error) -> i32 {
    err.extend_from_slice(format!("tar: {e}\n").as_bytes());
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(fs: &mut Fs, cmd: &str, stdin: &[u8]) -> (i32, Vec<u8>, String) {
        let args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run("/", &args, fs, stdin, &mut out, &mut err);
        (status, out, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn what_kubectl_cp_runs_round_trips_a_folder_and_its_bytes() {
        let mut from = Fs::new();
        let binary: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        from.put("/data/app/blob.bin", &binary, 0o600);
        from.put("/data/app/conf/a.txt", b"hello\n", 0o644);
        let (status, archive, err) = tar(&mut from, "cf - /data/app", b"");
        assert_eq!((status, err.as_str()), (0, "tar: removing leading '/' from member names\n"));

        let mut to = Fs::new();
        to.mkdir("/restore", false).expect("mkdir");
        let (status, _, err) = tar(&mut to, "-xmf - -C /restore", &archive);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(to.read("/restore/data/app/blob.bin"), Ok(&binary[..]));
        assert_eq!(to.read("/restore/data/app/conf/a.txt"), Ok(&b"hello\n"[..]));
        assert_eq!(to.get("/restore/data/app/blob.bin"), Some(&Node::File { data: binary, mode: 0o600 }));

        let (status, listing, _) = tar(&mut to, "tf -", &archive);
        assert_eq!(status, 0);
        assert_eq!(String::from_utf8_lossy(&listing), "data/app/\ndata/app/blob.bin\ndata/app/conf/\ndata/app/conf/a.txt\n");
    }

    #[test]
    fn archives_in_files_and_relative_names() {
        let mut fs = Fs::new();
        fs.put("/tmp/x", b"1", 0o644);
        assert_eq!(tar(&mut fs, "-C /tmp -cf /root/a.tar x", b"").0, 0);
        fs.remove("/tmp/x", false).expect("rm");
        let (status, _, err) = tar(&mut fs, "-x -f /root/a.tar -C /tmp", b"");
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(fs.read("/tmp/x"), Ok(&b"1"[..]));
    }

    #[test]
    fn mistakes_get_busybox_messages() {
        let mut fs = Fs::new();
        let (status, _, err) = tar(&mut fs, "cf - /nope", b"");
        assert_eq!((status, err.lines().next()), (1, Some("tar: removing leading '/' from member names")));
        assert!(err.contains("tar: can't stat '/nope': No such file or directory"), "{err}");
        assert!(tar(&mut fs, "-xf", b"").2.starts_with("tar: option requires an argument -- 'f'"));
        assert!(tar(&mut fs, "czf - /tmp", b"").2.contains("compressed archives are not simulated"));
        assert!(tar(&mut fs, "-x -f - -C /missing", b"").2.starts_with("tar: can't change directory to '/missing'"));
        assert_eq!(tar(&mut fs, "xf -", b"not a tar archive at all, just some words").0, 1);
    }

    #[test]
    fn a_member_outside_the_folder_is_skipped() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        // `append_data` refuses `..`: write the name into the header as a hostile archive would.
        header.as_gnu_mut().expect("gnu").name[..12].copy_from_slice(b"../../etc/pw");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).expect("append");
        let archive = builder.into_inner().expect("archive");
        let mut fs = Fs::new();
        let (status, _, err) = tar(&mut fs, "xf - -C /tmp", &archive);
        assert_eq!(status, 0);
        assert!(err.contains("skipping unsafe path '../../etc/pw'"), "{err}");
        assert!(fs.get("/etc/pw").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut fs = Fs::new();
        fs.put("/tmp/a", b"abc", 0o644);
        let (_, good, _) = tar(&mut fs, "cf - /tmp", b"");
        for round in 0..2_000 {
            let mut input = good.clone();
            for _ in 0..(round % 16 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % input.len();
                input[at] = (seed >> 32) as u8;
            }
            let mut target = Fs::new();
            tar(&mut target, "xf - -C /", &input);
        }
    }
}
