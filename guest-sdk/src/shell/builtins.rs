//! The commands the shell knows, as busybox's applets do them, with busybox's messages:
//! `: true false echo printf exit sleep cat touch rm mkdir ls cp mv tee env printenv export
//! unset read cd pwd test [ hostname date wc grep head tail seq basename dirname id whoami
//! uname kill ip hexdump sh exec tar awk nslookup getent wget curl` (`tar`, `awk` and the name
//! lookups in their own modules), and the e2e test
//! images' `agnhost` and `nnp` (in [`super::test_images`]). `grep` takes basic and extended regular
//! expressions (regex-lite). `nslookup` and `getent` ask the shell's [`super::dns::Resolve`];
//! `wget` and `curl` reach the pods' servers an exec's [`super::net::Network`] knows.

use super::fs::{Fs, FsError, Node, resolve};
use super::state::{Shell, bounded};

/// What an applet runs with: its name and arguments, the shell, the container's files, its
/// stdin and where it writes.
struct Applet<'a, 's> {
    name: &'a str,
    args: &'a [String],
    sh: &'a mut Shell<'s>,
    fs: &'a mut Fs,
    stdin: &'a [u8],
    out: &'a mut Vec<u8>,
    err: &'a mut Vec<u8>,
}

/// Runs a builtin: its status, or `None` when the shell does not know the command.
pub fn run(sh: &mut Shell, argv: &[String], fs: &mut Fs, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> Option<i32> {
    let name = argv[0].rsplit('/').next().unwrap_or(&argv[0]);
    let args = &argv[1..];
    let changes_network = matches!(args.get(1).map(String::as_str), Some("add" | "del" | "delete" | "set" | "change" | "replace" | "flush"));
    if name == "ip" && !changes_network {
        return None;
    }
    if name == "nnp" {
        return Some(super::test_images::nnp(sh, out));
    }
    if name == "agnhost" || name == "agnhost-2" {
        return Some(super::test_images::agnhost(&argv[0], args, sh, fs, out, err));
    }
    let applet: fn(Applet) -> i32 = match name {
        ":" | "true" => |_| 0,
        "false" => |_| 1,
        "echo" => run_echo,
        "printf" => run_printf,
        "exit" => run_exit,
        "sleep" => run_sleep,
        "cat" => run_cat,
        "touch" => run_touch,
        "rm" => run_rm,
        "mkdir" => run_mkdir,
        "ls" => run_ls,
        "cp" | "mv" => run_cp,
        "tee" => run_tee,
        "env" | "printenv" => run_env,
        "export" => run_export,
        "unset" => run_unset,
        "read" => run_read,
        "cd" => run_cd,
        "pwd" => run_pwd,
        "test" | "[" => run_test,
        "hostname" => run_hostname,
        "date" => run_date,
        "wc" => run_wc,
        "grep" => run_grep,
        "head" | "tail" => run_head,
        "seq" => run_seq,
        "basename" | "dirname" => run_basename,
        "id" => run_id,
        "whoami" => run_whoami,
        "uname" => run_uname,
        "kill" => run_kill,
        "ip" => run_ip,
        "hexdump" => run_hexdump,
        "sh" | "ash" | "bash" | "dash" => run_sh,
        "tar" => run_tar,
        "awk" => run_awk,
        "exec" => run_exec,
        "nslookup" => |a| super::dns::nslookup(a.args, a.fs, a.sh.dns, a.out, a.err),
        "getent" => |a| super::dns::getent(a.args, a.fs, a.sh.dns, a.out, a.err),
        "wget" | "curl" => run_wget,
        _ => return None,
    };
    Some(applet(Applet { name, args, sh, fs, stdin, out, err }))
}

/// `echo`.
fn run_echo(applet: Applet) -> i32 {
    let Applet { args, out, .. } = applet;
    let (mut newline, mut escapes, mut rest) = (true, false, args);
    while let Some(flag) = rest.first().filter(|f| f.len() > 1 && f.starts_with('-') && f[1..].chars().all(|c| "neE".contains(c))) {
        newline &= !flag.contains('n');
        escapes = flag.contains('e') || escapes && !flag.contains('E');
        rest = &rest[1..];
    }
    let text = rest.join(" ");
    out.extend_from_slice(if escapes { unescape(&text) } else { text }.as_bytes());
    if newline {
        out.push(b'\n');
    }
    0
}

/// `printf`.
fn run_printf(applet: Applet) -> i32 {
    let Applet { name, args, out, err, .. } = applet;
    match args.split_first() {
        Some((format, values)) => {
            out.extend_from_slice(printf(format, values).as_bytes());
            0
        }
        None => {
            say(err, name, "usage: printf FORMAT [ARG]...");
            1
        }
    }
}

/// `exit`.
fn run_exit(applet: Applet) -> i32 {
    let Applet { args, sh, .. } = applet;
    let code = args.first().map_or(sh.vars.status, |c| c.parse::<i32>().unwrap_or(2));
    sh.exited = Some(code & 0xff);
    code & 0xff
}

/// `sleep`.
fn run_sleep(applet: Applet) -> i32 {
    let Applet { name, args, sh, err, .. } = applet;
    match args.iter().map(|a| duration(a)).sum::<Option<i64>>() {
        _ if args.iter().any(|a| a == "infinity" || a == "inf") => sh.wait_forever(),
        Some(ns) if !args.is_empty() => {
            sh.clock = sh.clock.saturating_add(ns);
            0
        }
        _ => {
            say(err, name, format!("invalid number '{}'", args.first().map_or("", String::as_str)));
            1
        }
    }
}

/// `cat`.
fn run_cat(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let mut status = 0;
    let files: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with('-') || *a == "-").collect();
    if files.is_empty() {
        out.extend_from_slice(stdin);
    }
    for file in files {
        match file {
            "-" => out.extend_from_slice(stdin),
            f => match fs.read(&resolve(&sh.vars.cwd, f)) {
                Ok(bytes) => out.extend_from_slice(bytes),
                Err(e) => {
                    say(err, name, format!("can't open '{f}': {e}"));
                    status = 1;
                }
            },
        }
    }
    status
}

/// `touch`.
fn run_touch(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, err, .. } = applet;
    each_file(args, |f| {
        let path = resolve(&sh.vars.cwd, f);
        match fs.get(&path) {
            Some(_) => Ok(()),
            None => fs.write(&path, b"", false).map_err(|e| format!("{f}: {e}")),
        }
    })
    .unwrap_or_else(|e| {
        say(err, name, e);
        1
    })
}

/// `rm`.
fn run_rm(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, err, .. } = applet;
    let (flags, files) = flags_and_operands(args);
    let (force, recursive) = (flags.contains('f'), flags.contains('r') || flags.contains('R'));
    let mut status = 0;
    for f in files {
        match fs.remove(&resolve(&sh.vars.cwd, f), recursive) {
            Ok(()) => {}
            Err(FsError::NotFound) if force => {}
            Err(FsError::NotEmpty) => {
                say(err, name, format!("'{f}' is a directory"));
                status = 1;
            }
            Err(e) => {
                say(err, name, format!("can't remove '{f}': {e}"));
                status = 1;
            }
        }
    }
    status
}

/// `mkdir`.
fn run_mkdir(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, err, .. } = applet;
    let (flags, dirs) = flags_and_operands(args);
    let mut status = 0;
    for d in dirs {
        if let Err(e) = fs.mkdir(&resolve(&sh.vars.cwd, d), flags.contains('p')) {
            say(err, name, format!("can't create directory '{d}': {e}"));
            status = 1;
        }
    }
    status
}

/// `ls`.
fn run_ls(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, out, err, .. } = applet;
    let (flags, paths) = flags_and_operands(args);
    let paths: Vec<&str> = if paths.is_empty() { vec!["."] } else { paths };
    let mut status = 0;
    for p in &paths {
        let path = resolve(&sh.vars.cwd, p);
        let names = match fs.get(&path) {
            Some(Node::Dir) => fs.list(&path).unwrap_or_default().into_iter().filter(|n| flags.contains('a') || !n.starts_with('.')).collect(),
            Some(Node::File { .. }) => vec![p.to_string()],
            None => {
                say(err, name, format!("{p}: No such file or directory"));
                status = 2;
                continue;
            }
        };
        if paths.len() > 1 && fs.is_dir(&path) {
            out.extend_from_slice(format!("{p}:\n").as_bytes());
        }
        for n in names {
            if flags.contains('l') {
                let child = if fs.is_dir(&path) { format!("{}/{n}", path.trim_end_matches('/')) } else { path.clone() };
                let (kind, size, mode) = match fs.get(&child) {
                    Some(Node::File { data, mode }) => ('-', data.len(), *mode),
                    _ => ('d', 4096, 0o755),
                };
                out.extend_from_slice(format!("{kind}{} 1 root root {size:>8} Jan  1 00:00 {n}\n", mode_string(mode)).as_bytes());
            } else {
                out.extend_from_slice(format!("{n}\n").as_bytes());
            }
        }
    }
    status
}

/// `cp` `mv`.
fn run_cp(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, err, .. } = applet;
    let (_, operands) = flags_and_operands(args);
    match operands.as_slice() {
        [from, to] => {
            let (src, mut dst) = (resolve(&sh.vars.cwd, from), resolve(&sh.vars.cwd, to));
            if fs.is_dir(&dst) {
                dst = format!("{}/{}", dst.trim_end_matches('/'), src.rsplit('/').next().unwrap_or_default());
            }
            match fs.read(&src).map(<[u8]>::to_vec).and_then(|data| fs.write(&dst, &data, false)) {
                Ok(()) if name == "mv" => fs.remove(&src, false).map_or(1, |_| 0),
                Ok(()) => 0,
                Err(e) => {
                    say(err, name, format!("can't stat '{from}': {e}"));
                    1
                }
            }
        }
        _ => {
            say(err, name, "missing file operand");
            1
        }
    }
}

/// `tee`.
fn run_tee(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let (flags, files) = flags_and_operands(args);
    out.extend_from_slice(stdin);
    each_file(&files.iter().map(|f| f.to_string()).collect::<Vec<_>>(), |f| {
        fs.write(&resolve(&sh.vars.cwd, f), stdin, flags.contains('a')).map_err(|e| format!("{f}: {e}"))
    })
    .unwrap_or_else(|e| {
        say(err, name, e);
        1
    })
}

/// `env` `printenv`.
fn run_env(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let assigns: Vec<&String> = args.iter().take_while(|a| a.contains('=')).collect();
    if name == "env" && assigns.len() < args.len() {
        let mut inner = sh.vars.clone();
        for a in &assigns {
            if let Some((k, v)) = a.split_once('=') {
                inner.values.insert(k.into(), v.into());
            }
        }
        let mut sub = sh.nested(&mut inner);
        let status = sub.run_argv(&args[assigns.len()..], fs, stdin, out, err);
        let (clock, steps, flags) = (sub.clock, sub.steps(), sub.flags());
        sh.absorb(clock, steps, flags);
        return status;
    }
    if name == "printenv" && !args.is_empty() {
        let mut status = 0;
        for a in args {
            match sh.vars.values.get(a) {
                Some(v) => out.extend_from_slice(format!("{v}\n").as_bytes()),
                None => status = 1,
            }
        }
        return status;
    }
    for (k, v) in &sh.vars.values {
        out.extend_from_slice(format!("{k}={v}\n").as_bytes());
    }
    0
}

/// `export`.
fn run_export(applet: Applet) -> i32 {
    let Applet { args, sh, .. } = applet;
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            sh.vars.values.insert(k.into(), bounded(v.into()));
        }
    }
    0
}

/// `unset`.
fn run_unset(applet: Applet) -> i32 {
    let Applet { args, sh, .. } = applet;
    for a in args {
        sh.vars.values.remove(a);
    }
    0
}

/// `read`.
fn run_read(applet: Applet) -> i32 {
    let Applet { args, sh, stdin, .. } = applet;
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let text = String::from_utf8_lossy(stdin);
    match text.lines().next() {
        Some(line) => {
            let mut fields: Vec<&str> = line.split_whitespace().collect();
            for (i, n) in names.iter().enumerate() {
                let value =
                    if i + 1 == names.len() { fields.split_off(i.min(fields.len())).join(" ") } else { fields.get(i).copied().unwrap_or("").to_string() };
                sh.vars.values.insert((*n).clone(), bounded(value));
            }
            0
        }
        None => 1,
    }
}

/// `cd`.
fn run_cd(applet: Applet) -> i32 {
    let Applet { args, sh, fs, err, .. } = applet;
    let target = args.first().cloned().unwrap_or_else(|| sh.var("HOME"));
    let path = resolve(&sh.vars.cwd, &target);
    if fs.is_dir(&path) {
        sh.vars.cwd = path;
        0
    } else {
        err.extend_from_slice(format!("sh: cd: can't cd to {target}: No such file or directory\n").as_bytes());
        2
    }
}

/// `pwd`.
fn run_pwd(applet: Applet) -> i32 {
    let Applet { sh, out, .. } = applet;
    out.extend_from_slice(format!("{}\n", sh.vars.cwd).as_bytes());
    0
}

/// `test` `[`.
fn run_test(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, err, .. } = applet;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = if name == "[" {
        match args.split_last() {
            Some((&"]", rest)) => rest.to_vec(),
            _ => {
                say(err, name, "missing ]");
                return 2;
            }
        }
    } else {
        args
    };
    match test(&args, fs, &sh.vars.cwd) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            say(err, name, e);
            2
        }
    }
}

/// `hostname`.
fn run_hostname(applet: Applet) -> i32 {
    let Applet { sh, fs, out, .. } = applet;
    let name = fs.read("/etc/hostname").map(|b| String::from_utf8_lossy(b).trim().to_string()).unwrap_or_else(|_| sh.var("HOSTNAME"));
    out.extend_from_slice(format!("{name}\n").as_bytes());
    0
}

/// `date`.
fn run_date(applet: Applet) -> i32 {
    let Applet { args, sh, out, .. } = applet;
    let format = args.iter().find_map(|a| a.strip_prefix('+')).unwrap_or("%a %b %e %H:%M:%S %Z %Y");
    out.extend_from_slice(format!("{}\n", date(sh.clock, format)).as_bytes());
    0
}

/// `wc`.
fn run_wc(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let (flags, files) = flags_and_operands(args);
    let count = |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        [data.iter().filter(|b| **b == b'\n').count(), text.split_whitespace().count(), data.len()]
    };
    let wanted: Vec<usize> = [('l', 0), ('w', 1), ('c', 2)].iter().filter(|(f, _)| flags.contains(*f)).map(|(_, i)| *i).collect();
    let wanted = if wanted.is_empty() { vec![0, 1, 2] } else { wanted };
    let show = |counts: [usize; 3], name: Option<&str>| {
        let numbers: Vec<String> = wanted.iter().map(|i| if wanted.len() == 1 { counts[*i].to_string() } else { format!("{:>9}", counts[*i]) }).collect();
        format!("{}{}\n", numbers.join(" "), name.map(|n| format!(" {n}")).unwrap_or_default())
    };
    if files.is_empty() {
        out.extend_from_slice(show(count(stdin), None).as_bytes());
        0
    } else {
        let mut status = 0;
        for f in files {
            match fs.read(&resolve(&sh.vars.cwd, f)) {
                Ok(data) => out.extend_from_slice(show(count(data), Some(f)).as_bytes()),
                Err(e) => {
                    say(err, name, format!("{f}: {e}"));
                    status = 1;
                }
            }
        }
        status
    }
}

/// `grep`.
fn run_grep(applet: Applet) -> i32 {
    let Applet { args, sh, fs, stdin, out, err, .. } = applet;
    grep(args, fs, &sh.vars.cwd, stdin, out, err)
}

/// `head` `tail`.
fn run_head(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let (mut lines, mut from_start, mut follow, mut files) = (10usize, false, false, Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-n" {
            i += 1;
            let n = args.get(i).map_or("10", String::as_str);
            from_start = n.starts_with('+');
            lines = n.trim_start_matches('+').parse().unwrap_or(10);
        } else if a == "-f" || a == "-F" {
            follow = true;
        } else if let Some(n) = a.strip_prefix('-').and_then(|n| n.parse().ok()) {
            lines = n;
        } else {
            files.push(a.clone());
        }
        i += 1;
    }
    let data = match files.first() {
        Some(f) => match fs.read(&resolve(&sh.vars.cwd, f)) {
            Ok(d) => d.to_vec(),
            Err(e) => {
                say(err, name, format!("can't open '{f}': {e}"));
                return 1;
            }
        },
        None => stdin.to_vec(),
    };
    let text = String::from_utf8_lossy(&data);
    let all: Vec<&str> = text.lines().collect();
    let chosen: &[&str] = match (name, from_start) {
        ("head", _) => &all[..lines.min(all.len())],
        (_, true) => &all[lines.saturating_sub(1).min(all.len())..],
        _ => &all[all.len().saturating_sub(lines)..],
    };
    for l in chosen {
        out.extend_from_slice(format!("{l}\n").as_bytes());
    }
    if follow { sh.wait_forever() } else { 0 }
}

/// `seq`.
fn run_seq(applet: Applet) -> i32 {
    let Applet { name, args, out, err, .. } = applet;
    let n: Vec<i64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (first, step, last) = match n.as_slice() {
        [last] => (1, 1, *last),
        [first, last] => (*first, 1, *last),
        [first, step, last] => (*first, *step, *last),
        _ => {
            say(err, name, "usage: seq [FIRST [INC]] LAST");
            return 1;
        }
    };
    let mut v = first;
    let mut count = 0;
    while step != 0 && (step > 0 && v <= last || step < 0 && v >= last) && count < 100_000 {
        out.extend_from_slice(format!("{v}\n").as_bytes());
        v += step;
        count += 1;
    }
    0
}

/// `basename` `dirname`.
fn run_basename(applet: Applet) -> i32 {
    let Applet { name, args, out, err, .. } = applet;
    match args.first() {
        Some(p) => {
            let trimmed = p.trim_end_matches('/');
            let answer = if name == "basename" {
                let base = trimmed.rsplit('/').next().unwrap_or(trimmed);
                args.get(1).and_then(|suffix| base.strip_suffix(suffix.as_str())).unwrap_or(base).to_string()
            } else {
                super::fs::parent(&resolve("/", trimmed)).to_string()
            };
            out.extend_from_slice(format!("{answer}\n").as_bytes());
            0
        }
        None => {
            say(err, name, "missing operand");
            1
        }
    }
}

/// `id`.
fn run_id(applet: Applet) -> i32 {
    let Applet { args, sh, out, .. } = applet;
    let (uid, gid) = (sh.vars.user.uid, sh.vars.user.gid);
    let line = match args.first().map(String::as_str) {
        Some("-u") => uid.to_string(),
        Some("-g" | "-G") => gid.to_string(),
        Some("-un") => user_name(uid).unwrap_or_else(|| uid.to_string()),
        _ => {
            let named = |id: i64| user_name(id).map_or(id.to_string(), |n| format!("{id}({n})"));
            format!("uid={} gid={} groups={}", named(uid), named(gid), named(gid))
        }
    };
    out.extend_from_slice(format!("{line}\n").as_bytes());
    0
}

/// The name `/etc/passwd` gives a uid (or gid) in the images the shell stands for.
fn user_name(id: i64) -> Option<String> {
    match id {
        0 => Some("root".into()),
        65534 => Some("nobody".into()),
        _ => None,
    }
}

/// `whoami`.
fn run_whoami(applet: Applet) -> i32 {
    let Applet { name, sh, out, err, .. } = applet;
    match user_name(sh.vars.user.uid) {
        Some(user) => {
            out.extend_from_slice(format!("{user}\n").as_bytes());
            0
        }
        None => {
            say(err, name, format!("unknown uid {}", sh.vars.user.uid));
            1
        }
    }
}

/// `hexdump -C`: the canonical hex and ASCII display, 16 bytes a line, then the length.
fn run_hexdump(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, stdin, out, err } = applet;
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut data = Vec::new();
    if files.is_empty() {
        data.extend_from_slice(stdin);
    }
    for f in files {
        match fs.read(&resolve(&sh.vars.cwd, f)) {
            Ok(bytes) => data.extend_from_slice(bytes),
            Err(e) => {
                say(err, name, format!("{f}: {e}"));
                return 1;
            }
        }
    }
    for (i, chunk) in data.chunks(16).enumerate() {
        let mut line = format!("{:08x}  ", i * 16);
        for j in 0..16 {
            line.push_str(&chunk.get(j).map_or_else(|| "   ".to_string(), |b| format!("{b:02x} ")));
            if j == 7 {
                line.push(' ');
            }
        }
        let ascii: String = chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { char::from(b) } else { '.' }).collect();
        out.extend_from_slice(format!("{line} |{ascii}|\n").as_bytes());
    }
    if !data.is_empty() {
        out.extend_from_slice(format!("{:08x}\n", data.len()).as_bytes());
    }
    0
}

/// `ip`: changing links, addresses or routes needs a privileged container; what it shows is
/// not simulated (the program is left to run as one the shell does not know).
fn run_ip(applet: Applet) -> i32 {
    let Applet { name, sh, err, .. } = applet;
    if sh.vars.user.privileged {
        return 0;
    }
    say(err, name, "RTNETLINK answers: Operation not permitted");
    2
}

/// `uname`.
fn run_uname(applet: Applet) -> i32 {
    let Applet { args, out, .. } = applet;
    let text = if args.iter().any(|a| a.contains('a')) { "Linux labkubelet 6.1.0 #1 SMP x86_64 GNU/Linux" } else { "Linux" };
    out.extend_from_slice(format!("{text}\n").as_bytes());
    0
}

/// `kill`.
fn run_kill(applet: Applet) -> i32 {
    let Applet { name, args, sh, err, .. } = applet;
    let mut signal = 15;
    let mut status = 0;
    for a in args {
        if let Some(s) = a.strip_prefix('-') {
            signal = match s.trim_start_matches("SIG") {
                "9" | "KILL" => 9,
                "2" | "INT" => 2,
                "1" | "HUP" => 1,
                _ => 15,
            };
        } else if a == "1" {
            sh.killed_main = Some(128 + signal);
        } else {
            say(err, name, format!("can't kill pid {a}: No such process"));
            status = 1;
        }
    }
    status
}

/// `sh` `ash` `bash` `dash`.
fn run_sh(applet: Applet) -> i32 {
    let Applet { args, sh, fs, stdin, out, err, .. } = applet;
    let script = match args.first().map(String::as_str) {
        Some("-c") => args.get(1).cloned().unwrap_or_default(),
        Some(file) => match fs.read(&resolve(&sh.vars.cwd, file)) {
            Ok(b) => String::from_utf8_lossy(b).into_owned(),
            Err(e) => {
                err.extend_from_slice(format!("sh: can't open '{file}': {e}\n").as_bytes());
                return 127;
            }
        },
        None => String::from_utf8_lossy(stdin).into_owned(),
    };
    match super::parse(&script) {
        Ok(parsed) => {
            let mut inner = sh.vars.clone();
            if args.first().map(String::as_str) == Some("-c") {
                inner.positional = args.iter().skip(2).cloned().collect();
            }
            let mut sub = sh.nested(&mut inner);
            let status = sub.run_script(&parsed, fs, &[], out, err);
            let (exited, clock, steps, flags) = (sub.exited, sub.clock, sub.steps(), sub.flags());
            sh.absorb(clock, steps, flags);
            exited.unwrap_or(status)
        }
        Err(e) => {
            err.extend_from_slice(format!("sh: {e}\n").as_bytes());
            2
        }
    }
}

/// `awk`.
fn run_awk(applet: Applet) -> i32 {
    let Applet { args, sh, fs, stdin, out, err, .. } = applet;
    super::awk::run(&sh.vars.cwd, args, fs, stdin, out, err)
}

/// `tar`.
fn run_tar(applet: Applet) -> i32 {
    let Applet { args, sh, fs, stdin, out, err, .. } = applet;
    super::tar::run(&sh.vars.cwd, args, fs, stdin, out, err)
}

/// `exec`.
fn run_exec(applet: Applet) -> i32 {
    let Applet { args, sh, fs, stdin, out, err, .. } = applet;
    if args.is_empty() { 0 } else { sh.run_argv(args, fs, stdin, out, err) }
}

/// `wget` `curl`, in [`super::net`].
fn run_wget(applet: Applet) -> i32 {
    let Applet { name, args, sh, fs, out, err, .. } = applet;
    let net = sh.net.as_mut().map(|n| &mut **n as &mut dyn super::net::Network);
    let at = super::net::Place { net, cwd: &sh.vars.cwd, fs };
    super::net::fetch(name, args, at, out, err)
}

/// Writes `name: text` to stderr, as an applet reports a problem.
fn say(err: &mut Vec<u8>, name: &str, text: impl std::fmt::Display) {
    err.extend_from_slice(format!("{name}: {text}\n").as_bytes());
}

fn each_file(files: &[String], mut f: impl FnMut(&str) -> Result<(), String>) -> Result<i32, String> {
    for file in files.iter().filter(|a| !a.starts_with('-')) {
        f(file)?;
    }
    Ok(0)
}

/// `-rf a b` → ("rf", [a, b]).
fn flags_and_operands(args: &[String]) -> (String, Vec<&str>) {
    let mut flags = String::new();
    let mut operands = Vec::new();
    for a in args {
        match a.strip_prefix('-') {
            Some(f) if !f.is_empty() => flags.push_str(f),
            _ => operands.push(a.as_str()),
        }
    }
    (flags, operands)
}

/// A duration as `sleep` takes it: seconds, with a fraction and an `s m h d` suffix.
fn duration(arg: &str) -> Option<i64> {
    let (number, unit) = match arg.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h' | 'd'))) => (&arg[..i], c),
        _ => (arg, 's'),
    };
    let seconds: f64 = number.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let scale = match unit {
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => 1.0,
    };
    let ns = seconds * scale * 1e9;
    (ns < 9.0e18).then_some(ns as i64)
}

/// `echo -e` and `printf`'s escapes.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('a') => out.push('\x07'),
            Some('e') => out.push('\x1b'),
            Some('0') => out.push('\0'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `printf FORMAT ARGS…`: `%s %b %d %i %u %x %o %c %%` with width and `-`/`0` flags; the
/// format is used again while arguments remain.
fn printf(format: &str, values: &[String]) -> String {
    let format = unescape(format);
    let mut out = String::new();
    let mut next = 0;
    loop {
        let mut chars = format.chars().peekable();
        let mut used = false;
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = String::new();
            while let Some(&d) = chars.peek().filter(|d| "-0123456789.".contains(**d)) {
                spec.push(d);
                chars.next();
            }
            let Some(conversion) = chars.next() else { break };
            if conversion == '%' {
                out.push('%');
                continue;
            }
            let arg = values.get(next).map_or("", String::as_str);
            next += 1;
            used = true;
            let text = match conversion {
                'd' | 'i' | 'u' => arg.trim().parse::<i64>().unwrap_or(0).to_string(),
                'x' => format!("{:x}", arg.trim().parse::<i64>().unwrap_or(0)),
                'o' => format!("{:o}", arg.trim().parse::<i64>().unwrap_or(0)),
                'c' => arg.chars().next().map(String::from).unwrap_or_default(),
                'b' => unescape(arg),
                _ => arg.to_string(),
            };
            let width: usize = spec.trim_start_matches(['-', '0']).split('.').next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let padded = if spec.starts_with('-') {
                format!("{text:<width$}")
            } else if spec.starts_with('0') {
                format!("{text:0>width$}")
            } else {
                format!("{text:>width$}")
            };
            out.push_str(&padded);
        }
        if !used || next >= values.len() {
            return out;
        }
    }
}

/// `test` and `[`: file tests, string and integer comparisons, `!`, `-a`, `-o`.
fn test(args: &[&str], fs: &Fs, cwd: &str) -> Result<bool, String> {
    if let Some(i) = args.iter().position(|a| *a == "-o") {
        return Ok(test(&args[..i], fs, cwd)? || test(&args[i + 1..], fs, cwd)?);
    }
    if let Some(i) = args.iter().position(|a| *a == "-a") {
        return Ok(test(&args[..i], fs, cwd)? && test(&args[i + 1..], fs, cwd)?);
    }
    let int = |s: &str| s.trim().parse::<i64>().map_err(|_| format!("{s}: bad number"));
    Ok(match args {
        [] => false,
        ["!", rest @ ..] => !test(rest, fs, cwd)?,
        [s] => !s.is_empty(),
        ["-z", s] => s.is_empty(),
        ["-n", s] => !s.is_empty(),
        [op @ ("-e" | "-f" | "-d" | "-s" | "-r" | "-w" | "-x" | "-L" | "-h"), path] => {
            let node = fs.get(&resolve(cwd, path));
            match *op {
                "-f" => matches!(node, Some(Node::File { .. })),
                "-d" => matches!(node, Some(Node::Dir)),
                "-s" => matches!(node, Some(Node::File { data, .. }) if !data.is_empty()),
                "-L" | "-h" => false,
                _ => node.is_some(),
            }
        }
        [a, "=" | "==", b] => a == b,
        [a, "!=", b] => a != b,
        [a, "-eq", b] => int(a)? == int(b)?,
        [a, "-ne", b] => int(a)? != int(b)?,
        [a, "-lt", b] => int(a)? < int(b)?,
        [a, "-le", b] => int(a)? <= int(b)?,
        [a, "-gt", b] => int(a)? > int(b)?,
        [a, "-ge", b] => int(a)? >= int(b)?,
        _ => return Err("syntax error".into()),
    })
}

fn grep(args: &[String], fs: &Fs, cwd: &str, stdin: &[u8], out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let (mut flags, mut operands) = (String::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        match args[i].strip_prefix('-') {
            Some("e") => {
                i += 1;
                operands.insert(0, args.get(i).cloned().unwrap_or_default());
            }
            Some(f) if !f.is_empty() => flags.push_str(f),
            _ => operands.push(args[i].clone()),
        }
        i += 1;
    }
    let Some((pattern, files)) = operands.split_first() else {
        err.extend_from_slice(b"grep: usage: grep [-qvicnEF] PATTERN [FILE]...\n");
        return 2;
    };
    let source = if flags.contains('F') {
        regex_lite::escape(pattern)
    } else if flags.contains('E') {
        pattern.clone()
    } else {
        basic_to_extended(pattern)
    };
    let source = if flags.contains('i') { format!("(?i){source}") } else { source };
    let re = match regex_lite::Regex::new(&source) {
        Ok(re) => re,
        Err(_) => {
            err.extend_from_slice(format!("grep: bad regex '{pattern}'\n").as_bytes());
            return 2;
        }
    };
    let inputs: Vec<(Option<&str>, Vec<u8>)> = if files.is_empty() {
        vec![(None, stdin.to_vec())]
    } else {
        let mut all = Vec::new();
        for f in files {
            match fs.read(&resolve(cwd, f)) {
                Ok(d) => all.push((Some(f.as_str()), d.to_vec())),
                Err(e) => err.extend_from_slice(format!("grep: {f}: {e}\n").as_bytes()),
            }
        }
        all
    };
    let many = inputs.len() > 1;
    let mut matched = 0;
    for (name, data) in &inputs {
        let text = String::from_utf8_lossy(data);
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            if re.is_match(line) == flags.contains('v') {
                continue;
            }
            count += 1;
            if flags.contains('q') || flags.contains('c') {
                continue;
            }
            let prefix = format!(
                "{}{}",
                name.filter(|_| many).map(|n| format!("{n}:")).unwrap_or_default(),
                if flags.contains('n') { format!("{}:", n + 1) } else { String::new() }
            );
            out.extend_from_slice(format!("{prefix}{line}\n").as_bytes());
        }
        if flags.contains('c') {
            out.extend_from_slice(format!("{}{count}\n", name.filter(|_| many).map(|n| format!("{n}:")).unwrap_or_default()).as_bytes());
        }
        matched += count;
    }
    if matched > 0 { 0 } else { 1 }
}

/// A basic regular expression in the extended syntax regex-lite reads: `\( \) \{ \} \| \+
/// \?` are the operators, their bare forms literal.
fn basic_to_extended(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(op @ ('(' | ')' | '{' | '}' | '|' | '+' | '?')) => out.push(op),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push_str("\\\\"),
            },
            '(' | ')' | '{' | '}' | '|' | '+' | '?' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `rw-r--r--` for a mode.
fn mode_string(mode: u32) -> String {
    (0..9).map(|i| if mode & (1 << (8 - i)) != 0 { ['r', 'w', 'x'][i % 3] } else { '-' }).collect()
}

/// Paths matching a pattern with `*` and `?` (in any component), sorted.
pub fn glob(fs: &Fs, cwd: &str, pattern: &str) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let mut found: Vec<String> = vec![if absolute { "/".to_string() } else { cwd.to_string() }];
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts {
        let mut next = Vec::new();
        for dir in &found {
            if part.contains(['*', '?']) {
                for name in fs.list(dir).unwrap_or_default() {
                    if !name.starts_with('.') && wildcard(part, &name) {
                        next.push(format!("{}/{name}", dir.trim_end_matches('/')));
                    }
                }
            } else {
                let path = format!("{}/{part}", dir.trim_end_matches('/'));
                if fs.get(&path).is_some() {
                    next.push(path);
                }
            }
        }
        found = next;
    }
    let prefix = format!("{}/", cwd.trim_end_matches('/'));
    let mut matches: Vec<String> = found.into_iter().map(|p| if absolute { p } else { p.strip_prefix(&prefix).map(str::to_string).unwrap_or(p) }).collect();
    matches.sort();
    matches
}

fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A time (host-clock ns) in `date`'s format: `%Y %m %d %e %H %M %S %s %a %b %Z %T %F %%`.
pub fn date(ns: i64, format: &str) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('s') => out.push_str(&secs.to_string()),
            Some('a') => out.push_str(DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)]),
            Some('b') => out.push_str(MONTHS[usize::try_from(month - 1).unwrap_or(0).min(11)]),
            Some('Z') => out.push_str("UTC"),
            Some('T') => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            Some('F') => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
