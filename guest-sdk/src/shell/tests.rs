//! The shell against busybox's documented behaviour: exit codes, `$?`, quoting, field
//! splitting, redirection, loops over time, and execs beside a running process.

use super::*;

const S: i64 = 1_000_000_000;

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs a script to `until` seconds: its lines (seconds, stderr, text) and its state.
fn run(script: &str, until: i64) -> (Vec<(i64, bool, String)>, ProcessState, Fs) {
    let mut fs = Fs::new();
    fs.put("/etc/hostname", b"web-0\n", 0o644);
    let mut p = Process::start(&sh(script), &[("GREETING".into(), "hello world".into())], 0);
    for t in 0..=until {
        p.advance(&mut fs, t * S, crate::shell::dns::nowhere);
    }
    let lines = p.take_output().into_iter().map(|o| (o.time / S, o.stderr, o.text)).collect();
    (lines, p.state(), fs)
}

fn texts(lines: &[(i64, bool, String)]) -> Vec<&str> {
    lines.iter().map(|(_, _, t)| t.as_str()).collect()
}

#[test]
fn a_script_prints_and_exits_with_its_status() {
    let (lines, state, _) = run("echo hello; exit 3", 1);
    assert_eq!(lines, [(0, false, "hello".to_string())]);
    assert_eq!(state, ProcessState::Exited { code: 3, at: 0 });
    let (_, state, _) = run("false", 0);
    assert_eq!(state, ProcessState::Exited { code: 1, at: 0 }, "the last status is the exit status");
    let (_, state, _) = run("exit 256", 0);
    assert_eq!(state, ProcessState::Exited { code: 0, at: 0 }, "exit codes are taken modulo 256");
}

#[test]
fn a_shell_without_a_script_or_a_terminal_ends_at_once() {
    let mut p = Process::start(&["sh".into()], &[], 5 * S);
    p.advance(&mut Fs::new(), 5 * S, crate::shell::dns::nowhere);
    assert_eq!(p.state(), ProcessState::Exited { code: 0, at: 5 * S });
}

#[test]
fn a_program_the_shell_does_not_know_runs_until_it_is_stopped() {
    let mut p = Process::start(&["nginx".into(), "-g".into(), "daemon off;".into()], &[], 0);
    p.advance(&mut Fs::new(), 100 * S, crate::shell::dns::nowhere);
    assert_eq!(p.state(), ProcessState::External);
    p.kill(143, 120 * S);
    assert_eq!(p.state(), ProcessState::Exited { code: 143, at: 120 * S });
}

#[test]
fn sleep_waits_on_the_host_clock_and_output_keeps_its_time() {
    let (lines, state, _) = run("echo one; sleep 2; echo two; sleep 1.5; echo three", 10);
    assert_eq!(lines, [(0, false, "one".into()), (2, false, "two".into()), (3, false, "three".into())]);
    assert!(matches!(state, ProcessState::Exited { code: 0, at } if at == 3 * S + S / 2));
    let (lines, state, _) = run("echo a; sleep 10; echo b", 5);
    assert_eq!(texts(&lines), ["a"], "not yet");
    assert_eq!(state, ProcessState::Running);
}

#[test]
fn a_line_without_its_newline_is_logged_when_the_process_waits_at_the_time_it_was_written() {
    let (lines, ..) = run("echo -n partial; sleep 5; echo -n more; echo; sleep 600", 10);
    assert_eq!(lines, [(0, false, "partial".to_string()), (5, false, "more".to_string())]);
}

#[test]
fn the_kubernetes_io_counter_loop_logs_a_line_a_second() {
    let (lines, state, _) = run(r#"i=0; while true; do echo "$i: $(date +%T)"; i=$((i+1)); sleep 1; done"#, 4);
    assert_eq!(texts(&lines), ["0: 00:00:00", "1: 00:00:01", "2: 00:00:02", "3: 00:00:03", "4: 00:00:04"]);
    assert_eq!(state, ProcessState::Running);
}

#[test]
fn the_liveness_example_removes_its_file_after_30_seconds() {
    let mut fs = Fs::new();
    let mut p = Process::start(&sh("touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"), &[], 0);
    let probe = |p: &Process, fs: &mut Fs, t: i64| p.exec(fs, &["cat".into(), "/tmp/healthy".into()], &[], t, S);
    p.advance(&mut fs, 10 * S, crate::shell::dns::nowhere);
    assert_eq!(probe(&p, &mut fs, 10 * S).code, 0);
    p.advance(&mut fs, 31 * S, crate::shell::dns::nowhere);
    let failed = probe(&p, &mut fs, 31 * S);
    assert_eq!((failed.code, String::from_utf8_lossy(&failed.stderr).as_ref()), (1, "cat: can't open '/tmp/healthy': No such file or directory\n"));
    assert_eq!(p.state(), ProcessState::Running);
}

#[test]
fn quoting_field_splitting_and_parameters() {
    let (lines, ..) = run(
        r#"X="a  b"; for w in $X; do echo "[$w]"; done; echo "$X"; echo '$X' \$X; echo ${UNSET:-dflt} "$GREETING"; false; echo $?; set_ok=1; echo $set_ok"#,
        0,
    );
    assert_eq!(texts(&lines), ["[a]", "[b]", "a  b", "$X $X", "dflt hello world", "1", "1"]);
    let (lines, ..) = run("echo -n a; echo b; echo -e 'x\\ty'; printf '%s=%03d\\n' n 7 m 8", 0);
    assert_eq!(texts(&lines), ["ab", "x\ty", "n=007", "m=008"]);
}

#[test]
fn and_or_if_and_test() {
    let (lines, ..) = run(
        "[ -f /etc/hostname ] && echo file; [ -d /nope ] || echo nodir; if [ 3 -gt 2 ]; then echo gt; else echo le; fi; test -z '' && echo empty; ! true || echo neg",
        0,
    );
    assert_eq!(texts(&lines), ["file", "nodir", "gt", "empty", "neg"]);
}

#[test]
fn redirections_pipes_and_files() {
    let (lines, _, fs) = run(
        "echo hi > /tmp/f; echo more >> /tmp/f; cat /tmp/f | wc -l; ls /nope 2>&1 | grep -c 'No such'; echo oops >&2; cat < /tmp/f | head -n 1; hostname",
        0,
    );
    assert_eq!(
        lines.iter().map(|(_, e, t)| (*e, t.as_str())).collect::<Vec<_>>(),
        [(false, "2"), (false, "1"), (true, "oops"), (false, "hi"), (false, "web-0")]
    );
    assert_eq!(fs.read("/tmp/f"), Ok(&b"hi\nmore\n"[..]));
    let (lines, ..) = run("cat /missing; echo $?", 0);
    assert_eq!(lines, [(0, true, "cat: can't open '/missing': No such file or directory".into()), (0, false, "1".into())]);
}

#[test]
fn a_busy_loop_spins_within_its_budget_and_its_output_is_bounded() {
    let mut fs = Fs::new();
    let mut p = Process::start(&sh("while true; do echo x; done"), &[], 0);
    p.advance(&mut fs, 0, crate::shell::dns::nowhere);
    let written = p.take_output().len();
    assert!(written > 0 && written <= STEPS_PER_CALL as usize, "{written}");
    assert_eq!(p.state(), ProcessState::Running, "still spinning, as a real busy loop does");
    let mut piped = Process::start(&sh("while true; do echo x; done | wc -l"), &[], 0);
    piped.advance(&mut fs, 0, crate::shell::dns::nowhere);
    assert_eq!(piped.state(), ProcessState::Forever, "a pipeline that never ends spins for ever");
}

#[test]
fn an_interactive_session_keeps_its_folder_and_variables_from_line_to_line() {
    let mut fs = Fs::new();
    let p = Process::start(&sh("sleep 600"), &[("HOSTNAME".into(), "web-0".into())], 0);
    let mut vars = p.vars().clone();
    assert!(is_interactive(&["sh".into()]) && is_interactive(&["/bin/bash".into()]) && !is_interactive(&sh("ls")));
    assert_eq!(prompt(&["sh".into()], &vars), "/ # ");
    let mut line = |text: &str| session_line(&mut vars, &mut fs, text, 0, S, Reach::default());
    assert!(!line("cd /tmp; X=1").1);
    let (out, ended) = line("echo $X $PWD; false");
    assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), out.code, ended), ("1 /tmp\n", 1, false));
    assert_eq!(line("echo $?").0.text(), "1\n", "$? carries over");
    let (out, ended) = line("exit 4");
    assert_eq!((out.code, ended), (4, true));
    assert_eq!(prompt(&["bash".into()], &vars), "root@web-0:/tmp# ");
}

#[test]
fn execs_run_beside_the_process_over_its_files() {
    let mut fs = Fs::new();
    let p = Process::start(&sh("sleep 600"), &[("MODE".into(), "prod".into())], 0);
    let exec = |fs: &mut Fs, argv: &[&str], stdin: &str| p.exec(fs, &argv.iter().map(|a| a.to_string()).collect::<Vec<_>>(), stdin.as_bytes(), 0, 10 * S);
    assert_eq!(exec(&mut fs, &["sh", "-c", "exit 3"], "").code, 3);
    assert_eq!(exec(&mut fs, &["printenv", "MODE"], "").text(), "prod\n");
    let session = exec(&mut fs, &["sh"], "cd /tmp\ntouch a\nls\nexit\n");
    assert_eq!((session.code, String::from_utf8_lossy(&session.stdout).as_ref()), (0, "a\n"));
    assert_eq!(exec(&mut fs, &["kill", "1"], "").killed_main, Some(143));
    assert_eq!(exec(&mut fs, &["kill", "-9", "1"], "").killed_main, Some(137));
    assert_eq!(exec(&mut fs, &["pg_isready"], "").code, 0, "a program the shell does not know succeeds");
    assert!(exec(&mut fs, &["sleep", "20"], "").timed_out);
    assert!(exec(&mut fs, &["tail", "-f", "/dev/null"], "").timed_out);
    assert!(!exec(&mut fs, &["sleep", "2"], "").timed_out);
}

#[test]
fn a_process_survives_export_and_import_mid_run() {
    let mut fs = Fs::new();
    let mut p = Process::start(&sh("for i in 1 2 3; do echo $i; sleep 10; done; exit 7"), &[], 0);
    p.advance(&mut fs, 15 * S, crate::shell::dns::nowhere);
    let saved = serde_json::to_string(&(&p, &fs)).expect("serialises");
    let (mut back, mut fs): (Process, Fs) = serde_json::from_str(&saved).expect("deserialises");
    back.advance(&mut fs, 40 * S, crate::shell::dns::nowhere);
    let lines: Vec<(i64, String)> = back.take_output().into_iter().map(|o| (o.time / S, o.text)).collect();
    assert_eq!(lines, [(0, "1".to_string()), (10, "2".to_string()), (20, "3".to_string())]);
    assert_eq!(back.state(), ProcessState::Exited { code: 7, at: 30 * S });
}

#[test]
fn syntax_errors_end_the_process_as_sh_does() {
    let (lines, state, _) = run("echo 'open", 0);
    assert_eq!(lines, [(0, true, "sh: syntax error: unterminated quoted string".into())]);
    assert_eq!(state, ProcessState::Exited { code: 2, at: 0 });
}

#[test]
fn globs_and_dates() {
    let (lines, ..) = run("mkdir -p /etc/config; touch /etc/config/a.conf /etc/config/b.conf; echo /etc/config/*.conf; cd /etc/config && ls *.conf", 0);
    assert_eq!(texts(&lines), ["/etc/config/a.conf /etc/config/b.conf", "a.conf", "b.conf"]);
    assert_eq!(builtins::date(1_733_456_562 * S, "%a %b %e %H:%M:%S %Z %Y"), "Fri Dec  6 03:42:42 UTC 2024");
}

#[test]
fn a_variable_that_doubles_stops_at_its_cap() {
    let mut fs = Fs::new();
    let mut p = Process::start(&sh("x=ab; while true; do x=$x$x; done"), &[], 0);
    p.advance(&mut fs, 0, crate::shell::dns::nowhere);
    assert_eq!(p.state(), ProcessState::Running, "spinning within its budget, its memory bounded");
    let out = p.exec(&mut fs, &sh("echo ok"), &[], 0, S);
    assert_eq!(out.stdout, b"ok\n");
}

#[test]
fn nesting_and_recursion_are_bounded() {
    let mut fs = Fs::new();
    let bomb = r#"f='sh -c "$f"'; export f; sh -c "$f"; echo survived"#;
    let mut p = Process::start(&sh(bomb), &[], 0);
    p.advance(&mut fs, 0, crate::shell::dns::nowhere);
    let out: Vec<String> = p.take_output().into_iter().map(|o| o.text).collect();
    assert!(out.iter().any(|l| l.contains("nested too deeply")), "{out:?}");
    assert!(matches!(p.state(), ProcessState::Exited { .. } | ProcessState::Running));
}

/// Random scripts from the grammar's own words never panic, and each call ends within its
/// step budget.
#[test]
fn arbitrary_scripts_run_within_their_bounds() {
    let words = [
        "echo", "x", ";", "&&", "||", "|", "while", "true", "do", "done", "for", "i", "in", "1", "2", "if", "then", "fi", "else", "$(", ")", "`", "\"", "'",
        "$((", "+", "))", "sleep", "0.1", "cat", "/tmp/f", ">", ">>", "<", "2>&1", "sh", "-c", "exit", "3", "{", "}", "(", "$x", "${y:-z}", "\n", "kill",
        "grep", "-c", "head", "-n", "seq", "100", "read", "cd", "..", "test", "-f", "!", "printf", "%s", "yes",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut fs = Fs::new();
    for _ in 0..3_000 {
        let mut script = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for i in 0..(seed % 24) {
            script.push_str(words[(seed.rotate_left(i as u32 * 7) % words.len() as u64) as usize]);
            script.push(' ');
        }
        let mut p = Process::start(&sh(&script), &[], 0);
        for t in 0..3 {
            p.advance(&mut fs, t * S, crate::shell::dns::nowhere);
        }
        let _ = p.exec(&mut fs, &sh(&script), b"input\n", 0, S);
        assert!(p.take_output().len() <= 3 * STEPS_PER_CALL as usize, "{script}");
    }
}

#[test]
fn hexdump_shows_bytes_as_busybox_does() {
    let mut fs = Fs::new();
    fs.put("/etc/dump.bin", &[0xde, 0xca, 0xfe, 0xba, 0xd0, 0xfe, 0xff], 0o644);
    fs.put("/etc/line", b"0123456789abcdefXY", 0o644);
    let out = exec_in(&Vars { cwd: "/".into(), ..Vars::default() }, &mut fs, &sh("hexdump -C /etc/dump.bin; hexdump -C /etc/line"), &[], 0, S);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        concat!(
            "00000000  de ca fe ba d0 fe ff                              |.......|\n",
            "00000007\n",
            "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n",
            "00000010  58 59                                             |XY|\n",
            "00000012\n"
        )
    );
}

/// The e2e suite's restart counter ("should run with the expected status"): a line appended to
/// a file each run, counted with `wc -l | awk`, decides the exit.
#[test]
fn the_restart_counter_script_counts_its_runs_with_wc_and_awk() {
    let script = "f=/restart-count/restartCount\ncount=$(echo 'hello' >> $f ; wc -l $f | awk {'print $1'})\nif [ $count -eq 1 ]; then\n\texit 1\nfi\nif [ $count -eq 2 ]; then\n\texit 0\nfi\nwhile true; do sleep 1; done\n";
    let mut fs = Fs::new();
    fs.mkdir("/restart-count", false).expect("the volume");
    let mut states = Vec::new();
    for run in 0..3 {
        let mut p = Process::start(&sh(script), &[], run * S);
        p.advance(&mut fs, run * S + 2 * S, crate::shell::dns::nowhere);
        states.push(p.state());
    }
    assert_eq!(states, [ProcessState::Exited { code: 1, at: 0 }, ProcessState::Exited { code: 0, at: S }, ProcessState::Running]);
}
