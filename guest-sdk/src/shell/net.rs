//! `curl` and `wget`, as far as a GET to a pod's server goes: the runtime hands an exec a
//! [`Network`] (the servers of the pods it runs, by pod IP, and the container's own pod at
//! `localhost`), and these applets speak through it with curl's and busybox wget's
//! messages and exit codes. Without one (a container's main process), or for a name no
//! DNS answers, a download fails as without DNS.

use super::fs::{Fs, resolve};
use crate::{HttpRequest, HttpResponse};

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// No DNS answers for the name.
    UnknownHost,
    /// The pod is there and nothing listens on the port.
    Refused,
    /// An address beyond the simulated network.
    Unreachable,
}

/// What a command's connections reach.
pub trait Network {
    /// Sends `request` to `host:port` from the container whose files are `fs`.
    fn http(&mut self, fs: &Fs, host: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, NetError>;
}

/// A URL's parts: `http://10.0.0.5:8080/echo?msg=hi`.
struct Url {
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Option<Url> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| rest.split_at(i));
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    (!host.is_empty()).then(|| Url { host: host.to_string(), port, path })
}

/// Options `curl` and `wget` read, with those that take a value.
struct Options {
    flags: String,
    values: Vec<(char, String)>,
    long: Vec<String>,
    urls: Vec<String>,
}

fn options(args: &[String], with_value: &str) -> Options {
    let mut o = Options { flags: String::new(), values: Vec::new(), long: Vec::new(), urls: Vec::new() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(long) = arg.strip_prefix("--") {
            o.long.push(long.to_string());
            continue;
        }
        let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
            o.urls.push(arg.clone());
            continue;
        };
        for (i, f) in short.char_indices() {
            if with_value.contains(f) {
                let rest = &short[i + f.len_utf8()..];
                let value = if rest.is_empty() { it.next().cloned().unwrap_or_default() } else { rest.to_string() };
                o.values.push((f, value));
                break;
            }
            o.flags.push(f);
        }
    }
    o
}

impl Options {
    fn value(&self, flag: char, long: &str) -> Option<String> {
        let prefix = format!("{long}=");
        self.long
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .or_else(|| self.values.iter().rev().find(|(f, _)| *f == flag).map(|(_, v)| v.clone()))
    }

    fn has(&self, flag: char, long: &str) -> bool {
        self.flags.contains(flag) || self.long.iter().any(|l| l == long)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// `curl` and `wget`.
pub(super) fn fetch(name: &str, args: &[String], at: Place, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    if name == "curl" { curl(args, at, out, err) } else { wget(args, at, out, err) }
}

/// Where a download runs: the network it reaches, the working folder and the files.
pub(super) struct Place<'a> {
    pub(super) net: Option<&'a mut dyn Network>,
    pub(super) cwd: &'a str,
    pub(super) fs: &'a mut Fs,
}

impl Place<'_> {
    fn get(&mut self, url: &Url, method: &str) -> Result<HttpResponse, NetError> {
        let request = HttpRequest { method: method.into(), path: url.path.clone(), headers: Vec::new() };
        match self.net.as_deref_mut() {
            Some(net) => net.http(self.fs, &url.host, url.port, &request),
            None => Err(NetError::UnknownHost),
        }
    }

    fn save(&mut self, file: &str, body: &[u8]) -> Result<(), super::fs::FsError> {
        self.fs.write(&resolve(self.cwd, file), body, false)
    }
}

fn curl(args: &[String], mut at: Place, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let o = options(args, "oXHwmdAuTe");
    let silent = o.has('s', "silent") && !o.has('S', "show-error");
    let mut fail = |code: i32, text: String| {
        if !silent {
            err.extend_from_slice(format!("curl: ({code}) {text}\n").as_bytes());
        }
        code
    };
    let Some(raw) = o.urls.last() else {
        return fail(2, "no URL specified!".into());
    };
    let Some(url) = parse_url(raw) else {
        return fail(3, format!("URL using bad/illegal format or missing URL: {raw}"));
    };
    let method = if o.has('I', "head") { "HEAD".to_string() } else { o.value('X', "request").unwrap_or_else(|| "GET".into()) };
    let response = match at.get(&url, &method) {
        Ok(r) => r,
        Err(NetError::UnknownHost) => return fail(6, format!("Could not resolve host: {}", url.host)),
        Err(NetError::Refused) => return fail(7, format!("Failed to connect to {} port {}: Connection refused", url.host, url.port)),
        Err(NetError::Unreachable) => return fail(7, format!("Failed to connect to {} port {}: No route to host", url.host, url.port)),
    };
    if o.has('f', "fail") && response.status >= 400 {
        return fail(22, format!("The requested URL returned error: {} {}", response.status, reason(response.status)).trim_end().to_string());
    }
    let mut body = Vec::new();
    if o.has('i', "include") || method == "HEAD" {
        body.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status)).as_bytes());
        for h in &response.headers {
            body.extend_from_slice(format!("{}: {}\r\n", h.key, h.value).as_bytes());
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(&response.body);
    match o.value('o', "output") {
        Some(file) if file != "-" && file != "/dev/null" => {
            if let Err(e) = at.save(&file, &body) {
                return fail(23, format!("Failed writing body: {file}: {e}"));
            }
        }
        Some(file) if file == "/dev/null" => {}
        _ => out.extend_from_slice(&body),
    }
    if let Some(format) = o.value('w', "write-out") {
        let written = format.replace("%{http_code}", &response.status.to_string()).replace("\\n", "\n");
        out.extend_from_slice(written.as_bytes());
    }
    0
}

fn wget(args: &[String], mut at: Place, out: &mut Vec<u8>, err: &mut Vec<u8>) -> i32 {
    let o = options(args, "OTUYt");
    let quiet = o.has('q', "quiet");
    let say = |err: &mut Vec<u8>, text: String| err.extend_from_slice(format!("wget: {text}\n").as_bytes());
    let Some(raw) = o.urls.last() else {
        say(err, "missing URL".into());
        return 1;
    };
    let Some(url) = parse_url(raw) else {
        say(err, format!("not an http or ftp url: {raw}"));
        return 1;
    };
    if !quiet {
        err.extend_from_slice(format!("Connecting to {}:{} ({}:{})\n", url.host, url.port, url.host, url.port).as_bytes());
    }
    let spider = o.long.iter().any(|l| l == "spider");
    let response = match at.get(&url, if spider { "HEAD" } else { "GET" }) {
        Ok(r) => r,
        Err(NetError::UnknownHost) => {
            say(err, format!("bad address '{}'", url.host));
            return 1;
        }
        Err(NetError::Refused) => {
            say(err, format!("can't connect to remote host ({}): Connection refused", url.host));
            return 1;
        }
        Err(NetError::Unreachable) => {
            say(err, format!("can't connect to remote host ({}): No route to host", url.host));
            return 1;
        }
    };
    if response.status >= 400 {
        say(err, format!("server returned error: HTTP/1.1 {} {}", response.status, reason(response.status)).trim_end().to_string());
        return 1;
    }
    if spider {
        return 0;
    }
    let file = o.value('O', "output-document").unwrap_or_else(|| {
        let last = url.path.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("");
        if last.is_empty() { "index.html".into() } else { last.to_string() }
    });
    if file == "-" {
        out.extend_from_slice(&response.body);
        return 0;
    }
    if !quiet {
        err.extend_from_slice(format!("saving to '{file}'\n").as_bytes());
    }
    if let Err(e) = at.save(&file, &response.body) {
        say(err, format!("can't open '{file}': {e}"));
        return 1;
    }
    if !quiet {
        err.extend_from_slice(format!("'{file}' saved\n").as_bytes());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let u = parse_url("http://10.0.0.5:8080/echo?msg=hi").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("10.0.0.5", 8080, "/echo?msg=hi"));
        let u = parse_url("localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("localhost", 80, "/"));
        let u = parse_url("https://[fd00::1]/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("fd00::1", 443));
        assert_eq!(parse_url("localhost:8080?q").unwrap().path, "/?q");
        assert!(parse_url("ftp://x/").is_none());
        assert!(parse_url("http://x:99999/").is_none());
        for odd in ["", "://", "http://", "[", "http://[::1", "a:b:c", "http://@/", "\u{e9}:\u{e9}"] {
            let _ = parse_url(odd);
        }
    }

    /// A pod at 10.0.0.5 serving `/echo` on 8080 (the rest 404), and one at 10.0.0.6 that
    /// serves nothing.
    struct TwoPods(Vec<String>);

    impl Network for TwoPods {
        fn http(&mut self, _fs: &Fs, host: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, NetError> {
            self.0.push(format!("{} {host}:{port}{}", request.method, request.path));
            match (host, port) {
                ("10.0.0.5", 8080) => {
                    let (status, body) = match request.path.strip_prefix("/echo?msg=") {
                        Some(msg) => (200, msg.as_bytes().to_vec()),
                        None => (404, b"404 page not found\n".to_vec()),
                    };
                    Ok(HttpResponse { status, headers: Vec::new(), body })
                }
                ("10.0.0.5" | "10.0.0.6", _) => Err(NetError::Refused),
                _ if host.parse::<std::net::IpAddr>().is_ok() => Err(NetError::Unreachable),
                _ => Err(NetError::UnknownHost),
            }
        }
    }

    fn run(script: &str) -> (i32, String, String, Fs, Vec<String>) {
        let mut net = TwoPods(Vec::new());
        let mut fs = Fs::new();
        let vars = crate::shell::Vars { cwd: "/".into(), ..Default::default() };
        let argv = ["sh", "-c", script].map(String::from);
        let out = crate::shell::exec_on(&vars, &mut fs, &argv, &[], 0, i64::MAX, crate::shell::Reach { net: Some(&mut net), ..Default::default() });
        (out.code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), fs, net.0)
    }

    #[test]
    fn curl_gets_what_a_pods_server_answers_with_curls_exit_codes() {
        let (code, out, _, _, asked) = run("curl -s http://10.0.0.5:8080/echo?msg=poststart");
        assert_eq!((code, out.as_str()), (0, "poststart"));
        assert_eq!(asked, ["GET 10.0.0.5:8080/echo?msg=poststart"]);
        let (code, _, err, _, _) = run("curl http://10.0.0.6:8080/");
        assert_eq!((code, err.as_str()), (7, "curl: (7) Failed to connect to 10.0.0.6 port 8080: Connection refused\n"));
        let (code, _, err, _, _) = run("curl myservice");
        assert_eq!((code, err.as_str()), (6, "curl: (6) Could not resolve host: myservice\n"));
        let (code, _, err, _, _) = run("curl -s 10.9.9.9; echo $?");
        assert_eq!((code, err.as_str()), (0, ""), "-s keeps curl quiet");
        let (code, _, err, _, _) = run("curl -sSf http://10.0.0.5:8080/nope");
        assert_eq!((code, err.as_str()), (22, "curl: (22) The requested URL returned error: 404 Not Found\n"));
        let (code, out, _, _, _) = run("curl -s -o /dev/null -w '%{http_code}' 10.0.0.5:8080/nope");
        assert_eq!((code, out.as_str()), (0, "404"));
        let (code, _, _, fs, _) = run("curl -so /tmp/page http://10.0.0.5:8080/echo?msg=saved");
        assert_eq!((code, fs.read("/tmp/page").ok()), (0, Some(&b"saved"[..])));
    }

    #[test]
    fn wget_downloads_to_stdout_or_a_file_with_busybox_messages() {
        let (code, out, _, _, _) = run("wget -qO- http://10.0.0.5:8080/echo?msg=hi");
        assert_eq!((code, out.as_str()), (0, "hi"));
        let (code, _, err, fs, _) = run("cd /tmp && wget http://10.0.0.5:8080/echo?msg=x");
        assert_eq!(code, 0, "{err}");
        assert_eq!(fs.read("/tmp/echo").ok(), Some(&b"x"[..]));
        assert!(err.ends_with("saving to 'echo'\n'echo' saved\n"), "{err}");
        let (code, _, err, _, _) = run("wget -q -O - 10.0.0.5:8080/missing");
        assert_eq!((code, err.as_str()), (1, "wget: server returned error: HTTP/1.1 404 Not Found\n"));
        let (code, _, err, _, _) = run("wget -q 10.0.0.6:80");
        assert_eq!((code, err.as_str()), (1, "wget: can't connect to remote host (10.0.0.6): Connection refused\n"));
        let (code, _, err, _, _) = run("wget -q -T 1 web");
        assert_eq!((code, err.as_str()), (1, "wget: bad address 'web'\n"));
        let (_, _, _, _, asked) = run("wget -q --spider 10.0.0.5:8080/echo?msg=s");
        assert_eq!(asked, ["HEAD 10.0.0.5:8080/echo?msg=s"]);
    }

    #[test]
    fn without_a_network_downloads_fail_as_without_dns() {
        let argv = ["curl", "http://10.0.0.5:8080/"].map(String::from);
        let out = crate::shell::exec_in(&crate::shell::Vars::default(), &mut Fs::new(), &argv, &[], 0, i64::MAX);
        assert_eq!((out.code, String::from_utf8_lossy(&out.stderr).as_ref()), (6, "curl: (6) Could not resolve host: 10.0.0.5\n"));
    }

    #[test]
    fn short_options_take_values_joined_or_apart() {
        let args: Vec<String> = ["-qO-", "http://a/", "-T", "5"].map(String::from).to_vec();
        let o = options(&args, "OT");
        assert_eq!((o.flags.as_str(), o.value('O', "output-document").as_deref(), o.value('T', "timeout").as_deref()), ("q", Some("-"), Some("5")));
        assert_eq!(o.urls, ["http://a/"]);
    }
}
