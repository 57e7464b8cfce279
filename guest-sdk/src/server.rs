//! The servers a pod's images run, as far as `kubectl port-forward` and the kubelet's HTTP
//! and TCP probes reach them: nginx and Apache httpd answer HTTP on port 80, busybox's
//! `httpd -p PORT -h DIR` on its port, each from its document root over the container's
//! files (an `index.html` mounted from a ConfigMap is served), with the stock welcome page
//! while the root has none and the stock 404 page for what is not there. agnhost's servers
//! answer as the e2e tests expect: `liveness` (8080: `/healthz` 200 for 10 s after it
//! started, then 500), `test-webserver` (80, the container's files), `netexec` (8080: `/echo`,
//! `/hostname`) and `serve-hostname` (9376). Nothing else listens: a connection is refused,
//! as the runtime's port forwarder and the prober report it. A pod with a program the shell
//! does not know may listen anywhere, so its probes pass, as before there were servers.

use crate::image::container_argv;
use crate::runtime::{ContainerRecord, FakeRuntime};
use crate::shell::{Fs, NetError, Network, ProcessState};
use crate::{ContainerState, ErrorCode, HttpRequest, HttpResponse, KeyValue, LogLine, LogStream, ProbeAction, ProbeOutcome, ProbeResult, RuntimeError};

/// A web server a container runs.
struct WebServer<'a> {
    kind: Kind,
    port: u16,
    root: String,
    container: &'a ContainerRecord,
    /// The container's files: its own, or the ones an exec in it holds while it runs.
    fs: &'a Fs,
}

/// A container whose files an exec holds while its command reaches the network.
pub(crate) type Caller<'a> = Option<(&'a str, &'a Fs)>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Nginx,
    Apache,
    Busybox,
    /// agnhost's servers, which answer as Go's `net/http` does.
    Liveness,
    TestWebserver,
    Netexec,
    ServeHostname,
}

/// How long agnhost's `liveness` server says it is healthy.
const LIVENESS_HEALTHY_NS: i64 = 10_000_000_000;

/// The server `c` runs, read from its command line.
fn web_server<'a>(c: &'a ContainerRecord, caller: Caller<'a>) -> Option<WebServer<'a>> {
    if c.state != ContainerState::Running {
        return None;
    }
    let argv = container_argv(&c.config.image, &c.config.command, &c.config.args, &c.config.env).ok()?;
    let program = argv.first()?.rsplit('/').next()?;
    let flag = |name: &str| argv.iter().position(|a| a == name).and_then(|i| argv.get(i + 1));
    // Go's flags: `--port=81` or `--port 81`.
    let go_flag = |name: &str| {
        let long = format!("--{name}");
        argv.iter().find_map(|a| a.strip_prefix(&format!("{long}=")).map(str::to_string)).or_else(|| flag(&long).cloned())?.parse::<u16>().ok()
    };
    let (kind, port, root) = match program {
        "nginx" => (Kind::Nginx, 80, "/usr/share/nginx/html".to_string()),
        "httpd-foreground" => (Kind::Apache, 80, "/usr/local/apache2/htdocs".to_string()),
        "httpd" if crate::image::short_name(&c.config.image) == "httpd" => (Kind::Apache, 80, "/usr/local/apache2/htdocs".to_string()),
        "httpd" => {
            (Kind::Busybox, flag("-p").and_then(|p| p.rsplit(':').next()?.parse().ok()).unwrap_or(80), flag("-h").cloned().unwrap_or_else(|| "/".into()))
        }
        "agnhost" | "agnhost-2" => match argv.get(1).map(String::as_str) {
            Some("liveness") => (Kind::Liveness, 8080, String::new()),
            Some("test-webserver") => (Kind::TestWebserver, go_flag("port").unwrap_or(80), "/".to_string()),
            Some("netexec") => (Kind::Netexec, go_flag("http-port").unwrap_or(8080), String::new()),
            Some("serve-hostname") => (Kind::ServeHostname, go_flag("port").unwrap_or(9376), String::new()),
            _ => return None,
        },
        _ => return None,
    };
    let fs = caller.filter(|(id, _)| *id == c.id).map_or(&c.fs, |(_, fs)| fs);
    Some(WebServer { kind, port, root, container: c, fs })
}

/// What a connection to `port` of sandbox `sandbox` gets for `request` at `now`; what the
/// server logs of it goes to its container's log.
pub(crate) fn serve(rt: &mut FakeRuntime, sandbox: &str, port: u16, request: &HttpRequest, now: i64, caller: Caller<'_>) -> Result<HttpResponse, RuntimeError> {
    let (id, response, logged) = {
        let server = rt.containers.values().filter(|c| c.sandbox_id == sandbox).filter_map(|c| web_server(c, caller)).find(|s| s.port == port);
        let Some(server) = server else {
            return Err(RuntimeError { code: ErrorCode::Failed, message: format!("dial tcp4 127.0.0.1:{port}: connect: connection refused") });
        };
        let hostname = rt.sandboxes.get(sandbox).map_or("", |s| s.config.hostname.as_str());
        (server.container.id.clone(), server.answer(request, hostname, now), server.log_line(request, now))
    };
    if let (Some(text), Some(c)) = (logged, rt.containers.get_mut(&id)) {
        c.add_logs([LogLine { time: now, stream: LogStream::Stderr, text }]);
    }
    Ok(response)
}

/// The pod network as an exec's `curl` and `wget` reach it: the servers of the pods this
/// plugin runs, by pod IP, and the caller's own pod at `localhost` or its hostname. Any
/// other address is beyond it.
pub(crate) struct PodNetwork<'a> {
    pub(crate) rt: &'a mut FakeRuntime,
    /// The container the exec runs in.
    pub(crate) caller: &'a str,
    pub(crate) now: i64,
}

impl Network for PodNetwork<'_> {
    fn http(&mut self, fs: &Fs, host: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, NetError> {
        let own = self.rt.containers.get(self.caller).and_then(|c| self.rt.sandboxes.get(&c.sandbox_id));
        let sandbox = match own {
            Some(s) if matches!(host, "localhost" | "127.0.0.1" | "::1") || host == s.config.hostname => Some(s.id.clone()),
            _ => self.rt.sandboxes.values().find(|s| s.ready && s.ip == host).map(|s| s.id.clone()),
        };
        let Some(sandbox) = sandbox else {
            return Err(if host.parse::<std::net::IpAddr>().is_ok() { NetError::Unreachable } else { NetError::UnknownHost });
        };
        serve(self.rt, &sandbox, port, request, self.now, Some((self.caller, fs))).map_err(|_| NetError::Refused)
    }
}

/// What the kubelet's prober sees of an HTTP or TCP probe on container `id` (a gRPC probe
/// passes): the status the server answers, or the connection refused, in the prober's words.
pub(crate) fn probe(rt: &mut FakeRuntime, id: &str, action: &ProbeAction, now: i64) -> ProbeResult {
    let pass = ProbeResult { outcome: ProbeOutcome::Success, output: String::new() };
    let Some(sandbox) = rt.containers.get(id).map(|c| c.sandbox_id.clone()) else { return pass };
    let (unknown_program, ports) = {
        let in_pod = || rt.containers.values().filter(|o| o.sandbox_id == sandbox && o.state == ContainerState::Running);
        let unknown = in_pod().any(|o| o.process.as_ref().is_some_and(|p| p.state() == ProcessState::External) && web_server(o, None).is_none());
        (unknown, in_pod().filter_map(|o| web_server(o, None)).map(|s| s.port).collect::<Vec<_>>())
    };
    if unknown_program {
        return pass;
    }
    let ip = rt.sandboxes.get(&sandbox).map_or(String::new(), |s| s.ip.clone());
    let fail = |output: String| ProbeResult { outcome: ProbeOutcome::Failure, output };
    match action {
        ProbeAction::HttpGet(get) => {
            let host = if get.host.is_empty() { ip.as_str() } else { get.host.as_str() };
            let path = if get.path.starts_with('/') { get.path.clone() } else { format!("/{}", get.path) };
            let request = HttpRequest { method: "GET".into(), path: path.clone(), headers: get.headers.clone() };
            match serve(rt, &sandbox, get.port, &request, now, None) {
                Ok(r) if (200..400).contains(&r.status) => pass,
                Ok(r) => fail(format!("HTTP probe failed with statuscode: {}", r.status)),
                Err(_) => {
                    let scheme = if get.scheme.is_empty() { "http".to_string() } else { get.scheme.to_lowercase() };
                    fail(format!("Get \"{scheme}://{host}:{}{path}\": dial tcp {host}:{}: connect: connection refused", get.port, get.port))
                }
            }
        }
        ProbeAction::TcpSocket(port) if ports.contains(port) => pass,
        ProbeAction::TcpSocket(port) => fail(format!("dial tcp {ip}:{port}: connect: connection refused")),
        _ => pass,
    }
}

impl WebServer<'_> {
    /// What the server writes to its log about a request: agnhost's `netexec` logs each, as
    /// Go's `log.Printf` does (to stderr, the time first), which is how the e2e suite sees
    /// that a lifecycle hook reached it.
    fn log_line(&self, request: &HttpRequest, now: i64) -> Option<String> {
        if self.kind != Kind::Netexec {
            return None;
        }
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).unwrap_or("");
        let what = match path {
            "/echo" => format!("GET /echo?msg={}&code={}", param("msg"), param("code")),
            "/" | "/hostname" | "/healthz" | "/clientip" | "/shutdown" | "/upload" => format!("GET {path}"),
            _ => return None,
        };
        Some(format!("{} {what}", crate::shell::builtins::date(now, "%Y/%m/%d %H:%M:%S")))
    }

    fn answer(&self, request: &HttpRequest, hostname: &str, now: i64) -> HttpResponse {
        let head = request.method == "HEAD";
        // Bytes that were no HTTP request.
        if request.method.is_empty() {
            return self.page(400, "400 Bad Request", false);
        }
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        match self.kind {
            Kind::Liveness => {
                let ran = now.saturating_sub(self.container.started_at);
                return match path {
                    "/healthz" if ran > LIVENESS_HEALTHY_NS => self.text(500, format!("error: {}", ran as f64 / 1e9)),
                    "/healthz" => self.text(200, "ok".into()),
                    "/started" => self.text(200, format!("{}s", ran as f64 / 1e9)),
                    _ => self.text(404, "404 page not found\n".into()),
                };
            }
            Kind::Netexec => {
                let msg = query.split('&').find_map(|kv| kv.strip_prefix("msg=")).unwrap_or("");
                return match path {
                    "/echo" => self.text(200, msg.to_string()),
                    "/hostname" => self.text(200, hostname.to_string()),
                    "/healthz" | "/" => self.text(200, String::new()),
                    _ => self.text(404, "404 page not found\n".into()),
                };
            }
            Kind::ServeHostname => return self.text(200, hostname.to_string()),
            Kind::TestWebserver => {
                return match self.fs.read(path) {
                    Ok(body) => self.text(200, String::from_utf8_lossy(body).into_owned()),
                    Err(_) if self.fs.is_dir(path) => self.text(200, String::new()),
                    Err(_) => self.text(404, "404 page not found\n".into()),
                };
            }
            _ => {}
        }
        if request.method != "GET" && !head {
            return self.page(405, "405 Not Allowed", head);
        }
        let path = request.path.split(['?', '#']).next().unwrap_or("/");
        let mut file = format!("{}/{}", self.root.trim_end_matches('/'), path.trim_start_matches('/'));
        if file.ends_with('/') || self.fs.is_dir(&file) {
            file = format!("{}/index.html", file.trim_end_matches('/'));
        }
        match self.fs.read(&file) {
            Ok(body) => self.response(200, content_type(&file), body.to_vec(), head),
            Err(_) if path == "/" || path == "/index.html" => self.response(200, "text/html", self.welcome().into_bytes(), head),
            Err(_) => self.page(404, "404 Not Found", head),
        }
    }

    /// An answer of Go's `net/http`.
    fn text(&self, status: u16, body: String) -> HttpResponse {
        let body = body.into_bytes();
        let headers = [("Content-Type", "text/plain; charset=utf-8".to_string()), ("Content-Length", body.len().to_string())];
        HttpResponse { status, headers: headers.into_iter().map(|(key, value)| KeyValue { key: key.into(), value }).collect(), body }
    }

    fn server_header(&self) -> String {
        let tag = self.container.config.image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
        match self.kind {
            Kind::Nginx => tag.map_or("nginx".into(), |t| format!("nginx/{t}")),
            Kind::Apache => tag.map_or("Apache".into(), |t| format!("Apache/{t} (Unix)")),
            _ => String::new(),
        }
    }

    fn welcome(&self) -> String {
        match self.kind {
            Kind::Nginx => concat!(
                "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n",
                "<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n",
                "<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n"
            )
            .to_string(),
            Kind::Apache => "<html><body><h1>It works!</h1></body></html>\n".to_string(),
            _ => self.error_body("404 Not Found"),
        }
    }

    fn error_body(&self, title: &str) -> String {
        match self.kind {
            Kind::Nginx => format!(
                "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n",
                self.server_header()
            ),
            Kind::Apache => format!(
                "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{title}</title>\n</head><body>\n<h1>{}</h1>\n</body></html>\n",
                &title[4..]
            ),
            _ => format!("<HTML><HEAD><TITLE>{title}</TITLE></HEAD>\n<BODY><H1>{title}</H1>\nThe requested URL was not found\n</BODY></HTML>\n"),
        }
    }

    fn page(&self, code: u16, title: &str, head: bool) -> HttpResponse {
        self.response(code, "text/html", self.error_body(title).into_bytes(), head)
    }

    fn response(&self, status: u16, content_type: &str, body: Vec<u8>, head: bool) -> HttpResponse {
        let mut headers = vec![KeyValue { key: "Content-Type".into(), value: content_type.into() }];
        let server = self.server_header();
        if !server.is_empty() {
            headers.insert(0, KeyValue { key: "Server".into(), value: server });
        }
        headers.push(KeyValue { key: "Content-Length".into(), value: body.len().to_string() });
        HttpResponse { status, headers, body: if head { Vec::new() } else { body } }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("js") => "application/javascript",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
