//! The programs of Kubernetes' e2e test images, as far as they print and exit, in the words
//! the node conformance tests read in a container's log (`test/images` in the Kubernetes
//! tree, agnhost 2.21). `agnhost` (also run as `/agnhost-2`): `mounttest` reports a volume's
//! files (content, mode, permissions, the mount type), `entrypoint-tester` its command line,
//! `pause` says `Paused` and waits; its servers (`liveness`, `test-webserver`, `netexec`,
//! `serve-hostname`, `porter`) run until stopped. `nnp` (the `nonewprivs` image, a setuid
//! program) prints the uid it runs as.

use super::fs::{Fs, FsError, Node, resolve};
use super::state::{Context, Shell};

/// What `mounttest --new_file_*` writes.
const NEW_FILE_CONTENT: &str = "mount-tester new file\n";
/// How often `mounttest --file_content_in_loop` reads its file.
const LOOP_PERIOD_SECONDS: u32 = 2;
/// The `statfs` type number agnhost prints for a folder that is no tmpfs: ext4's, as on a
/// node whose disk is ext4.
const EXT4_MAGIC: u32 = 0xef53;

/// `nnp`: setuid root, so it runs as root unless no_new_privs keeps the caller's uid.
pub fn nnp(sh: &Shell, out: &mut Vec<u8>) -> i32 {
    let uid = if sh.vars.user.no_new_privileges { sh.vars.user.uid } else { 0 };
    out.extend_from_slice(format!("Effective uid: {uid}\n").as_bytes());
    0
}

/// Runs `agnhost SUBCOMMAND FLAGS…`; `argv0` is the name it was run by.
pub fn agnhost(argv0: &str, args: &[String], sh: &mut Shell, fs: &mut Fs, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let Some((command, flags)) = args.split_first() else {
        out.extend_from_slice(b"agnhost is a test image with commands used by Kubernetes' end-to-end tests.\n");
        return 0;
    };
    match command.as_str() {
        "mounttest" => mounttest(&Flags::parse(flags), &sh.vars.cwd, fs, out),
        "entrypoint-tester" => {
            out.extend_from_slice(format!("[{}]\n", std::iter::once(argv0).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")).as_bytes());
            0
        }
        "pause" => {
            out.extend_from_slice(b"Paused\n");
            sh.wait_forever()
        }
        "liveness" | "test-webserver" | "netexec" | "serve-hostname" | "porter" | "nettest" | "logs-generator" => {
            if sh.context == Context::Main {
                sh.external = true;
            }
            0
        }
        other => {
            err.extend_from_slice(format!("Error: unknown command \"{other}\" for \"agnhost\"\nRun 'agnhost --help' for usage.\n").as_bytes());
            1
        }
    }
}

/// `agnhost mounttest` with `--file_content_in_loop` reads its file every 2 s for
/// `--retry_time` seconds: that part runs as a shell loop over one read per turn, so the
/// reads happen as host time passes and see the volume's updates. The script the container
/// runs instead of the command line, when it is one.
pub fn as_script(argv: &[String]) -> Option<String> {
    let program = argv.first()?.rsplit('/').next()?;
    if !matches!(program, "agnhost" | "agnhost-2") || argv.get(1).map(String::as_str) != Some("mounttest") {
        return None;
    }
    let flags = Flags::parse(&argv[2..]);
    let path = flags.get("file_content_in_loop")?;
    let retry: u32 = flags.get("retry_time").and_then(|t| t.parse().ok()).unwrap_or(180);
    let break_on_expected = flags.get("break_on_expected_content").is_none_or(|b| b != "false");
    let others: Vec<String> = argv[2..]
        .iter()
        .filter(|f| !f.contains("file_content_in_loop") && !f.contains("retry_time") && !f.contains("break_on_expected"))
        .map(|f| super::parse::quote(f))
        .collect();
    let turns = retry.div_ceil(LOOP_PERIOD_SECONDS);
    let path = super::parse::quote(path);
    Some(format!(
        "{program} mounttest {others}; status=$?; turn=0; while [ $turn -lt {turns} ]; do {program} mounttest --loop_turn={path} --break_on_expected_content={break_on_expected} && break; sleep {LOOP_PERIOD_SECONDS}; turn=$((turn+1)); done; exit $status",
        others = others.join(" ")
    ))
}

/// Go flags as cobra takes them: `--name=value`, `--name value`, a lone `--name` for `true`.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut flags = Vec::new();
        let mut words = args.iter().peekable();
        while let Some(word) = words.next() {
            let Some(flag) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else { continue };
            match flag.split_once('=') {
                Some((name, value)) => flags.push((name.to_string(), value.to_string())),
                None => {
                    let value = words.next_if(|w| !w.starts_with('-')).cloned().unwrap_or_else(|| "true".into());
                    flags.push((flag.to_string(), value));
                }
            }
        }
        Flags(flags)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

/// Go's `%q` of a path.
fn quoted(path: &str) -> String {
    format!("\"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
}

/// How Go's `os` package words a failed file operation after the path.
fn go_error(e: FsError) -> &'static str {
    match e {
        FsError::NotFound => "no such file or directory",
        FsError::IsDir => "is a directory",
        FsError::NotDir => "not a directory",
        FsError::Exists => "file exists",
        FsError::NotEmpty => "directory not empty",
        FsError::NoSpace => "no space left on device",
        FsError::ReadOnly => "read-only file system",
    }
}

/// Go's `os.FileMode.String()` of a file or folder with these permission bits.
fn go_mode(dir: bool, mode: u32) -> String {
    let perms: String = (0..9).map(|i| if mode & (1 << (8 - i)) != 0 { ['r', 'w', 'x'][i % 3] } else { '-' }).collect();
    let mut kind = String::new();
    if dir {
        kind.push('d');
    }
    if mode & 0o2000 != 0 {
        kind.push('g');
    }
    if mode & 0o1000 != 0 {
        kind.push('t');
    }
    if kind.is_empty() {
        kind.push('-');
    }
    kind + &perms
}

/// A path's kind and permission bits, as `stat` gives them.
fn stat(fs: &Fs, path: &str) -> Result<(bool, u32), FsError> {
    match fs.get(path) {
        Some(Node::File { mode, .. }) => Ok((false, *mode)),
        Some(Node::Dir) => Ok((true, fs.dir_mode(path))),
        None => Err(FsError::NotFound),
    }
}

/// `agnhost mounttest`, in its order: the mount type, the new files, mode, permissions,
/// owner, then the content. Exit 1 when any step failed.
fn mounttest(flags: &Flags, cwd: &str, fs: &mut Fs, out: &mut Vec<u8>) -> i32 {
    let mut say = |line: String| out.extend_from_slice(format!("{line}\n").as_bytes());
    let mut failed = false;
    if let Some(path) = flags.get("loop_turn") {
        return loop_turn(&resolve(cwd, path), flags.get("break_on_expected_content") != Some("false"), fs, &mut say);
    }
    if let Some(p) = flags.get("fs_type") {
        let path = resolve(cwd, p);
        match stat(fs, &path) {
            Ok(_) if fs.mount_of(&path).is_some_and(|m| m.tmpfs) => say(format!("mount type of {}: tmpfs", quoted(p))),
            Ok(_) => say(format!("mount type of {}: {EXT4_MAGIC}", quoted(p))),
            Err(e) => {
                say(format!("error from statfs({}): {}", quoted(p), go_error(e)));
                failed = true;
            }
        }
    }
    for (flag, mode) in [("new_file_0644", 0o644), ("new_file_0666", 0o666), ("new_file_0660", 0o660), ("new_file_0777", 0o777)] {
        let Some(p) = flags.get(flag) else { continue };
        let path = resolve(cwd, p);
        let existed = fs.get(&path).is_some();
        match fs.write(&path, NEW_FILE_CONTENT.as_bytes(), false) {
            Ok(()) => {
                if !existed {
                    fs.set_mode(&path, mode);
                }
                failed |= !read_content(fs, p, &path, &mut say);
            }
            Err(e) => {
                say(format!("error writing new file {}: open {path}: {}", quoted(p), go_error(e)));
                failed = true;
            }
        }
    }
    for (flag, what) in [("file_mode", "mode"), ("file_perm", "perms")] {
        let Some(p) = flags.get(flag) else { continue };
        match stat(fs, &resolve(cwd, p)) {
            Ok((dir, mode)) => say(format!("{what} of file {}: {}", quoted(p), if what == "mode" { go_mode(dir, mode) } else { go_mode(false, mode & 0o777) })),
            Err(e) => {
                say(format!("error from Stat({}): stat {}: {}", quoted(p), resolve(cwd, p), go_error(e)));
                failed = true;
            }
        }
    }
    if let Some(p) = flags.get("file_owner") {
        match stat(fs, &resolve(cwd, p)) {
            Ok(_) => {
                say(format!("owner UID of {}: 0", quoted(p)));
                say(format!("owner GID of {}: 0", quoted(p)));
            }
            Err(e) => {
                say(format!("error from stat({}): {}", quoted(p), go_error(e)));
                failed = true;
            }
        }
    }
    if let Some(p) = flags.get("file_content") {
        failed |= !read_content(fs, p, &resolve(cwd, p), &mut say);
    }
    i32::from(failed)
}

/// Prints a file's content as `mounttest` does; false when it cannot be read.
fn read_content(fs: &Fs, shown: &str, path: &str, say: &mut impl FnMut(String)) -> bool {
    match fs.read(path) {
        Ok(bytes) => {
            say(format!("content of file {}: {}", quoted(shown), String::from_utf8_lossy(bytes)));
            true
        }
        Err(e) => {
            say(format!("error reading file content for {}: open {path}: {}", quoted(shown), go_error(e)));
            false
        }
    }
}

/// One read of `--file_content_in_loop` (see [`as_script`]): status 0 when the loop ends here.
fn loop_turn(path: &str, break_on_expected: bool, fs: &Fs, say: &mut impl FnMut(String)) -> i32 {
    match fs.read(path) {
        Ok(bytes) => {
            let content = String::from_utf8_lossy(bytes);
            say(format!("content of file {}: {content}", quoted(path)));
            if !break_on_expected {
                return 1;
            }
            if content != NEW_FILE_CONTENT {
                say(format!("Unexpected content. Expected: {NEW_FILE_CONTENT}. Retrying"));
                return 1;
            }
            0
        }
        Err(e) => {
            say(format!("Error reading file {path}: open {path}: {}, retrying", go_error(e)));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Process, ProcessState};
    use super::*;

    const S: i64 = 1_000_000_000;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    /// Runs agnhost as a container's command over `fs` until `until` seconds: its log lines.
    fn run_for(words: &[&str], fs: &mut Fs, until: i64) -> (Vec<String>, ProcessState) {
        let mut p = Process::start(&argv(words), &[], 0);
        for t in 0..=until {
            p.advance(fs, t * S, crate::shell::dns::nowhere);
        }
        (p.take_output().into_iter().map(|o| o.text).collect(), p.state())
    }

    #[test]
    fn mounttest_reports_a_volumes_file_as_the_volume_tests_read_it() {
        let mut fs = Fs::new();
        fs.put("/etc/configmap-volume/data-1", b"value-1", 0o400);
        let (lines, state) =
            run_for(&["/agnhost", "mounttest", "--file_content=/etc/configmap-volume/data-1", "--file_mode=/etc/configmap-volume/data-1"], &mut fs, 1);
        assert_eq!(lines, ["mode of file \"/etc/configmap-volume/data-1\": -r--------", "content of file \"/etc/configmap-volume/data-1\": value-1"]);
        assert_eq!(state, ProcessState::Exited { code: 0, at: 0 });
    }

    #[test]
    fn mounttest_writes_new_files_with_their_mode_and_fails_on_a_missing_one() {
        let mut fs = Fs::new();
        fs.mkdir("/test-volume", false).expect("mkdir");
        let (lines, state) = run_for(
            &["agnhost", "mounttest", "--fs_type=/test-volume", "--new_file_0660=/test-volume/test-file", "--file_perm=/test-volume/test-file"],
            &mut fs,
            0,
        );
        assert_eq!(
            lines,
            [
                "mount type of \"/test-volume\": 61267",
                "content of file \"/test-volume/test-file\": mount-tester new file",
                "",
                "perms of file \"/test-volume/test-file\": -rw-rw----"
            ]
        );
        assert_eq!(state, ProcessState::Exited { code: 0, at: 0 });
        let (lines, state) = run_for(&["agnhost", "mounttest", "--file_content", "/nope"], &mut fs, 0);
        assert_eq!(lines, ["error reading file content for \"/nope\": open /nope: no such file or directory"]);
        assert_eq!(state, ProcessState::Exited { code: 1, at: 0 });
    }

    #[test]
    fn mounttest_in_a_loop_reads_as_time_passes_and_sees_an_update() {
        let mut fs = Fs::new();
        fs.put("/etc/cm/data-1", b"value-1", 0o644);
        let words = argv(&["/agnhost", "mounttest", "--break_on_expected_content=false", "--retry_time=6", "--file_content_in_loop=/etc/cm/data-1"]);
        let mut p = Process::start(&words, &[], 0);
        p.advance(&mut fs, 0, crate::shell::dns::nowhere);
        fs.put("/etc/cm/data-1", b"value-2", 0o644);
        p.advance(&mut fs, 4 * S, crate::shell::dns::nowhere);
        let lines: Vec<(i64, String)> = p.take_output().into_iter().map(|o| (o.time / S, o.text)).collect();
        assert_eq!(
            lines,
            [
                (0, "content of file \"/etc/cm/data-1\": value-1".to_string()),
                (2, "content of file \"/etc/cm/data-1\": value-2".to_string()),
                (4, "content of file \"/etc/cm/data-1\": value-2".to_string())
            ]
        );
        p.advance(&mut fs, 10 * S, crate::shell::dns::nowhere);
        assert_eq!(p.state(), ProcessState::Exited { code: 0, at: 6 * S }, "three turns of 2 s");
    }

    #[test]
    fn mounttest_sees_an_empty_dirs_mode_and_a_tmpfs() {
        let mut fs = Fs::new();
        fs.mount("/test-volume", super::super::fs::MountPoint { mode: 0o777, read_only: false, tmpfs: true });
        let (lines, _) = run_for(&["/agnhost", "mounttest", "--fs_type=/test-volume", "--file_perm=/test-volume", "--file_mode=/test-volume"], &mut fs, 0);
        assert_eq!(lines, ["mount type of \"/test-volume\": tmpfs", "mode of file \"/test-volume\": drwxrwxrwx", "perms of file \"/test-volume\": -rwxrwxrwx"]);
    }

    #[test]
    fn entrypoint_tester_prints_its_command_line_and_pause_waits() {
        let (lines, state) = run_for(&["/agnhost-2", "entrypoint-tester", "override", "arguments"], &mut Fs::new(), 0);
        assert_eq!(lines, ["[/agnhost-2 entrypoint-tester override arguments]"]);
        assert_eq!(state, ProcessState::Exited { code: 0, at: 0 });
        let (lines, state) = run_for(&["/agnhost", "pause"], &mut Fs::new(), 5);
        assert_eq!((lines, state), (vec!["Paused".to_string()], ProcessState::Forever));
        let (_, state) = run_for(&["/agnhost", "liveness"], &mut Fs::new(), 5);
        assert_eq!(state, ProcessState::External);
    }

    #[test]
    fn go_modes_read_as_go_prints_them() {
        assert_eq!(go_mode(false, 0o644), "-rw-r--r--");
        assert_eq!(go_mode(true, 0o3777), "dgtrwxrwxrwx");
        assert_eq!(go_mode(false, 0o777), "-rwxrwxrwx");
    }
}
